"""Hypothesis strategies and small drivers shared by the tests (model §1, §3, §4).

Import as ``from strategies import ...`` (``tests/`` is on ``sys.path`` through its conftest).
Environment strategies keep sizes small so that buffers overflow, RBGs collide and
(with a high ``tbler``) transmissions get erased within a few TTIs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from hypothesis import strategies as st

from mfsg.config import CHURN_KINDS, PLACEMENTS, ChurnConfig, EnvConfig, UtilityConfig
from mfsg.env.draws import Draws, block_size

# -- configs -----------------------------------------------------------------------------


def probabilities() -> st.SearchStrategy[float]:
    """Probabilities with the edge values 0 and 1 drawn often."""
    return st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0)


def utility_configs() -> st.SearchStrategy[UtilityConfig]:
    small = st.floats(0.0, 3.0)
    return st.builds(
        UtilityConfig,
        reward_scale=small,
        kappa_buf=small,
        c_tx=small,
        beta_fair=small,
        gamma=st.floats(0.0, 1.0, exclude_min=True),
    )


@st.composite
def trace_schedules(draw, n_slots: int, length: int, cover: bool = False) -> tuple[tuple[int, ...], ...]:
    """``length`` active sets over slots 0..n_slots-1 (every slot used at least once if ``cover``)."""
    entry = st.lists(st.integers(0, n_slots - 1), unique=True, max_size=n_slots).map(tuple)
    sched = [list(s) for s in draw(st.lists(entry, min_size=length, max_size=length))]
    used = {s for slots in sched for s in slots}
    for s in range(n_slots):  # make n_slots exact (and every slot used when asked)
        if (cover or s == n_slots - 1) and s not in used:
            sched[draw(st.integers(0, length - 1))].append(s)
    return tuple(tuple(s) for s in sched)


@st.composite
def churn_configs(draw, kind: str, horizon: int, max_slots: int = 4, cover: bool = False) -> ChurnConfig:
    """A valid churn process of ``kind`` for an episode of ``horizon`` TTIs; except for traces,
    slot placement is drawn too, with up to two spare slots (labels never needed at once)."""
    if kind == "trace":
        n_slots = draw(st.integers(1, max_slots))
        return ChurnConfig(kind=kind, schedule=draw(trace_schedules(n_slots, horizon, cover)))
    if kind == "fixed":
        churn = ChurnConfig(kind=kind, n=draw(st.integers(1, max_slots)))
    else:
        n_min = draw(st.integers(1, max_slots))
        n_max = draw(st.integers(n_min, max_slots))
        churn = ChurnConfig(kind=kind, n_min=n_min, n_max=n_max)
        if kind == "markov":
            churn = dataclasses.replace(churn, p_join=draw(probabilities()), p_leave=draw(probabilities()))
    spare = draw(st.none() | st.integers(0, 2))
    slots = None if spare is None else churn.n_slots + spare
    return dataclasses.replace(churn, slots=slots, placement=draw(st.sampled_from(PLACEMENTS)))


@st.composite
def env_configs(
    draw,
    kinds: tuple[str, ...] = CHURN_KINDS,
    max_slots: int = 4,
    max_horizon: int = 8,
    cover: bool = False,
) -> EnvConfig:
    """Small valid :class:`EnvConfig`: K <= 3, B <= 4, short horizons, tbler 0, 1e-3 or high."""
    horizon = draw(st.integers(1, max_horizon))
    churn = draw(churn_configs(draw(st.sampled_from(kinds)), horizon, max_slots, cover))
    n_slots = churn.n_slots
    if draw(st.booleans()):
        p_arrival = tuple(draw(st.lists(probabilities(), min_size=n_slots, max_size=n_slots)))
    else:
        p_arrival = draw(probabilities())
    return EnvConfig(
        n_rbg=draw(st.integers(1, 3)),
        buffer=draw(st.integers(1, 4)),
        horizon=horizon,
        p_arrival=p_arrival,
        tbler=draw(st.sampled_from([0.0, 1e-3]) | st.floats(0.2, 0.9)),
        ucm_vocab=draw(st.integers(1, 3)),
        dcm_vocab=draw(st.none() | st.integers(1, 5)),
        churn=churn,
        utility=draw(utility_configs()),
    )


@st.composite
def wide_env_configs(draw) -> EnvConfig:
    """Valid configs over the full allowed ranges (for TOML round trips; not meant to be run)."""
    kind = draw(st.sampled_from(CHURN_KINDS))
    horizon = draw(st.integers(1, 12)) if kind == "trace" else draw(st.integers(1, 10**6))
    churn = draw(churn_configs(kind, horizon, max_slots=8))
    if kind != "trace":  # fields a kind ignores must still round-trip
        n_min = draw(st.integers(1, 50))
        churn = ChurnConfig(
            kind=kind,
            n=draw(st.integers(1, 10**4)),
            n_min=n_min,
            n_max=draw(st.integers(n_min, 100)),
            p_join=draw(probabilities()),
            p_leave=draw(probabilities()),
            placement=draw(st.sampled_from(PLACEMENTS)),
        )
        spare = draw(st.none() | st.integers(0, 10))
        churn = dataclasses.replace(churn, slots=None if spare is None else churn.n_slots + spare)
    n_slots = churn.n_slots
    p_arrival = draw(probabilities() | st.lists(probabilities(), min_size=n_slots, max_size=n_slots).map(tuple))
    finite = st.floats(0.0, 1e6) | st.floats(0.0, 1e-300)
    return EnvConfig(
        n_rbg=draw(st.integers(1, 64)),
        buffer=draw(st.integers(1, 4096)),
        horizon=horizon,
        p_arrival=p_arrival,
        tbler=draw(st.floats(0.0, 1.0, exclude_max=True)),
        ucm_vocab=draw(st.integers(1, 10**6)),
        dcm_vocab=draw(st.none() | st.integers(1, 10**6)),
        churn=churn,
        utility=UtilityConfig(
            reward_scale=draw(finite),
            kappa_buf=draw(finite),
            c_tx=draw(finite),
            beta_fair=draw(finite),
            gamma=draw(st.floats(0.0, 1.0, exclude_min=True)),
        ),
    )


# -- draws and actions ---------------------------------------------------------------------


def draw_blocks(cfg: EnvConfig, n_envs: int, rng: np.random.Generator) -> list[Draws]:
    """One batched :class:`Draws` (torch float64, ``[E, ...]``) per TTI of the horizon."""
    place = cfg.churn.random_placement
    size = block_size(cfg.n_slots, cfg.n_rbg, place)
    blocks = (torch.from_numpy(rng.random((n_envs, size))) for _ in range(cfg.horizon))
    return [Draws.split(b, cfg.n_slots, cfg.n_rbg, place) for b in blocks]


def random_dcm(cfg: EnvConfig, active: np.ndarray, rng: np.random.Generator, garbage: bool = True) -> np.ndarray:
    """Valid DCMs for active slots; out-of-range garbage (or 0) for inactive slots."""
    dcm = rng.integers(0, cfg.dcm_vocab, size=active.shape)
    junk = rng.integers(-50, 50, size=active.shape) if garbage else 0
    return np.where(active, dcm, junk)


def random_actions(
    cfg: EnvConfig, active: np.ndarray, buffer: np.ndarray, rng: np.random.Generator, garbage: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Random valid (ucm, access) for active slots given their buffers (model §2.4);
    out-of-range garbage (or 0) for inactive slots."""
    ucm = rng.integers(0, cfg.ucm_vocab, size=active.shape)
    access = rng.integers(0, cfg.n_access, size=active.shape)
    access = np.where(buffer > 0, access, 0)
    junk_u = rng.integers(-50, 50, size=active.shape) if garbage else 0
    junk_a = rng.integers(-50, 50, size=active.shape) if garbage else 0
    return np.where(active, ucm, junk_u), np.where(active, access, junk_a)


# -- reading state ----------------------------------------------------------------------------


def to_numpy(x) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def obs_dict(obs) -> dict[str, np.ndarray]:
    """A LeaderObs/FollowerObs as a dict of numpy arrays (``t`` as an array too)."""
    return {k: to_numpy(v) for k, v in vars(obs).items()}
