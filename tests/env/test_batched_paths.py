"""Code paths of the NumPy-core BatchedEnv that the differential test does not reach on its own:
the env's own draws, slot sums over many slots, copies of the callers' actions, handed-out
dtypes, and the seeded draw stream (model §2, last paragraph)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import env_configs, obs_dict, random_actions, random_dcm, to_numpy
from test_differential import run_pair

from mfsg.config import CHURN_KINDS, ChurnConfig, EnvConfig
from mfsg.env import BatchedEnv
from mfsg.env.batched import _FEW_SLOTS, _sum_slots


@given(data=st.data(), n_envs=st.integers(1, 5), n_slots=st.integers(1, 2 * _FEW_SLOTS + 3), signed=st.booleans())
def test_sum_slots_matches_numpy(data, n_envs, n_slots, signed):
    values = st.sampled_from([-1, 0, 1] if signed else [0, 1])
    rows = data.draw(st.lists(st.lists(values, min_size=n_slots, max_size=n_slots), min_size=n_envs, max_size=n_envs))
    x = np.array(rows, dtype=np.int8 if signed else bool)
    got = _sum_slots(x)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, x.astype(np.int64).sum(axis=1))


def _play(env: BatchedEnv, rng: np.random.Generator, draws=None):
    """One TTI with random valid actions; returns everything observable and the draws used."""
    lead = env.begin_tti(draws)
    active = to_numpy(lead.active)
    follow = env.deliver(torch.from_numpy(random_dcm(env.cfg, active, rng)))
    ucm, access = random_actions(env.cfg, active, to_numpy(follow.buffer), rng)
    r = env.end_tti(torch.from_numpy(ucm), torch.from_numpy(access))
    seen = {**{f"lead.{k}": v for k, v in obs_dict(lead).items()}, **{f"follow.{k}": v for k, v in obs_dict(follow).items()}}
    seen.update({f"r.{k}": to_numpy(getattr(r, k)) for k in ("team", "leader", "follower")})
    seen.update({f"c.{k}": to_numpy(v) for k, v in env.c.as_dict().items()})
    return seen, env.draws


@pytest.mark.parametrize("kind", CHURN_KINDS)
@given(data=st.data(), n_envs=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_own_draws_equal_the_same_draws_passed_in(kind, data, n_envs, seed):
    """The env's own draws (short blocks when churn is static after reset) are read exactly as
    :class:`Draws` handed in by a caller (the layout the differential test checks)."""
    cfg = data.draw(env_configs(kinds=(kind,)), label="cfg")
    own, driven = BatchedEnv(cfg, n_envs, seed=seed), BatchedEnv(cfg, n_envs, seed=seed + 1)
    rng_own, rng_driven = np.random.default_rng(seed), np.random.default_rng(seed)
    while not own.done:
        seen, draws = _play(own, rng_own)
        again, _ = _play(driven, rng_driven, draws)
        for k, v in seen.items():
            np.testing.assert_array_equal(again[k], v, err_msg=k)
    np.testing.assert_array_equal(to_numpy(own.latency_hist), to_numpy(driven.latency_hist))


@pytest.mark.parametrize("churn", [ChurnConfig(kind="fixed", n=_FEW_SLOTS + 4),
                                   ChurnConfig(kind="per_episode", n_min=1, n_max=_FEW_SLOTS + 3)])
def test_many_slots_match_reference(churn):
    """More slots than the column-by-column sums handle (the plain-sum branch)."""
    cfg = EnvConfig(n_rbg=3, buffer=3, horizon=12, p_arrival=0.6, tbler=0.2, churn=churn)
    batched, refs = run_pair(cfg, 3, seed=99)
    for e, ref in enumerate(refs):
        hist = np.bincount(np.asarray(ref.latencies, dtype=np.int64), minlength=cfg.horizon)
        np.testing.assert_array_equal(to_numpy(batched.latency_hist[e]), hist)


@pytest.mark.parametrize("churn", [ChurnConfig(kind="fixed", n=3), ChurnConfig(kind="per_episode", n_min=1, n_max=3)])
@pytest.mark.parametrize("as_tensor", [True, False])
def test_callers_actions_are_copied(churn, as_tensor):
    """Changing an action array after handing it in changes nothing the env handed out."""
    cfg = EnvConfig(buffer=3, horizon=4, p_arrival=1.0, churn=churn)
    env, wrap = BatchedEnv(cfg, 2, seed=3), (torch.from_numpy if as_tensor else (lambda x: x))
    env.begin_tti()
    dcm = np.ones((2, cfg.n_slots), dtype=np.int64)
    follow = env.deliver(wrap(dcm))
    ucm, access = np.ones_like(dcm), np.ones_like(dcm)
    env.end_tti(wrap(ucm), wrap(access))
    before = {k: to_numpy(v).copy() for k, v in vars(follow).items() if k != "t"}
    prev = [to_numpy(x).copy() for x in (env.prev_ucm, env.prev_access, env.prev_dcm)]
    for x in (dcm, ucm, access):
        x[:] = 0
    for k, v in before.items():
        np.testing.assert_array_equal(to_numpy(getattr(follow, k)), v, err_msg=k)
    for got, want in zip((env.prev_ucm, env.prev_access, env.prev_dcm), prev, strict=True):
        np.testing.assert_array_equal(to_numpy(got), want)
        assert to_numpy(got)[to_numpy(env.active)].min() == 1


def test_handed_out_types():
    """Observations, rewards and counters are CPU tensors: int64 integers, bool masks, float64 rewards."""
    cfg = EnvConfig(churn=ChurnConfig(kind="per_episode", n_min=2, n_max=5))
    env = BatchedEnv(cfg, 3, seed=0)
    lead = env.begin_tti()
    follow = env.deliver(torch.zeros(3, cfg.n_slots, dtype=torch.int32))
    r = env.end_tti(torch.zeros(3, cfg.n_slots, dtype=torch.long), torch.zeros(3, cfg.n_slots, dtype=torch.long))
    for obs in (lead, follow):
        for k, v in vars(obs).items():
            if k != "t":
                assert v.dtype == (torch.bool if k == "active" else torch.long), k
    assert all(getattr(r, k).dtype == torch.float64 for k in ("team", "leader", "follower"))
    for k, v in env.c.as_dict().items():
        assert v.dtype == (torch.float64 if k.startswith("fair_s") else torch.long), k
    for name in ("count", "hol_rx", "active", "ue_id", "outcome", "decoded_id"):
        assert isinstance(getattr(env, name), torch.Tensor)
        with pytest.raises(AttributeError):
            setattr(env, name, None)


# Totals of two seeded runs, measured with the torch implementation this NumPy core replaced:
# the env's own draw stream (and so every seeded result) is unchanged.
PINNED = {
    "fixed": (EnvConfig(tbler=0.1), dict(generated=436, delivered=95, duplicates=51, collisions=118, erasures=18,
                                         deleted=229, joins=39, lost_on_departure=0), -82.5, [18, 17, 11, 5, 6, 7]),
    "markov": (EnvConfig(buffer=4, tbler=0.2, churn=ChurnConfig(kind="markov", n_min=2, n_max=6, p_join=0.3, p_leave=0.2)),
               dict(generated=240, delivered=75, duplicates=44, collisions=37, erasures=32, deleted=106, joins=87,
                    lost_on_departure=74), 22.5, [31, 15, 5, 5, 7, 2]),
}


@pytest.mark.parametrize("name", list(PINNED))
def test_seeded_stream_is_unchanged(name):
    cfg, counters, team_total, latency_head = PINNED[name]
    env, rng, team, E = BatchedEnv(cfg, 8, seed=2024), np.random.default_rng(7), 0.0, 8
    while not env.done:
        env.begin_tti()
        follow = env.deliver(torch.from_numpy(rng.integers(0, cfg.dcm_vocab, (E, env.S))))
        ucm = torch.from_numpy(rng.integers(0, cfg.ucm_vocab, (E, env.S)))
        access = torch.from_numpy(rng.integers(0, cfg.n_access, (E, env.S))) * (follow.buffer > 0)
        team += float(env.end_tti(ucm, access).team.sum())
    assert {f: int(getattr(env.c, f).sum()) for f in counters} == counters
    assert team == team_total
    assert env.latency_hist.sum(0).tolist()[: len(latency_head)] == latency_head
