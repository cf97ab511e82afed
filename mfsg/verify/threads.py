"""Thread limits for the checks: small games and Krylov solvers run fastest single-threaded.

Many tiny torch ops and OpenBLAS's threaded level-1 kernels (inside GMRES/ARPACK) slow down by
orders of magnitude when their thread pools compete with other processes for two cores.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits


@contextmanager
def limit_threads(n: int | None):
    """Run the block with ``n`` torch and BLAS threads (``None``: leave both as they are)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)
