"""Stateful tests of the uplink MAC under every churn process and slot placement (model §2–§4, §7).

One machine per churn setting: ``fixed``, ``per_episode`` and ``markov``, each with ``lowest`` and
``random`` slot placement, and ``trace`` (whose schedule places the UEs). Each example draws a
small scenario (K ≤ 3, B ≤ 3, a high ``tbler`` in some) and plays TTIs on E episodes of a
:class:`BatchedEnv`, on a twin (a deep copy) fed zeros for inactive slots, and on one
:class:`ReferenceEnv` per episode, all driven by the same draws and actions; reference and batched
are compared after every phase of every TTI.

Alongside, the test keeps its own :class:`Ledger` of every dPDU, written here from model §2–§3 and
§7 and sharing no code with the environments: which slot holds it, whether the BS has it, how it
left. After every TTI the environment must agree with the ledger (active set, identities, buffers,
channel outcome, every integer counter, every reward), so that no counter holds by construction,
and the invariants hold: packet conservation (each dPDU in exactly one place, each delivery one
generated dPDU counted once), 0 ≤ buffer ≤ B, at most one decoded dPDU per RBG per TTI and only
from its single sender, no reward for a duplicate, a leaving UE's dPDUs counted
``lost_on_departure``, only active UEs act, and at the last TTI the leader's fairness term
β_fair·J with Jain's index computed here.

Rules: ``join`` and ``leave`` force churn through the draws (Markov; ``leave`` picks a UE with
buffered dPDUs when there is one), ``step`` plays one TTI with an action style (random valid,
spread over distinct RBGs, retransmit received dPDUs, all on one RBG, delete received ones) and
optionally a flood of arrivals (full buffers, overflow drops), ``reset`` starts the next episode.
Rare events are reported with :func:`hypothesis.event` (``--hypothesis-show-statistics``);
:func:`test_events_are_covered` asserts that each happens in a minimum fraction of the runs, and
``test_seeded_fault_is_caught`` that three deliberately broken environments fail the machine.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import deque

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.internal.observability import with_observability_callback
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test
from strategies import to_numpy, trace_schedules, utility_configs

from mfsg.config import PLACEMENTS, ChurnConfig, EnvConfig
from mfsg.env import BatchedEnv, ReferenceEnv, spec
from mfsg.env.draws import Draws, block_size

E = 2  # episodes per batched env
STEPS = 24  # rules per example (several episodes: horizons are 2..8 TTIs)
TBLERS = (0.0, 1e-3, 0.5, 0.9)  # 0.5 and 0.9: erasures are common
STYLES = ("random", "spread", "retransmit", "one_rbg", "delete")
SETTINGS = tuple((kind, p) for kind in ("fixed", "per_episode", "markov") for p in PLACEMENTS) + (("trace", "lowest"),)
EVENTS = ("duplicate", "overflow drop", "departure with buffered dPDUs", "collision", "erasure",
          "join into a freed slot")
INT_COUNTERS = tuple(f for f in spec.COUNTER_FIELDS if not f.startswith("fair_s"))
LEDGER_COUNTERS = tuple(f for f in INT_COUNTERS if f not in ("in_buffer", "fair_n"))
RTOL = 1e-12  # sums of the same float terms in another order

# Stateful examples per machine, by Hypothesis profile (tests/conftest.py); CI: 7 machines x 150.
EXAMPLES = {"ci": 150, "dev": 12}


@st.composite
def scenarios(draw, kind: str, placement: str) -> EnvConfig:
    """A small scenario of churn ``kind`` where every event of :data:`EVENTS` can happen."""
    horizon = draw(st.integers(2, 8))
    if kind == "trace":
        churn = ChurnConfig(kind="trace", schedule=draw(trace_schedules(draw(st.integers(1, 4)), horizon)))
    else:
        if kind == "fixed":
            churn = ChurnConfig(kind="fixed", n=draw(st.integers(1, 4)))
        else:
            n_min = draw(st.integers(1, 3))
            churn = ChurnConfig(kind=kind, n_min=n_min, n_max=draw(st.integers(n_min, 4)),
                                p_join=draw(st.floats(0.05, 0.95)), p_leave=draw(st.floats(0.05, 0.95)))
        spare = draw(st.integers(0, 2 if placement == "random" else 1))
        churn = dataclasses.replace(churn, slots=churn.n_slots + spare, placement=placement)
    n_slots = churn.n_slots
    p_arrival = draw(st.lists(st.sampled_from([0.0, 0.3, 0.7, 1.0]), min_size=n_slots, max_size=n_slots))
    return EnvConfig(n_rbg=draw(st.integers(1, 3)), buffer=draw(st.integers(1, 3)), horizon=horizon,
                     p_arrival=tuple(p_arrival), tbler=draw(st.sampled_from(TBLERS)),
                     ucm_vocab=draw(st.integers(1, 2)), churn=churn, utility=draw(utility_configs()))


def jain_index(ratios: list[float]) -> float:
    """Jain's index (Σx)² / (n·Σx²), 1 when every x is 0 (model §7), written out here."""
    total, squares = sum(ratios), sum(x * x for x in ratios)
    return 1.0 if squares == 0 else total * total / (len(ratios) * squares)


class Ledger:
    """The test's own account of one episode (model §2–§3, §7): every dPDU by number.

    ``fifo[s]`` holds the numbers of the dPDUs buffered in slot s (None: no UE), ``fate`` says how
    every other dPDU left (dropped, deleted, lost), ``received`` which ones the BS has decoded,
    ``tally`` the model's counters and ``per_ue`` (generated, delivered) for every UE of the episode.
    """

    def __init__(self, cfg: EnvConfig):
        self.cfg, self.S, self.K, self.B = cfg, cfg.n_slots, cfg.n_rbg, cfg.buffer
        self.fifo: list[deque | None] = [None] * self.S
        self.ue_id = [spec.NO_UE] * self.S
        self.used = [False] * self.S  # the slot held a UE earlier in this episode
        self.fate: dict[int, str] = {}
        self.received: set[int] = set()
        self.n_pdu = self.n_ue = 0
        self.per_ue: dict[int, list[int]] = {}
        self.tally = dict.fromkeys(LEDGER_COUNTERS, 0)
        self.events: set[str] = set()

    @property
    def active(self) -> list[bool]:
        return [q is not None for q in self.fifo]

    # -- model §3: churn, computed from the draws -----------------------------------------
    def priority(self, place) -> list[int]:
        """Slots in the order new UEs take them: index order, or ascending ``place`` draw (random placement)."""
        if place is None:
            return list(range(self.S))
        return sorted(range(self.S), key=lambda s: place[s])

    def churn(self, t: int, d: Draws) -> tuple[list[int], list[int]]:
        """(leaving, joining) slots of TTI t."""
        c, active = self.cfg.churn, self.active
        if c.kind == "trace":
            target = set(c.schedule[t])
            return [s for s in range(self.S) if active[s] and s not in target], sorted(target - {
                s for s in range(self.S) if active[s]})
        if t == 0:
            if c.kind == "fixed":
                n = c.n
            else:
                span = c.n_max - c.n_min + 1
                n = c.n_min + min(int(float(d.n_init) * span), span - 1)
            return [], sorted(self.priority(d.place)[:n])
        if c.kind != "markov":
            return [], []
        n, leaving = sum(active), []
        for s in range(self.S):  # leavers in slot order, never below n_min
            if active[s] and d.leave[s] < c.p_leave and n > c.n_min:
                leaving.append(s)
                n -= 1
        if float(d.join) < c.p_join and n < c.n_max:
            free = [s for s in self.priority(d.place) if not active[s] or s in leaving]
            return leaving, [free[0]]
        return leaving, []

    def apply_churn(self, leaving: list[int], joining: list[int]) -> None:
        for s in leaving:  # departures first: the buffered dPDUs are lost
            if self.fifo[s]:
                self.events.add("departure with buffered dPDUs")
            for pdu in self.fifo[s]:
                self.fate[pdu] = "lost"
            self.tally["lost_on_departure"] += len(self.fifo[s])
            self.fifo[s], self.ue_id[s] = None, spec.NO_UE
        for s in joining:  # a new identity and an empty buffer, even in a reused slot
            if self.used[s]:
                self.events.add("join into a freed slot")
            self.fifo[s], self.ue_id[s], self.used[s] = deque(), self.n_ue, True
            self.per_ue[self.n_ue] = [0, 0]
            self.n_ue += 1
            self.tally["joins"] += 1

    # -- model §2.2: traffic ---------------------------------------------------------------
    def traffic(self, arrival) -> None:
        p = self.cfg.arrival_probs()
        for s, q in enumerate(self.fifo):
            if q is None or not arrival[s] < p[s]:
                continue
            pdu, self.n_pdu = self.n_pdu, self.n_pdu + 1
            self.tally["generated"] += 1
            self.per_ue[self.ue_id[s]][0] += 1
            if len(q) == self.B:
                self.fate[pdu] = "dropped"
                self.tally["dropped_overflow"] += 1
                self.events.add("overflow drop")
            else:
                q.append(pdu)

    # -- model §2.4–§2.8 -------------------------------------------------------------------
    def tti(self, ucm, access, dcm, decode, last: bool) -> dict:
        """Channel, reception, deletion and rewards of one TTI; only active UEs' actions are read."""
        u, K, acting = self.cfg.utility, self.K, [s for s in range(self.S) if self.fifo[s] is not None]
        new, del_unrec, tx = [0] * self.S, [0] * self.S, [0] * self.S
        outcome, decoded_id = [spec.OUT_IDLE] * K, [spec.NO_UE] * K
        for k in range(1, K + 1):
            senders = [s for s in acting if access[s] == k]
            for s in senders:
                tx[s] = 1
            if not senders:
                self.tally["idle"] += 1
            elif len(senders) > 1:
                outcome[k - 1] = spec.OUT_UNDECODABLE
                self.tally["collisions"] += 1
                self.events.add("collision")
            elif decode[k - 1] < self.cfg.tbler:
                outcome[k - 1] = spec.OUT_UNDECODABLE
                self.tally["erasures"] += 1
                self.events.add("erasure")
            else:
                s = senders[0]
                outcome[k - 1], decoded_id[k - 1] = spec.OUT_DECODED, self.ue_id[s]
                pdu = self.fifo[s][0]
                if pdu in self.received:
                    self.tally["duplicates"] += 1
                    self.events.add("duplicate")
                else:
                    self.received.add(pdu)
                    new[s] = 1
                    self.per_ue[self.ue_id[s]][1] += 1
                    self.tally["delivered"] += 1
        for s in acting:
            if access[s] == K + 1:
                pdu = self.fifo[s].popleft()
                self.fate[pdu] = "deleted"
                self.tally["deleted"] += 1
                if pdu not in self.received:
                    del_unrec[s] = 1
                    self.tally["deleted_unreceived"] += 1
        self.tally["tx"] += sum(tx)
        self.tally["ue_ttis"] += len(acting)
        self.tally["ucm_nonzero"] += sum(ucm[s] != 0 for s in acting)
        self.tally["dcm_nonzero"] += sum(dcm[s] != 0 for s in acting)
        team = u.reward_scale * (sum(new) - sum(del_unrec))  # a duplicate earns nothing
        follower = [0.0] * self.S
        for s in acting:
            follower[s] = (u.reward_scale * (new[s] - del_unrec[s]) - u.kappa_buf * len(self.fifo[s]) / self.B
                           - u.c_tx * tx[s])
        leader = team + (u.beta_fair * self.jain() if last else 0.0)
        team_ue = [u.reward_scale * (new[s] - del_unrec[s]) for s in range(self.S)]  # each slot's share of the team's
        return {"outcome": outcome, "decoded_id": decoded_id, "team": team, "leader": leader, "follower": follower,
                "team_ue": team_ue}

    def jain(self) -> float:
        """Jain's index over every UE of the episode, x_n = delivered_n / max(1, generated_n) (model §7)."""
        return jain_index([d / max(1, g) for g, d in self.per_ue.values()])

    def check_conservation(self) -> None:
        """Each dPDU is in exactly one place; each delivery is one generated dPDU, counted once."""
        buffered = [p for q in self.fifo if q for p in q]
        assert len(set(buffered)) == len(buffered) and not set(buffered) & set(self.fate)
        assert len(buffered) + len(self.fate) == self.n_pdu == self.tally["generated"]
        assert self.received <= set(range(self.n_pdu)) and len(self.received) == self.tally["delivered"]


# -- the machine ----------------------------------------------------------------------------------


def counters(env) -> dict[str, np.ndarray]:
    c = env.c
    return {f: to_numpy(getattr(c, f)).copy() for f in spec.COUNTER_FIELDS}


def observable(env: BatchedEnv) -> dict[str, np.ndarray]:
    """Everything a player or a metric can see of the batched env now."""
    seen = {f"c.{k}": v for k, v in counters(env).items()}
    seen.update(jain=to_numpy(env.jain()), t=np.array(env.t))
    if env.done:
        seen.update(latency_hist=to_numpy(env.latency_hist))
    for name, obs in (("lead", env.leader_observation()), ("follow", env.follower_observation())):
        seen.update({f"{name}.{k}": to_numpy(v) for k, v in vars(obs).items()})
    return seen


def assert_equal(got, want, what: str) -> None:
    """Exact equality of arrays (np.testing's version costs most of a step)."""
    if not np.array_equal(got, want):
        raise AssertionError(f"{what}: {got!r} != {want!r}")


def assert_close(got, want, what: str, rtol: float = RTOL, atol: float = 0.0) -> None:
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        raise AssertionError(f"{what}: {got!r} != {want!r}")


def assert_obs_match(batched_obs, ref_obs: list) -> None:
    for key, value in vars(batched_obs).items():
        for e, r in enumerate(ref_obs):
            got = value if key == "t" else to_numpy(value)[e]
            assert_equal(got, to_numpy(getattr(r, key)), f"episode {e}: obs.{key}")


class ChurnMachine(RuleBasedStateMachine):
    """Base machine; subclasses fix the churn kind, the placement and the environment class."""

    KIND, PLACEMENT = "markov", "lowest"
    ENV = BatchedEnv  # the environment under test (the fault tests swap in broken doubles)
    COMPARE_REFERENCE = True  # False: only the ledger and the invariants judge the environment

    @initialize(data=st.data())
    def start(self, data):
        self.cfg = data.draw(scenarios(self.KIND, self.PLACEMENT), label="cfg")
        self.S, self.K = self.cfg.n_slots, self.cfg.n_rbg
        self.env = self.ENV(self.cfg, E)
        self.twin = copy.deepcopy(self.env)  # driven with zeros for inactive slots
        self.refs = [ReferenceEnv(self.cfg) for _ in range(E)]
        self._new_episode()

    def _new_episode(self) -> None:
        self.ledgers = [Ledger(self.cfg) for _ in range(E)]
        self.want_join = np.zeros(E, dtype=bool)
        self.want_leave = np.zeros((E, self.S), dtype=bool)

    @precondition(lambda self: self.env.done)
    @rule(seed=st.none() | st.integers(0, 2**16))
    def reset(self, seed):
        for env in (self.env, self.twin, *self.refs):
            env.reset(seed)
        assert self.env.t == 0 and not self.env.active.any()
        assert all(int(v.sum()) == 0 for v in counters(self.env).values())
        self._new_episode()
        self._check_state()

    def _draws(self, rng: np.random.Generator, flood: bool) -> Draws:
        """One TTI's uniforms: random, with forced joins and departures, and arrivals everywhere if ``flood``."""
        S, K, place = self.S, self.K, self.cfg.churn.random_placement
        block = rng.random((E, block_size(S, K, place)))
        block[:, 1] = np.where(self.want_join, 0.0, block[:, 1])
        block[:, 2 : 2 + S] = np.where(self.want_leave, 0.0, block[:, 2 : 2 + S])
        if flood:
            block[:, 2 + S : 2 + 2 * S] = 0.0
        return Draws.split(torch.from_numpy(block), S, K, place)

    def _actions(self, style: str, active: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Valid (ucm, access) for active UEs in the given style; garbage, often in range, for inactive slots."""
        K, shape = self.K, (E, self.S)
        ucm = rng.integers(0, self.cfg.ucm_vocab, size=shape)
        access = np.zeros(shape, dtype=np.int64)
        for e, ledger in enumerate(self.ledgers):
            backlog = [s for s in range(self.S) if ledger.fifo[s]]
            got = [s for s in backlog if ledger.fifo[s][0] in ledger.received]
            rng.shuffle(backlog)
            if style == "random":
                access[e, backlog] = rng.integers(0, K + 2, size=len(backlog))
            elif style == "one_rbg":
                access[e, backlog] = 1
            elif style == "delete":
                access[e, backlog] = rng.integers(0, K + 2, size=len(backlog))
                access[e, got] = K + 1
            else:  # spread (distinct RBGs), retransmit (received dPDUs first, on distinct RBGs)
                first = got + [s for s in backlog if s not in got] if style == "retransmit" else backlog
                for k, s in enumerate(first[:K]):
                    access[e, s] = k + 1
        junk = lambda: np.where(rng.random(shape) < 0.5, rng.integers(0, K + 2, size=shape),  # noqa: E731
                                rng.integers(-50, 50, size=shape))
        return np.where(active, ucm, junk()), np.where(active, access, junk())

    @precondition(lambda self: not self.env.done)
    @rule(seed=st.integers(0, 2**32 - 1), style=st.sampled_from(STYLES), flood=st.booleans())
    def step(self, seed, style, flood):
        env, twin, refs, rng = self.env, self.twin, self.refs, np.random.default_rng(seed)
        t, draws = env.t, self._draws(rng, flood)
        for e, ledger in enumerate(self.ledgers):
            ledger.apply_churn(*ledger.churn(t, draws.episode(e)))
            ledger.traffic(draws.episode(e).arrival)

        lead = env.begin_tti(draws)
        twin.begin_tti(draws)
        if self.COMPARE_REFERENCE:
            assert_obs_match(lead, [r.begin_tti(draws.episode(e)) for e, r in enumerate(refs)])
        active = to_numpy(lead.active).copy()
        for e, ledger in enumerate(self.ledgers):
            assert active[e].tolist() == ledger.active, f"episode {e}: active set (model §3)"
            assert to_numpy(lead.ue_id)[e].tolist() == ledger.ue_id, f"episode {e}: UE identities (model §3)"
            assert counters(env)["lost_on_departure"][e] == ledger.tally["lost_on_departure"], \
                f"episode {e}: a leaving UE's dPDUs are lost_on_departure"

        dcm = np.where(active, rng.integers(0, self.cfg.dcm_vocab, size=active.shape),
                       rng.integers(-50, 50, size=active.shape))
        follow = env.deliver(torch.from_numpy(dcm))
        twin.deliver(torch.from_numpy(np.where(active, dcm, 0)))
        if self.COMPARE_REFERENCE:
            assert_obs_match(follow, [r.deliver(dcm[e]) for e, r in enumerate(refs)])
        buffer = to_numpy(follow.buffer)
        for e, ledger in enumerate(self.ledgers):
            assert buffer[e].tolist() == [len(q) if q is not None else 0 for q in ledger.fifo], f"episode {e}: buffers"

        ucm, access = self._actions(style, active, rng)
        rewards = env.end_tti(torch.from_numpy(ucm), torch.from_numpy(access))
        twin_rewards = twin.end_tti(torch.from_numpy(ucm * active), torch.from_numpy(access * active))
        last = t == self.cfg.horizon - 1
        want = [ledger.tti(ucm[e], access[e], dcm[e], draws.episode(e).decode, last)
                for e, ledger in enumerate(self.ledgers)]
        self._check_tti(rewards, want, active, access)
        assert_same(observable(env), observable(twin), "inactive slots' actions had an effect")
        for field in ("team", "leader", "follower", "team_ue"):
            assert_equal(to_numpy(getattr(rewards, field)), to_numpy(getattr(twin_rewards, field)),
                         f"only active UEs act: {field} reward")
        if self.COMPARE_REFERENCE:
            self._compare_reference(rewards, [r.end_tti(ucm[e], access[e]) for e, r in enumerate(refs)])
        self._check_state()
        for name in sorted(set().union(*(ledger.events for ledger in self.ledgers))):
            event(name)
        self.want_join[:] = False
        self.want_leave[:] = False

    def _check_tti(self, rewards, want: list[dict], active: np.ndarray, access: np.ndarray) -> None:
        """The env's channel, counters and rewards against the ledger (model §2.5–§2.8, §4, §7)."""
        env, c = self.env, counters(self.env)
        outcome, decoded_id, ue_id = to_numpy(env.outcome), to_numpy(env.decoded_id), to_numpy(env.ue_id)
        for e, (ledger, w) in enumerate(zip(self.ledgers, want, strict=True)):
            for k in np.flatnonzero(outcome[e] == spec.OUT_DECODED):  # one dPDU per RBG, from its single sender
                senders = np.flatnonzero(active[e] & (access[e] == k + 1))
                assert len(senders) == 1 and ue_id[e, senders[0]] == decoded_id[e, k], f"episode {e}: RBG {k + 1}"
            assert outcome[e].tolist() == w["outcome"] and decoded_id[e].tolist() == w["decoded_id"], \
                f"episode {e}: channel outcome (model §2.5)"
            for f in LEDGER_COUNTERS:
                assert c[f][e] == ledger.tally[f], f"episode {e}: counter {f}={c[f][e]}, ledger {ledger.tally[f]}"
            assert float(to_numpy(rewards.team)[e]) == w["team"], f"episode {e}: team reward (no reward for duplicates)"
            assert_close(to_numpy(rewards.follower)[e], w["follower"], f"episode {e}: follower rewards", 1e-9, 1e-12)
            assert_close(to_numpy(rewards.team_ue)[e], w["team_ue"], f"episode {e}: team reward shares", 1e-9, 1e-12)
            assert_close(float(to_numpy(rewards.leader)[e]), w["leader"],
                         f"episode {e}: leader reward (Jain term at the last TTI)", RTOL, 1e-12)
            ledger.check_conservation()

    def _compare_reference(self, rewards, ref_rewards: list) -> None:
        c = counters(self.env)
        for e, (r, rr) in enumerate(zip(self.refs, ref_rewards, strict=True)):
            for f in INT_COUNTERS:
                assert getattr(r.c, f) == c[f][e], f"episode {e}: {f} differs from the reference"
            assert float(to_numpy(rewards.team)[e]) == rr.team
            assert_close(float(to_numpy(rewards.leader)[e]), rr.leader, f"episode {e}: leader reward vs reference")
            assert_close(to_numpy(rewards.follower)[e], rr.follower, f"episode {e}: follower rewards vs reference")
            if self.env.done:
                assert float(to_numpy(self.env.jain())[e]) == pytest.approx(r.jain(), rel=RTOL)
                hist = np.bincount(np.asarray(r.latencies, dtype=np.int64), minlength=self.cfg.horizon)
                assert_equal(to_numpy(self.env.latency_hist)[e], hist, f"episode {e}: latency histogram")

    def _check_state(self) -> None:
        """Invariants after every TTI: packet conservation, 0 <= buffer <= B, identities only in active slots."""
        env, c = self.env, counters(self.env)
        assert_equal(c["generated"], c["dropped_overflow"] + c["in_buffer"] + c["deleted"] + c["lost_on_departure"],
                     "packet conservation")
        assert np.all(c["delivered"] <= c["generated"]) and np.all(c["deleted_unreceived"] <= c["deleted"])
        count, active, ue_id = to_numpy(env.count), to_numpy(env.active), to_numpy(env.ue_id)
        assert np.all((0 <= count) & (count <= self.cfg.buffer)), "0 <= buffer <= B"
        assert np.all(count[~active] == 0), "an empty slot holds no dPDU"
        assert_equal(ue_id == spec.NO_UE, ~active, "a slot has an identity iff it is active")


class MarkovMachine(ChurnMachine):
    """Markov churn: rules force a join or a departure at the next TTI through the draws."""

    @rule(e=st.integers(0, E - 1))
    def join(self, e):
        self.want_join[e] = True

    @rule(e=st.integers(0, E - 1), pick=st.integers(0, 7))
    def leave(self, e, pick):
        """Force a departure next TTI, of a UE with buffered dPDUs when there is one."""
        fifo = self.ledgers[e].fifo
        slots = [s for s in range(self.S) if fifo[s]] or [s for s in range(self.S) if fifo[s] is not None]
        if slots:
            self.want_leave[e, slots[pick % len(slots)]] = True


def assert_same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert_equal(a[k], b[k], f"{what}: {k}")


def machine_settings(examples: int, **kw) -> settings:
    return settings(max_examples=examples, stateful_step_count=STEPS, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], **kw)


def _machine(kind: str, placement: str, **attrs) -> type[ChurnMachine]:
    name = f"{kind.title().replace('_', '')}{placement.title()}Machine"
    base = MarkovMachine if kind == "markov" else ChurnMachine
    return type(name, (base,), {"KIND": kind, "PLACEMENT": placement, **attrs})


MACHINES = {f"{kind}-{placement}": _machine(kind, placement) for kind, placement in SETTINGS}
PROFILE = "ci" if settings.get_current_profile_name() == "ci" else "dev"
for _m in MACHINES.values():
    _m.TestCase.settings = machine_settings(EXAMPLES[PROFILE])
# one unittest-style case per machine, so that --hypothesis-show-statistics reports each
TestFixedLowest, TestFixedRandom = MACHINES["fixed-lowest"].TestCase, MACHINES["fixed-random"].TestCase
TestPerEpisodeLowest, TestPerEpisodeRandom = MACHINES["per_episode-lowest"].TestCase, MACHINES["per_episode-random"].TestCase
TestMarkovLowest, TestMarkovRandom = MACHINES["markov-lowest"].TestCase, MACHINES["markov-random"].TestCase
TestTrace = MACHINES["trace-lowest"].TestCase


# -- rare events happen -------------------------------------------------------------------------

COVERAGE_EXAMPLES = {"ci": 20, "dev": 8}  # per machine, derandomized
MIN_FRACTION = 0.15  # of the runs of the machines where the event can happen
CAN_HAPPEN = {"join into a freed slot": ("markov", "trace"), "departure with buffered dPDUs": ("markov", "trace")}


def test_events_are_covered():
    """Each rare event of model §2–§3 shows in the Hypothesis statistics of a minimum fraction of runs."""
    seen: dict[str, list[set[str]]] = {name: [] for name in MACHINES}
    running = [""]

    def collect(obs):
        if obs.type == "test_case" and obs.status == "passed":
            seen[running[0]].append(set(obs.features))

    with with_observability_callback(collect):
        for name, machine in MACHINES.items():
            running[0] = name
            run_state_machine_as_test(machine, settings=machine_settings(COVERAGE_EXAMPLES[PROFILE], derandomize=True,
                                                                         database=None))
    fractions = {}
    for name in EVENTS:
        runs = [f for m, feats in seen.items() if m.split("-")[0] in CAN_HAPPEN.get(name, m.split("-")[0])
                for f in feats]
        fractions[name] = sum(name in f for f in runs) / max(1, len(runs))
        assert runs, f"no run where {name!r} can happen"
    low = {k: v for k, v in fractions.items() if v < MIN_FRACTION}
    assert not low, f"events in too few runs (minimum {MIN_FRACTION}): {fractions}"


# -- seeded faults are caught ----------------------------------------------------------------------


class DoubleCount(BatchedEnv):
    """Fault: the env forgets that the BS has a dPDU, so a repeated transmission is delivered again."""

    def end_tti(self, ucm, access):
        self._hol_rx = np.zeros_like(self._hol_rx)
        return super().end_tti(ucm, access)


class SilentDeparture(BatchedEnv):
    """Fault: a leaving UE's buffered dPDUs vanish without being counted lost_on_departure."""

    def _leave(self, leaving):
        discarded = super()._leave(leaving)
        self._churn_c["lost_on_departure"] -= discarded.sum(axis=1)
        return discarded


class InactiveActs(BatchedEnv):
    """Fault: the actions of empty slots are not masked out (nor checked), so an inactive slot acts."""

    def __init__(self, cfg, n_envs, seed=None):
        super().__init__(cfg, n_envs, seed, check_actions=False)

    def _mask(self, x):
        return np.clip(x, 0, self.K + 1)


FAULTS = {"dPDU counted twice": DoubleCount, "departure loses buffered dPDUs silently": SilentDeparture,
          "inactive slot acts": InactiveActs}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_seeded_fault_is_caught(fault):
    """The machine, judging by the ledger and its invariants alone (no reference env), rejects each broken env."""
    broken = _machine("markov", "random", ENV=FAULTS[fault], COMPARE_REFERENCE=False)
    with pytest.raises(AssertionError) as caught:
        run_state_machine_as_test(broken, settings=machine_settings(200, database=None, derandomize=True,
                                                                    phases=[Phase.generate],
                                                                    report_multiple_bugs=False))
    print(f"{fault}: {str(caught.value).splitlines()[0]}")


def test_machine_forces_churn():
    """Sanity of the draw layout the machine relies on: forced draws make a UE leave and another join."""
    cfg = EnvConfig(n_rbg=2, buffer=3, horizon=6, p_arrival=1.0,
                    churn=ChurnConfig(kind="markov", n_min=1, n_max=4, p_join=0.5, p_leave=0.5))
    S, K = cfg.n_slots, cfg.n_rbg
    env = BatchedEnv(cfg, 1)
    block = torch.full((1, block_size(S, K)), 0.999, dtype=torch.float64)
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
