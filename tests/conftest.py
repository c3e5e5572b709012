"""Shared test set-up."""

import os

# Spinning OpenMP threads make torch several times slower on a busy CPU (CI machines are shared);
# this must be set before torch is first imported, which conftest precedes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def one_thread():
    """One intra-op thread: with tiny batches this is as fast, and far faster on a busy CPU."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
