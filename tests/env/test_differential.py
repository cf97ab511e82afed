"""Differential test: BatchedEnv (E episodes) against E ReferenceEnvs driven by the same draws
and the same actions, under every churn process (model §2–§4, §7)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import draw_blocks, env_configs, obs_dict, random_actions, random_dcm, to_numpy

from mfsg.config import CHURN_KINDS, ChurnConfig, EnvConfig
from mfsg.env import BatchedEnv, InvalidActionError, ReferenceEnv
from mfsg.env.spec import COUNTER_FIELDS

FLOAT_COUNTERS = ("fair_sum", "fair_sumsq")
RTOL = 1e-12  # sums of the same float terms in a different order


def assert_obs_equal(batched_obs, ref_obs: list) -> None:
    b = obs_dict(batched_obs)
    for e, r in enumerate(ref_obs):
        for key, value in obs_dict(r).items():
            got = b[key] if key == "t" else b[key][e]
            np.testing.assert_array_equal(got, value, err_msg=f"episode {e}: {type(r).__name__}.{key}")


def assert_rewards_equal(batched_r, ref_r: list) -> None:
    for e, r in enumerate(ref_r):
        assert float(batched_r.team[e]) == r.team, f"episode {e}: team reward"
        np.testing.assert_allclose(float(batched_r.leader[e]), r.leader, rtol=RTOL, err_msg=f"episode {e}: leader")
        follower = to_numpy(batched_r.follower[e])
        np.testing.assert_allclose(follower, r.follower, rtol=RTOL, atol=0, err_msg=f"episode {e}: follower")
        np.testing.assert_array_equal(to_numpy(batched_r.team_ue[e]), r.team_ue, err_msg=f"episode {e}: team share")
        # rho * (sum of per-UE counts) against the sum of rho * count: equal up to float rounding
        np.testing.assert_allclose(r.team_ue.sum(), r.team, rtol=RTOL, atol=RTOL * np.abs(r.team_ue).sum(),
                                   err_msg=f"episode {e}: the team shares sum to the team reward")


def assert_counters_equal(batched: BatchedEnv, refs: list[ReferenceEnv]) -> None:
    for e, ref in enumerate(refs):
        for name in COUNTER_FIELDS:
            got, want = getattr(batched.c, name)[e].item(), getattr(ref.c, name)
            if name in FLOAT_COUNTERS:
                assert got == pytest.approx(want, rel=RTOL, abs=1e-300), f"episode {e}: counter {name}"
            else:
                assert got == want, f"episode {e}: counter {name} batched={got} reference={want}"


def run_pair(cfg: EnvConfig, n_envs: int, seed: int) -> tuple[BatchedEnv, list[ReferenceEnv]]:
    """Drive both environments through one episode, comparing everything after every phase."""
    rng = np.random.default_rng(seed)
    batched, refs = BatchedEnv(cfg, n_envs), [ReferenceEnv(cfg) for _ in range(n_envs)]
    for draws in draw_blocks(cfg, n_envs, rng):
        lead = batched.begin_tti(draws)
        assert_obs_equal(lead, [r.begin_tti(draws.episode(e)) for e, r in enumerate(refs)])
        active = to_numpy(lead.active)
        dcm = random_dcm(cfg, active, rng)
        follow = batched.deliver(torch.from_numpy(dcm))
        assert_obs_equal(follow, [r.deliver(dcm[e]) for e, r in enumerate(refs)])
        ucm, access = random_actions(cfg, active, to_numpy(follow.buffer), rng)
        rewards = batched.end_tti(torch.from_numpy(ucm), torch.from_numpy(access))
        assert_rewards_equal(rewards, [r.end_tti(ucm[e], access[e]) for e, r in enumerate(refs)])
        assert_counters_equal(batched, refs)
    assert batched.done and all(r.done for r in refs)
    return batched, refs


@pytest.mark.parametrize("kind", CHURN_KINDS)
@given(data=st.data(), n_envs=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_batched_matches_reference(kind, data, n_envs, seed):
    cfg = data.draw(env_configs(kinds=(kind,)), label="cfg")
    batched, refs = run_pair(cfg, n_envs, seed)
    for e, ref in enumerate(refs):
        hist = np.bincount(np.asarray(ref.latencies, dtype=np.int64), minlength=cfg.horizon)
        np.testing.assert_array_equal(to_numpy(batched.latency_hist[e]), hist, err_msg=f"episode {e}: latency")
        assert batched.jain()[e].item() == pytest.approx(ref.jain(), rel=RTOL), f"episode {e}: Jain"


def test_differential_exercises_every_event():
    """The generated episodes do reach overflow, collisions, erasures, duplicates, churn and deletions."""
    cfg = EnvConfig(
        n_rbg=2, buffer=2, horizon=40, p_arrival=(0.9, 0.5, 0.7), tbler=0.5,
        churn=ChurnConfig(kind="markov", n_min=1, n_max=3, p_join=0.5, p_leave=0.3),
    )
    batched, _ = run_pair(cfg, 4, seed=7)
    totals = {name: int(getattr(batched.c, name).sum()) for name in COUNTER_FIELDS if name not in FLOAT_COUNTERS}
    for name in ("dropped_overflow", "collisions", "erasures", "duplicates", "lost_on_departure",
                 "deleted_unreceived", "delivered", "joins"):
        assert totals[name] > 0, f"{name} never happened: {totals}"


# -- invalid actions ---------------------------------------------------------------------------

FIELD_RE = re.compile(r"^(ucm|access|dcm)\[[0-9, ]+\]=(-?\d+) is invalid\b")


def _field(message: str) -> tuple[str, int]:
    m = FIELD_RE.match(message)
    assert m, f"message does not name the field: {message!r}"
    return m.group(1), int(m.group(2))


def _both_raise(batched_call, ref_call, *args) -> tuple[str, int]:
    """Call ``batched_call(args[0])`` and ``ref_call(args[1])``; both must raise for the same field and value."""
    with pytest.raises(InvalidActionError) as eb:
        batched_call(*(torch.from_numpy(a) for a in args))
    with pytest.raises(InvalidActionError) as er:
        ref_call(*args)
    assert "\n" not in str(eb.value)
    assert _field(str(eb.value)) == _field(str(er.value))
    return _field(str(eb.value))


INVALID = {  # what -> (field, value) given the config
    "dcm_high": lambda cfg: ("dcm", cfg.dcm_vocab),
    "dcm_neg": lambda cfg: ("dcm", -1),
    "ucm_high": lambda cfg: ("ucm", cfg.ucm_vocab),
    "ucm_neg": lambda cfg: ("ucm", -1),
    "access_high": lambda cfg: ("access", cfg.n_access),
    "access_neg": lambda cfg: ("access", -1),
    "tx_empty": lambda cfg: ("access", 1),
    "delete_empty": lambda cfg: ("access", cfg.delete_action),
}


@pytest.mark.parametrize("what", list(INVALID))
@given(data=st.data(), n_envs=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_invalid_actions_raise_identically(what, data, n_envs, seed):
    """Both environments reject the same invalid action of an active UE, naming the field (model §2.4)."""
    cfg = data.draw(env_configs(kinds=("fixed", "per_episode")), label="cfg")
    # slot 0 is always active (lowest-slot placement) and never gets traffic: TX/DELETE there is invalid
    churn = dataclasses.replace(cfg.churn, placement="lowest")
    cfg = cfg.replace(churn=churn, p_arrival=(0.0,) + tuple(cfg.arrival_probs()[1:]))
    rng = np.random.default_rng(seed)
    batched, refs = BatchedEnv(cfg, n_envs), [ReferenceEnv(cfg) for _ in range(n_envs)]
    blocks = draw_blocks(cfg, n_envs, rng)
    stop = data.draw(st.integers(0, cfg.horizon - 1), label="tti")
    e = data.draw(st.integers(0, n_envs - 1), label="episode")
    name, value = INVALID[what](cfg)
    for t, draws in enumerate(blocks[: stop + 1]):
        active = to_numpy(batched.begin_tti(draws).active)
        for i, r in enumerate(refs):
            r.begin_tti(draws.episode(i))
        dcm = random_dcm(cfg, active, rng)
        if name == "dcm" and t == stop:
            dcm[e, 0] = value
            assert _both_raise(batched.deliver, lambda d: refs[e].deliver(d[e]), dcm) == (name, value)
            return
        buffer = to_numpy(batched.deliver(torch.from_numpy(dcm)).buffer)
        for i, r in enumerate(refs):
            r.deliver(dcm[i])
        ucm, access = random_actions(cfg, active, buffer, rng)
        if t == stop:
            assert buffer[e, 0] == 0 and active[e, 0]
            (ucm if name == "ucm" else access)[e, 0] = value
            got = _both_raise(batched.end_tti, lambda u, a: refs[e].end_tti(u[e], a[e]), ucm, access)
            assert got == (name, value)
            return
        batched.end_tti(torch.from_numpy(ucm), torch.from_numpy(access))
        for i, r in enumerate(refs):
            r.end_tti(ucm[i], access[i])


@pytest.mark.slow
@pytest.mark.parametrize("kind", CHURN_KINDS)
def test_long_episodes_match(kind):
    """Long horizons wrap the ring buffers many times; defaults of model §1 except a small B."""
    schedule = tuple(tuple(s for s in range(5) if (t + s) % 3) for t in range(200))
    churn = {
        "fixed": ChurnConfig(kind="fixed", n=5),
        "per_episode": ChurnConfig(kind="per_episode", n_min=2, n_max=6),
        "markov": ChurnConfig(kind="markov", n_min=2, n_max=6, p_join=0.3, p_leave=0.1),
        "trace": ChurnConfig(kind="trace", schedule=schedule),
    }[kind]
    cfg = EnvConfig(buffer=4, horizon=200, tbler=0.05, churn=churn)
    batched, refs = run_pair(cfg, 6, seed=2024)
    for e, ref in enumerate(refs):
        hist = np.bincount(np.asarray(ref.latencies, dtype=np.int64), minlength=cfg.horizon)
        np.testing.assert_array_equal(to_numpy(batched.latency_hist[e]), hist)
