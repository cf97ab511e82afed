"""Stateful test of the batched environment under Markov churn (model §2–§4).

The machine writes every TTI's draws itself: by default (draws 0.999) nobody joins or leaves,
and the rules ``join``/``leave`` force a join or a departure in the next TTI. Each ``step``
plays one TTI with arbitrary valid actions (garbage for inactive slots) and arbitrary arrival
and decoding draws, on the batched env, on a twin (a deep copy) driven with zeros for inactive
slots, and on one ReferenceEnv per episode; all three must agree in everything observable, and
the model invariants (packet conservation, reception and reward accounting, churn bookkeeping)
must hold.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from strategies import random_actions, random_dcm, to_numpy

from mfsg.config import ChurnConfig, EnvConfig, UtilityConfig
from mfsg.env import BatchedEnv, ReferenceEnv, spec
from mfsg.env.draws import Draws, block_size

E = 3
CFG = EnvConfig(
    n_rbg=2,
    buffer=3,
    horizon=6,
    p_arrival=(0.6, 0.4, 0.5, 0.7),
    tbler=0.3,
    ucm_vocab=2,
    churn=ChurnConfig(kind="markov", n_min=1, n_max=4, p_join=0.5, p_leave=0.5),
    utility=UtilityConfig(reward_scale=1.5, kappa_buf=0.1, c_tx=0.05, beta_fair=2.0),
)
S, K, B = CFG.n_slots, CFG.n_rbg, CFG.buffer
QUIET = 0.999  # a draw above every probability of CFG: no join, no leave
INT_COUNTERS = [f for f in spec.COUNTER_FIELDS if not f.startswith("fair_s")]

uniforms = st.floats(0.0, 1.0, exclude_max=True)


def counters(env: BatchedEnv) -> dict[str, np.ndarray]:
    return {f: to_numpy(getattr(env.c, f)).copy() for f in spec.COUNTER_FIELDS}


def observable(env: BatchedEnv) -> dict[str, np.ndarray]:
    """Everything a player or a metric can see of the batched env now."""
    seen = {f"c.{k}": v for k, v in counters(env).items()}
    seen.update(latency_hist=to_numpy(env.latency_hist), jain=to_numpy(env.jain()), t=np.array(env.t))
    for name, obs in (("lead", env.leader_observation()), ("follow", env.follower_observation())):
        seen.update({f"{name}.{k}": to_numpy(v) for k, v in vars(obs).items()})
    return seen


def assert_same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{what}: {k}")


def expected_churn(active: np.ndarray, leave: np.ndarray, join: bool) -> tuple[np.ndarray, int | None]:
    """model §3 markov step for one episode with forced draws: leavers in slot order while above
    n_min, then one joiner in the lowest free slot if below n_max."""
    n, leaving = int(active.sum()), np.zeros_like(active)
    for s in range(S):
        if active[s] and leave[s] and n > CFG.churn.n_min:
            leaving[s], n = True, n - 1
    free = np.flatnonzero(~(active & ~leaving))
    joiner = int(free[0]) if join and n < CFG.churn.n_max else None
    return leaving, joiner


class MarkovChurnMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.env = BatchedEnv(CFG, E)
        self.twin = copy.deepcopy(self.env)  # driven with zeros for inactive slots
        self.refs = [ReferenceEnv(CFG) for _ in range(E)]
        self._clear()

    def _clear(self):
        self.want_join = np.zeros(E, dtype=bool)
        self.want_leave = np.zeros((E, S), dtype=bool)

    @rule(e=st.integers(0, E - 1))
    def join(self, e):
        self.want_join[e] = True

    @rule(e=st.integers(0, E - 1), slot=st.integers(0, S - 1))
    def leave(self, e, slot):
        self.want_leave[e, slot] = True

    @precondition(lambda self: self.env.done)
    @rule(seed=st.none() | st.integers(0, 2**16))
    def reset(self, seed):
        self.env.reset(seed)
        self.twin.reset(seed)
        for r in self.refs:
            r.reset(seed)
        assert self.env.t == 0 and not self.env.active.any()
        assert all(int(v.sum()) == 0 for v in counters(self.env).values())

    @precondition(lambda self: not self.env.done)
    @rule(
        n_init=st.lists(uniforms, min_size=E, max_size=E),
        arrival=st.lists(st.sampled_from([0.0, QUIET]) | uniforms, min_size=E * S, max_size=E * S),
        decode=st.lists(uniforms, min_size=E * K, max_size=E * K),
        seed=st.integers(0, 2**32 - 1),
    )
    def step(self, n_init, arrival, decode, seed):
        env, rng = self.env, np.random.default_rng(seed)
        block = np.full((E, block_size(S, K)), QUIET)
        block[:, 0] = n_init
        block[:, 1] = np.where(self.want_join, 0.0, QUIET)
        draws = Draws.split(torch.from_numpy(block), S, K)
        draws.leave[:] = torch.from_numpy(np.where(self.want_leave, 0.0, QUIET))
        draws.arrival[:] = torch.tensor(arrival, dtype=torch.float64).view(E, S)
        draws.decode[:] = torch.tensor(decode, dtype=torch.float64).view(E, K)

        before, t = counters(env), env.t
        active0, count0 = to_numpy(env.active).copy(), to_numpy(env.count).copy()
        next_id0 = to_numpy(env.next_id).copy()
        lead = env.begin_tti(draws)
        self.twin.begin_tti(draws)
        for e, r in enumerate(self.refs):
            r.begin_tti(draws.episode(e))
        active = to_numpy(lead.active)
        if t > 0:
            self._check_churn(before, active0, count0, next_id0, lead)

        twin = self.twin
        dcm = random_dcm(CFG, active, rng)
        follow = env.deliver(torch.from_numpy(dcm))
        twin.deliver(torch.from_numpy(np.where(active, dcm, 0)))
        for e, r in enumerate(self.refs):
            r.deliver(dcm[e])
        ucm, access = random_actions(CFG, active, to_numpy(follow.buffer), rng)
        rewards = env.end_tti(torch.from_numpy(ucm), torch.from_numpy(access))
        twin_rewards = twin.end_tti(torch.from_numpy(ucm * active), torch.from_numpy(access * active))
        ref_rewards = [r.end_tti(ucm[e], access[e]) for e, r in enumerate(self.refs)]

        assert_same(observable(env), observable(twin), "inactive slots' actions had an effect")
        for field in ("team", "leader", "follower"):
            np.testing.assert_array_equal(to_numpy(getattr(rewards, field)), to_numpy(getattr(twin_rewards, field)))
        for e, (r, rr) in enumerate(zip(self.refs, ref_rewards, strict=True)):
            for f in INT_COUNTERS:
                assert getattr(r.c, f) == int(getattr(env.c, f)[e]), f"episode {e}: {f} differs from the reference"
            np.testing.assert_allclose(to_numpy(rewards.follower[e]), rr.follower, rtol=1e-12)
            assert float(rewards.team[e]) == rr.team
        self._check_tti(before, active, access, rewards)
        self._clear()

    def _check_churn(self, before, active0, count0, next_id0, lead) -> None:
        """Departures lose their buffers; a joiner takes the lowest free slot with a new identity."""
        c = counters(self.env)
        ue_id, prev_ucm, prev_dcm = to_numpy(lead.ue_id), to_numpy(lead.prev_ucm), to_numpy(lead.prev_dcm)
        for e in range(E):
            leaving, joiner = expected_churn(active0[e], self.want_leave[e], bool(self.want_join[e]))
            expect = active0[e] & ~leaving
            if joiner is not None:
                expect[joiner] = True
                assert ue_id[e, joiner] == next_id0[e], "a joiner gets a new identity"
                assert prev_ucm[e, joiner] == 0 and prev_dcm[e, joiner] == 0, "a joiner has no message history"
                assert to_numpy(self.env.count)[e, joiner] <= 1, "a joiner starts with an empty buffer"
            np.testing.assert_array_equal(to_numpy(self.env.active)[e], expect, err_msg=f"episode {e}: active set")
            lost = c["lost_on_departure"][e] - before["lost_on_departure"][e]
            assert lost == count0[e][leaving].sum(), "a leaving UE's buffered dPDUs are lost_on_departure"
            assert c["joins"][e] - before["joins"][e] == (joiner is not None)

    def _check_tti(self, before, active, access, rewards) -> None:
        """Reception and reward accounting of one TTI (model §2.5–§2.8, §4)."""
        env, u = self.env, CFG.utility
        c = counters(env)
        d = {f: c[f] - before[f] for f in INT_COUNTERS}
        outcome, decoded_id, ue_id = to_numpy(env.outcome), to_numpy(env.decoded_id), to_numpy(env.ue_id)
        assert np.all(d["idle"] + d["collisions"] + d["erasures"] + d["delivered"] + d["duplicates"] == K)
        for e in range(E):
            decoded = outcome[e] == spec.OUT_DECODED
            np.testing.assert_array_equal(decoded, decoded_id[e] != spec.NO_UE)
            assert d["delivered"][e] + d["duplicates"][e] == decoded.sum() <= K, "one decoded dPDU per RBG"
            for k in np.flatnonzero(decoded):  # the decoded UE is the single active sender on RBG k
                senders = np.flatnonzero(active[e] & (access[e] == k + 1))
                assert len(senders) == 1 and ue_id[e, senders[0]] == decoded_id[e, k]
        team = u.reward_scale * (d["delivered"] - d["deleted_unreceived"])
        np.testing.assert_allclose(to_numpy(rewards.team), team, rtol=1e-12, err_msg="duplicates give no reward")
        leader = team + (u.beta_fair * to_numpy(env.jain()) if env.done else 0.0)
        np.testing.assert_allclose(to_numpy(rewards.leader), leader, rtol=1e-12)
        follower = team - u.kappa_buf * (to_numpy(env.count) * active).sum(axis=1) / B - u.c_tx * d["tx"]
        np.testing.assert_allclose(to_numpy(rewards.follower).sum(axis=1), follower, rtol=1e-9, atol=1e-12)
        assert np.all(to_numpy(rewards.follower)[~active] == 0)

    @invariant()
    def packets_are_conserved(self):
        per_env = [counters(self.env)]
        per_env += [{f: np.array([getattr(r.c, f)]) for f in spec.COUNTER_FIELDS} for r in self.refs]
        for c in per_env:
            np.testing.assert_array_equal(
                c["generated"], c["dropped_overflow"] + c["in_buffer"] + c["deleted"] + c["lost_on_departure"]
            )
            assert np.all(c["delivered"] <= c["generated"])
            assert np.all(c["deleted_unreceived"] <= c["deleted"])

    @invariant()
    def buffers_and_slots_are_consistent(self):
        env = self.env
        count, active, ue_id = to_numpy(env.count), to_numpy(env.active), to_numpy(env.ue_id)
        assert np.all((0 <= count) & (count <= B))
        assert np.all(count[~active] == 0)
        np.testing.assert_array_equal(ue_id == spec.NO_UE, ~active)
        if env.t > 0:
            n = active.sum(axis=1)
            assert np.all((CFG.churn.n_min <= n) & (n <= CFG.churn.n_max))
        for e, r in enumerate(self.refs):
            assert [len(ue.buffer) if ue else 0 for ue in r.ues] == count[e].tolist()


MarkovChurnMachine.TestCase.settings = settings(stateful_step_count=30)
TestMarkovChurn = MarkovChurnMachine.TestCase


def test_machine_forces_churn():
    """Sanity of the draw layout the machine relies on: forced draws make a UE leave and another join."""
    env = BatchedEnv(CFG.replace(p_arrival=1.0), 1)
    block = torch.full((1, block_size(S, K)), QUIET, dtype=torch.float64)
    block[0, 0] = 0.99  # n_init -> n_max UEs
    env.begin_tti(Draws.split(block.clone(), S, K))
    env.deliver(torch.zeros(1, S, dtype=torch.long))
    env.end_tti(torch.zeros(1, S, dtype=torch.long), torch.zeros(1, S, dtype=torch.long))
    draws = Draws.split(block, S, K)
    draws.leave[0, 1] = 0.0  # slot 1 leaves, then (n < n_max) one UE joins slot 1
    draws.join[0] = 0.0
    lead = env.begin_tti(draws)
    assert lead.active.all() and int(lead.ue_id[0, 1]) == S
    assert int(env.c.lost_on_departure[0]) == 1 and int(env.c.joins[0]) == S + 1
