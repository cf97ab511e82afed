"""The uplink MAC environment (model §2–§3): reference oracle, batched tensors, churn, PettingZoo."""

from mfsg.env.batched import BatchedEnv
from mfsg.env.reference import InvalidActionError, ReferenceEnv


def parallel_env(*args, **kwargs):
    """PettingZoo ``ParallelEnv`` with the BS and the UEs as agents (see :mod:`mfsg.env.pettingzoo`)."""
    from mfsg.env.pettingzoo import MacParallelEnv

    return MacParallelEnv(*args, **kwargs)


__all__ = ["BatchedEnv", "ReferenceEnv", "InvalidActionError", "parallel_env"]
