"""Run a protocol for whole episodes on :class:`~mfsg.env.BatchedEnv` and collect per-episode results.

Episodes run in chunks of at most ``chunk`` parallel episodes. Chunk i's env seed and protocol
seed come from ``numpy.random.SeedSequence(seed).spawn(n_chunks)[i]`` (chunk 0's env seed is
``seed`` itself), so the env's draws
(churn, arrivals, erasures) depend on ``(seed, n_episodes, chunk)`` only: two protocols run with
the same arguments see exactly the same arrivals — what ``genie_fraction`` compares on.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mfsg.config import EnvConfig, check_int
from mfsg.env.batched import BatchedEnv
from mfsg.protocols.base import Protocol

DEFAULT_CHUNK = 4096


def chunk_seeds(seed: int, n_chunks: int) -> list[tuple[int, int]]:
    """(env seed, protocol seed) of each chunk. Chunk 0's env seed is ``seed`` itself, so a run
    of at most ``chunk`` episodes sees the draws of ``BatchedEnv(cfg, n_episodes, seed=seed)``."""
    children = np.random.SeedSequence(seed).spawn(n_chunks)
    states = [c.generate_state(2, dtype=np.uint32) for c in children]
    return [(seed if i == 0 else int(st[0]), int(st[1])) for i, st in enumerate(states)]


def run_episodes(env: BatchedEnv, protocol: Protocol, *, env_seed: int, protocol_seed: int) -> dict:
    """One batch of ``env.E`` whole episodes; returns per-episode tensors (see :func:`run_protocol`)."""
    env.reset(env_seed)
    protocol.reset(env, protocol_seed)
    buffer_sum = torch.zeros(env.E, dtype=torch.long)
    while not env.done:
        dcm = protocol.leader(env.begin_tti())
        ucm, access = protocol.followers(env.deliver(dcm))
        env.end_tti(ucm, access)
        buffer_sum += env.count.sum(dim=1)
    out = {k: v.clone() for k, v in env.c.as_dict().items()}
    out.update(latency_hist=env.latency_hist.clone(), jain=env.jain().clone(), buffer_sum=buffer_sum)
    return out


def run_protocol(env_cfg: EnvConfig, protocol: Protocol, n_episodes: int, seed: int, *,
                 chunk: int = DEFAULT_CHUNK, check_actions: bool = True) -> dict:
    """Run ``n_episodes`` whole episodes of ``protocol`` (deterministic in ``seed``).

    Returns a dict of per-episode tensors ``[n_episodes]``: every counter of
    :data:`mfsg.env.spec.COUNTER_FIELDS`, ``jain`` (Jain's index over the episode's UEs),
    ``buffer_sum`` (Σ over TTIs of the dPDUs buffered by active UEs at the end of the TTI) and
    ``latency_hist`` ``[n_episodes, T]``; plus ``horizon``, ``n_rbg`` and ``n_episodes``.
    """
    check_int("n_episodes", n_episodes, 1)
    check_int("chunk", chunk, 1)
    sizes = [min(chunk, n_episodes - i * chunk) for i in range(math.ceil(n_episodes / chunk))]
    parts, envs = [], {}
    for size, (env_seed, proto_seed) in zip(sizes, chunk_seeds(seed, len(sizes)), strict=True):
        if size not in envs:
            envs[size] = BatchedEnv(env_cfg, size, check_actions=check_actions)
        parts.append(run_episodes(envs[size], protocol, env_seed=env_seed, protocol_seed=proto_seed))
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    out.update(horizon=env_cfg.horizon, n_rbg=env_cfg.n_rbg, n_episodes=n_episodes)
    return out


__all__ = ["run_protocol", "run_episodes", "chunk_seeds", "DEFAULT_CHUNK"]
