"""Shared test set-up."""

import os
from dataclasses import dataclass

# Spinning OpenMP threads make torch several times slower on a busy CPU (CI machines are shared);
# this must be set before torch is first imported, which conftest precedes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist each worker gets one core's worth of threads (and so do the CLI runs it starts): two
# workers with two threads each would only contend.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

# The tests that ask for the `numerics` fixture compare outcomes of two computation orders (a batched attack and a
# literal per-sample loop, threaded and serial permutations, ...). Each holds under rounding by design (float64
# where decisions are compared, or a stated margin). `make test` runs them a second time with
# AUDIT_TEST_NUMERICS=alt, under other summation orders: two threads instead of one, batches split in three, and
# (set by the Makefile) generic CPU kernels (ATEN_CPU_CAPABILITY=default, DNNL_MAX_CPU_ISA=SSE41).
ALTERNATIVE_NUMERICS = os.environ.get("AUDIT_TEST_NUMERICS") == "alt"


@dataclass(frozen=True)
class Numerics:
    threads: int
    split: int

    def chunks(self, n: int) -> list[slice]:
        """``range(n)`` in ``split`` consecutive parts (as equal as they come)."""
        edges = [round(i * n / self.split) for i in range(self.split + 1)]
        return [slice(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


@pytest.fixture
def numerics():
    """The numerical configuration of this run (threads for torch and BLAS, how batches are split)."""
    settings = Numerics(threads=2, split=3) if ALTERNATIVE_NUMERICS else Numerics(threads=1, split=1)
    saved = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        with threadpool_limits(settings.threads):
            yield settings
    finally:
        torch.set_num_threads(saved)


def pytest_collection_modifyitems(items):
    for item in items:  # `-m numerics` selects every test that asks for the fixture
        if "numerics" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.numerics)


@pytest.fixture
def one_thread():
    """One intra-op thread: with tiny batches this is as fast, and far faster on a busy CPU."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
