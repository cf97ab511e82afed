"""The PettingZoo adapter (mfsg.env.pettingzoo): API conformance, agents that come and go,
the two-phase TTI, the invalid-action policy, and rewards equal to the reference env's."""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from pettingzoo.test import parallel_api_test, parallel_seed_test

from mfsg.config import ChurnConfig, EnvConfig
from mfsg.env import InvalidActionError, ReferenceEnv, parallel_env
from mfsg.env.pettingzoo import BS, FOLLOWER_PHASE, LEADER_PHASE, MacParallelEnv, max_identities, ue_agent

VISIBLE_CHURN = EnvConfig(
    n_rbg=2, buffer=3, horizon=12, p_arrival=0.5, tbler=0.1,
    churn=ChurnConfig(kind="markov", n_min=1, n_max=4, p_join=0.5, p_leave=0.3),
)
CHURNS = {
    "fixed": ChurnConfig(kind="fixed", n=3),
    "per_episode": ChurnConfig(kind="per_episode", n_min=1, n_max=3),
    "markov": VISIBLE_CHURN.churn,
    "trace": ChurnConfig(kind="trace", schedule=((0, 1), (1,), (0, 1, 2), (2,), (), (0,))),
}
# possible_agents is an upper bound: identities that never appeared are not "finished" at the end
EXPECTED_WARNING = "No agents present but not all possible_agents are terminated or truncated"


def masked_actions(env: MacParallelEnv, obs: dict, rng: np.random.Generator) -> dict:
    """A uniformly random action of every live agent among those its action_mask allows."""
    out = {}
    for agent in env.agents:
        masks = obs[agent]["action_mask"]
        out[agent] = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
    return out


def play(env: MacParallelEnv, seed: int, action_seed: int) -> list[tuple]:
    """One episode with masked random actions: per step (phase, agents before, actions, step results, agents after)."""
    rng, history = np.random.default_rng(action_seed), []
    obs, _ = env.reset(seed=seed)
    while env.agents:
        phase, agents, actions = env.phase, list(env.agents), masked_actions(env, obs, rng)
        result = env.step(actions)
        history.append((phase, agents, actions, result, list(env.agents)))
        obs = result[0]
    return history


@pytest.mark.parametrize("kind", list(CHURNS))
def test_parallel_api(kind):
    env = parallel_env(VISIBLE_CHURN, churn=CHURNS[kind], horizon=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=EXPECTED_WARNING)
        parallel_api_test(env, num_cycles=4 * env.cfg.horizon)


def test_parallel_seed_determinism():
    """PettingZoo's seed test (it stops after one step; see test_same_seed_same_episode), unmasked actions."""
    parallel_seed_test(lambda: parallel_env(VISIBLE_CHURN), num_cycles=100)


def test_parallel_env_builds_from_config_and_overrides():
    env = parallel_env(VISIBLE_CHURN, seed=3, horizon=5, n_rbg=1)
    assert env.cfg == VISIBLE_CHURN.replace(horizon=5, n_rbg=1)
    assert parallel_env().cfg == EnvConfig()
    with pytest.raises(KeyError, match="agent='ue_99'"):
        env.action_space("ue_99")


def test_two_phases_per_tti_and_spaces():
    env = parallel_env(VISIBLE_CHURN)
    obs, infos = env.reset(seed=1)
    rng, steps = np.random.default_rng(0), 0
    for a in env.agents:
        assert env.observation_space(a).contains(obs[a]) and obs[a]["phase"] == LEADER_PHASE
    while env.agents:
        phase = env.phase
        obs, rew, term, trunc, infos = env.step(masked_actions(env, obs, rng))
        steps += 1
        for a, o in obs.items():
            assert env.observation_space(a).contains(o), (a, o)
        if phase == LEADER_PHASE:  # no rewards yet; UEs now see their DCM
            assert set(rew.values()) == {0.0} and not any(term.values())
            assert all(o["phase"] == FOLLOWER_PHASE for o in obs.values())
        else:
            assert all(o["phase"] == LEADER_PHASE for o in obs.values())
    assert steps == 2 * env.cfg.horizon
    assert all(trunc.values()) and not any(term.values()) and BS in trunc


def test_agents_join_and_leave_with_trace_churn():
    """Identities follow model §3: a UE rejoining a freed slot is a new agent."""
    cfg = VISIBLE_CHURN.replace(horizon=6, churn=CHURNS["trace"])
    env = parallel_env(cfg)
    assert env.possible_agents == [BS] + [ue_agent(i) for i in range(max_identities(cfg))]
    assert max_identities(cfg) == 5  # ue_0, ue_1 at reset, ue_2 (slot 0 again), ue_3 (slot 2), ue_4 (slot 0)
    obs, _ = env.reset(seed=0)
    live_per_tti, terminated_per_tti, rng = [sorted(env.agents)], [], np.random.default_rng(0)
    while env.agents:
        obs = env.step(masked_actions(env, obs, rng))[0]  # leader phase
        obs, _, term, _, _ = env.step(masked_actions(env, obs, rng))  # follower phase
        terminated_per_tti.append(sorted(a for a, done in term.items() if done))
        live_per_tti.append(sorted(env.agents))
    assert live_per_tti == [
        [BS, "ue_0", "ue_1"], [BS, "ue_1"], [BS, "ue_1", "ue_2", "ue_3"], [BS, "ue_3"], [BS], [BS, "ue_4"], [],
    ]
    assert terminated_per_tti == [["ue_0"], [], ["ue_1", "ue_2"], ["ue_3"], [], []]


def test_markov_agents_come_and_go_mid_episode():
    env = parallel_env(VISIBLE_CHURN)
    left_mid, joined_mid = 0, 0
    for seed in range(3):
        history, gone = play(env, seed=seed, action_seed=seed), set()
        for i, (_, agents, _, (obs, _, term, trunc, _), after) in enumerate(history):
            assert not (set(agents) & gone), "an agent came back after it left"
            assert set(obs) <= set(env.possible_agents)
            new = set(obs) - set(agents)
            assert set(after) == (set(agents) | new) - {a for a in obs if term[a] or trunc[a]}
            gone |= {a for a, done in term.items() if done}
            left_mid += sum(term.values())
            joined_mid += len(new) if i < len(history) - 1 else 0
    assert left_mid > 0 and joined_mid > 0


@pytest.mark.parametrize("p_leave", [1.0, 0.0])
def test_max_identities_is_a_tight_bound(p_leave):
    churn = ChurnConfig(kind="markov", n_min=1, n_max=2, p_join=1.0, p_leave=p_leave)
    cfg = VISIBLE_CHURN.replace(horizon=5, churn=churn)
    env, most = parallel_env(cfg), 0
    for seed in range(10):
        history = play(env, seed=seed, action_seed=seed)
        ids = {a for (_, _, _, (obs, *_), _) in history for a in obs if a != BS}
        assert ids <= set(env.possible_agents)
        most = max(most, len(ids))
    assert most == max_identities(cfg) == (2 + cfg.horizon - 1 if p_leave else 2)


def test_rewards_equal_the_reference_env():
    """Summed over an episode, every agent's reward is the reference env's under the same seed and actions."""
    env, seed = parallel_env(VISIBLE_CHURN), 21
    totals: dict[str, float] = defaultdict(float)
    dcms, ue_actions = [], []
    for phase, agents, actions, (_, rew, *_rest, infos), _ in play(env, seed=seed, action_seed=4):
        for a, r in rew.items():
            totals[a] += r
        if phase == LEADER_PHASE:
            dcms.append(actions[BS])
        else:
            ue_actions.append({infos[a]["slot"]: actions[a] for a in agents if a != BS})
    ref = ReferenceEnv(VISIBLE_CHURN, seed=seed)
    want: dict[str, float] = defaultdict(float)
    S = VISIBLE_CHURN.n_slots
    for dcm, acts in zip(dcms, ue_actions, strict=True):
        lead = ref.begin_tti()
        ref.deliver(dcm)
        ucm = [acts[s][0] if s in acts else 0 for s in range(S)]
        access = [acts[s][1] if s in acts else 0 for s in range(S)]
        r = ref.end_tti(ucm, access)
        want[BS] += r.leader
        for s in range(S):
            if lead.active[s]:
                want[ue_agent(int(lead.ue_id[s]))] += r.follower[s]
    assert ref.done
    assert set(totals) == set(want)
    for a in want:
        assert totals[a] == pytest.approx(want[a], rel=1e-12, abs=1e-12), a


def test_invalid_access_is_played_as_idle_and_counted():
    cfg = VISIBLE_CHURN.replace(horizon=4, p_arrival=(0.0, 1.0), churn=ChurnConfig(kind="fixed", n=2))
    env, twin = parallel_env(cfg), parallel_env(cfg)
    obs, _ = env.reset(seed=0)
    twin.reset(seed=0)
    tx = np.array([0, 1])  # TX on RBG 1: invalid for ue_0, whose buffer is always empty
    for t in range(cfg.horizon):
        dcm = {BS: np.zeros(cfg.n_slots, dtype=np.int64)}
        obs = env.step(dcm)[0]
        twin.step(dcm)
        assert obs["ue_0"]["buffer"] == 0 and obs["ue_0"]["action_mask"][1].tolist() == [1, 0, 0, 0]
        obs, rew, _, _, infos = env.step({"ue_0": tx, "ue_1": tx})
        _, rew_twin, _, _, _ = twin.step({"ue_0": np.array([0, 0]), "ue_1": tx})
        assert rew == rew_twin
        assert infos["ue_0"]["invalid_actions"] == t + 1 and infos["ue_1"]["invalid_actions"] == 0
        assert infos[BS]["invalid_actions"] == t + 1


@pytest.mark.parametrize(
    ("agent", "action"), [("ue_0", [2, 0]), ("ue_0", [0, 4]), ("ue_1", [-1, 0]), (BS, [0, 9, 0, 0]), (BS, [0])]
)
def test_actions_outside_the_space_raise(agent, action):
    env = parallel_env(VISIBLE_CHURN.replace(churn=ChurnConfig(kind="fixed", n=4)))
    env.reset(seed=0)
    if agent != BS:
        env.step({})
    with pytest.raises(InvalidActionError, match=rf"^action\[{agent}\]=\[.*\] is invalid: allowed MultiDiscrete"):
        env.step({agent: np.array(action)})


def test_step_after_the_end_raises():
    env = parallel_env(VISIBLE_CHURN.replace(horizon=1))
    env.reset(seed=0)
    env.step({})
    env.step({})
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


def test_same_seed_same_episode():
    """Equal seeds and actions give equal episodes, also after reset(seed); other seeds differ."""
    env, other = parallel_env(VISIBLE_CHURN), parallel_env(VISIBLE_CHURN)
    first = play(env, seed=8, action_seed=1)
    assert data_equivalence(play(other, seed=8, action_seed=1), first)
    assert data_equivalence(play(env, seed=8, action_seed=1), first)
    assert not data_equivalence(play(env, seed=9, action_seed=1), first)
