"""Shared test set-up."""

import os

# Spinning OpenMP threads make torch several times slower on a busy CPU (CI machines are shared);
# this must be set before torch is first imported, which conftest precedes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist each worker gets one core's worth of threads (and so do the CLI runs it starts): two
# workers with two threads each would only contend.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """One intra-op thread: with tiny batches this is as fast, and far faster on a busy CPU."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
