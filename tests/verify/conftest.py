import pytest

from mfsg.verify.threads import limit_threads


@pytest.fixture(autouse=True)
def _single_thread():
    """Small games and Krylov solvers run fastest (and reproducibly) on one torch/BLAS thread."""
    with limit_threads(1):
        yield
