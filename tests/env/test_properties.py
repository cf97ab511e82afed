"""Properties of the environments: slot-relabeling equivariance (model §2: UE slots carry no
meaning) and seeded determinism (model §2, last paragraph)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import draw_blocks, env_configs, obs_dict, random_actions, random_dcm, to_numpy

from mfsg.config import ChurnConfig, EnvConfig
from mfsg.env import BatchedEnv, ReferenceEnv, spec
from mfsg.env.draws import Draws

PER_SLOT_STATE = ("active", "count", "ue_generated", "ue_delivered", "prev_ucm", "prev_access", "prev_dcm")


def relabel(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Move slot s (last axis) to slot perm[s]."""
    out = np.empty_like(x)
    out[..., perm] = x
    return out


def relabel_config(cfg: EnvConfig, perm: np.ndarray) -> EnvConfig:
    p = relabel(np.array(cfg.arrival_probs()), perm)
    churn = cfg.churn
    if churn.kind == "trace":
        sched = tuple(tuple(sorted(int(perm[s]) for s in slots)) for slots in churn.schedule)
        churn = ChurnConfig(kind="trace", schedule=sched)
    return cfg.replace(p_arrival=tuple(float(x) for x in p), churn=churn)


def relabel_draws(d: Draws, perm: np.ndarray) -> Draws:
    move = lambda x: torch.from_numpy(relabel(x.numpy(), perm))  # noqa: E731
    place = None if d.place is None else move(d.place)
    return Draws(n_init=d.n_init, join=d.join, leave=move(d.leave), arrival=move(d.arrival), decode=d.decode, place=place)


def decoded_slots(env: BatchedEnv) -> np.ndarray:
    """[E, K] slot whose dPDU was decoded on each RBG in the last TTI (-1 if none)."""
    ue_id, dec = to_numpy(env.ue_id), to_numpy(env.decoded_id)
    hit = (dec[:, :, None] == ue_id[:, None, :]) & (dec[:, :, None] != spec.NO_UE)
    return np.where(hit.any(axis=2), hit.argmax(axis=2), -1)


def assert_relabeled(a: dict, b: dict, perm: np.ndarray, per_slot: tuple[str, ...], what: str) -> None:
    for key in a:
        want = relabel(a[key], perm) if key in per_slot else a[key]
        np.testing.assert_array_equal(b[key], want, err_msg=f"{what}.{key}")


@given(
    data=st.data(),
    n_envs=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_relabeling_slots_is_equivariant(data, n_envs, seed):
    cfg = data.draw(env_configs(kinds=("fixed", "trace"), cover=True), label="cfg")
    if cfg.churn.kind == "fixed":  # with spare slots only random placement (draws relabelled too) is equivariant
        cfg = cfg.replace(churn=dataclasses.replace(cfg.churn, placement="random"))
    perm = np.array(data.draw(st.permutations(range(cfg.n_slots)), label="perm"))
    cfg2 = relabel_config(cfg, perm)
    assert cfg2.n_slots == cfg.n_slots
    rng = np.random.default_rng(seed)
    env, env2 = BatchedEnv(cfg, n_envs), BatchedEnv(cfg2, n_envs)
    lead_slots = ("active", "prev_ucm", "prev_dcm")
    follow_slots = ("active", "buffer", "prev_ucm", "prev_access", "dcm")
    for draws in draw_blocks(cfg, n_envs, rng):
        lead, lead2 = obs_dict(env.begin_tti(draws)), obs_dict(env2.begin_tti(relabel_draws(draws, perm)))
        np.testing.assert_array_equal(lead2.pop("ue_id") == spec.NO_UE, relabel(lead.pop("ue_id") == spec.NO_UE, perm))
        lead.pop("decoded_id"), lead2.pop("decoded_id")  # identities; compared as slots below
        assert_relabeled(lead, lead2, perm, lead_slots, "leader obs")
        active = lead["active"]
        dcm = random_dcm(cfg, active, rng)
        follow = obs_dict(env.deliver(dcm))
        assert_relabeled(follow, obs_dict(env2.deliver(relabel(dcm, perm))), perm, follow_slots, "follower obs")
        ucm, access = random_actions(cfg, active, follow["buffer"], rng)
        r, r2 = env.end_tti(ucm, access), env2.end_tti(relabel(ucm, perm), relabel(access, perm))
        np.testing.assert_array_equal(to_numpy(r2.team), to_numpy(r.team))
        np.testing.assert_allclose(to_numpy(r2.leader), to_numpy(r.leader), rtol=1e-12)
        np.testing.assert_array_equal(to_numpy(r2.follower), relabel(to_numpy(r.follower), perm))
        slots, slots2 = decoded_slots(env), decoded_slots(env2)
        np.testing.assert_array_equal(slots2, np.where(slots >= 0, perm[slots], -1))
        for name in PER_SLOT_STATE:
            want = relabel(to_numpy(getattr(env, name)), perm)
            np.testing.assert_array_equal(to_numpy(getattr(env2, name)), want, err_msg=name)
        for name in spec.COUNTER_FIELDS:
            a, b = to_numpy(getattr(env.c, name)), to_numpy(getattr(env2.c, name))
            np.testing.assert_allclose(b, a, rtol=1e-12, err_msg=f"counter {name}")
    np.testing.assert_array_equal(to_numpy(env2.latency_hist), to_numpy(env.latency_hist))
    np.testing.assert_allclose(to_numpy(env2.jain()), to_numpy(env.jain()), rtol=1e-12)


# -- determinism ---------------------------------------------------------------------------------

CFG = EnvConfig(
    n_rbg=2, buffer=3, horizon=12, p_arrival=0.5, tbler=0.2,
    churn=ChurnConfig(kind="markov", n_min=1, n_max=4, p_join=0.4, p_leave=0.3),
)


def make(kind: str, cfg: EnvConfig, seed: int | None):
    return BatchedEnv(cfg, 3, seed=seed) if kind == "batched" else ReferenceEnv(cfg, seed=seed)


def trajectory(env, action_seed: int) -> list[np.ndarray]:
    """Play one episode from the env's own generator; every observation, reward and the final counters."""
    cfg, rng, out = env.cfg, np.random.default_rng(action_seed), []
    while not env.done:
        lead = obs_dict(env.begin_tti())
        follow = obs_dict(env.deliver(random_dcm(cfg, lead["active"], rng)))
        ucm, access = random_actions(cfg, lead["active"], follow["buffer"], rng)
        r = env.end_tti(ucm, access)
        out += list(lead.values()) + list(follow.values()) + [to_numpy(x) for x in (r.team, r.leader, r.follower)]
    return out + [to_numpy(v) for v in env.c.as_dict().values()]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kind", ["batched", "reference"])
def test_same_seed_same_trajectory(kind):
    first = trajectory(make(kind, CFG, seed=11), action_seed=5)
    again = make(kind, CFG, seed=11)
    assert same(trajectory(again, action_seed=5), first)
    again.reset(seed=11)  # reset(seed) restarts the generator
    assert same(trajectory(again, action_seed=5), first)
    again.reset()  # reset() continues it: a new episode
    assert not same(trajectory(again, action_seed=5), first)


@pytest.mark.parametrize("kind", ["batched", "reference"])
def test_different_seeds_differ(kind):
    assert not same(trajectory(make(kind, CFG, seed=11), 5), trajectory(make(kind, CFG, seed=12), 5))

