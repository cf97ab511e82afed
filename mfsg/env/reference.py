"""The reference uplink MAC: one episode, one UE at a time, in the order of model §2.

It is the oracle the batched environment is tested against, so it favours being read
next to the spec over speed. One TTI is three calls, matching model §2's phases::

    env.reset(seed)
    while not env.done:
        obs_b = env.begin_tti()          # §2.1 churn, §2.2 traffic; returns o_b(t)
        obs_u = env.deliver(dcm)         # §2.3 the leader's DCMs; returns o_n(t) for all n
        rewards = env.end_tti(ucm, access)  # §2.4–§2.8
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from mfsg.config import EnvConfig
from mfsg.env import spec
from mfsg.env.churn import make_churn
from mfsg.env.draws import Draws, block_size


class InvalidActionError(ValueError):
    """An active UE's action is not valid in its state (model §2.4)."""


@dataclass
class DPDU:
    arrival: int  # TTI of arrival
    received: bool = False  # has the BS decoded it (the BS's knowledge, model §2.6)


@dataclass
class UE:
    ue_id: int
    buffer: deque = field(default_factory=deque)
    prev_ucm: int = 0
    prev_access: int = spec.IDLE
    prev_dcm: int = 0
    generated: int = 0
    delivered: int = 0


class ReferenceEnv:
    """Plain-Python model §2 environment for one episode at a time."""

    def __init__(self, cfg: EnvConfig, seed: int | None = None):
        self.cfg = cfg
        self.S, self.K, self.B, self.T = cfg.n_slots, cfg.n_rbg, cfg.buffer, cfg.horizon
        self.p_arrival = cfg.arrival_probs()
        self.churn = make_churn(cfg.churn, self.S)
        self.rng = np.random.default_rng(seed)
        self.reset(seed)

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.ues: list[UE | None] = [None] * self.S
        self.next_id = 0
        self.outcome = [spec.OUT_IDLE] * self.K
        self.decoded_id = [spec.NO_UE] * self.K
        self.c = spec.Counters()
        self.latencies: list[int] = []
        self.dcm = [0] * self.S
        self.phase = "begin"

    @property
    def done(self) -> bool:
        return self.t >= self.T

    def draw(self) -> Draws:
        place = self.cfg.churn.random_placement
        return Draws.split(self.rng.random(block_size(self.S, self.K, place)), self.S, self.K, place)

    # ------------------------------------------------------------ §2.1 churn
    def _join(self, s: int) -> None:
        self.ues[s] = UE(ue_id=self.next_id)
        self.next_id += 1
        self.c.joins += 1

    def _leave(self, s: int) -> None:
        ue = self.ues[s]
        self.c.lost_on_departure += len(ue.buffer)
        self._fold_fairness(ue)
        self.ues[s] = None

    def _fold_fairness(self, ue: UE) -> None:
        x = spec.delivery_ratio(ue.delivered, ue.generated)
        self.c.fair_n += 1
        self.c.fair_sum += x
        self.c.fair_sumsq += x * x

    def _churn(self, d: Draws) -> None:
        if self.t == 0:
            for s, on in enumerate(self.churn.initial_plain(float(d.n_init), d.place)):
                if on:
                    self._join(s)
            return
        active = [ue is not None for ue in self.ues]
        leaving, joining = self.churn.step_plain(self.t, active, float(d.join), d.leave, d.place)
        for s in range(self.S):  # departures, then joins
            if leaving[s]:
                self._leave(s)
        for s in range(self.S):
            if joining[s]:
                self._join(s)

    # ------------------------------------------------------------ §2.2 traffic
    def _traffic(self, d: Draws) -> None:
        for s, ue in enumerate(self.ues):
            if ue is None or not d.arrival[s] < self.p_arrival[s]:
                continue
            ue.generated += 1
            self.c.generated += 1
            if len(ue.buffer) >= self.B:
                self.c.dropped_overflow += 1
            else:
                ue.buffer.append(DPDU(arrival=self.t))

    def begin_tti(self, draws: Draws | None = None) -> spec.LeaderObs:
        """§2.1–§2.2, then the leader's observation o_b(t)."""
        assert self.phase == "begin" and not self.done, "begin_tti called out of order"
        self.draws = draws if draws is not None else self.draw()
        self._churn(self.draws)
        self._traffic(self.draws)
        self.phase = "deliver"
        return self.leader_observation()

    def leader_observation(self) -> spec.LeaderObs:
        ues = self.ues
        return spec.LeaderObs(
            t=self.t,
            active=np.array([u is not None for u in ues]),
            ue_id=np.array([u.ue_id if u else spec.NO_UE for u in ues]),
            outcome=np.array(self.outcome),
            decoded_id=np.array(self.decoded_id),
            prev_ucm=np.array([u.prev_ucm if u else 0 for u in ues]),
            prev_dcm=np.array([u.prev_dcm if u else 0 for u in ues]),
        )

    # ------------------------------------------------------------ §2.3 leader moves
    def deliver(self, dcm) -> spec.FollowerObs:
        """The BS sends d_n(t) to every active UE; returns o_n(t) for every slot."""
        assert self.phase == "deliver", "deliver called out of order"
        D = self.cfg.dcm_vocab
        self.dcm = [int(dcm[s]) if self.ues[s] else 0 for s in range(self.S)]
        for s, d in enumerate(self.dcm):
            if not 0 <= d < D:
                raise InvalidActionError(f"dcm[{s}]={d} is invalid: allowed 0..{D - 1}")
        self.phase = "end"
        return self.follower_observation()

    def follower_observation(self) -> spec.FollowerObs:
        ues = self.ues
        return spec.FollowerObs(
            t=self.t,
            active=np.array([u is not None for u in ues]),
            buffer=np.array([len(u.buffer) if u else 0 for u in ues]),
            prev_ucm=np.array([u.prev_ucm if u else 0 for u in ues]),
            prev_access=np.array([u.prev_access if u else spec.IDLE for u in ues]),
            dcm=np.array(self.dcm),
        )

    # ------------------------------------------------------------ §2.4–§2.8
    def _check(self, s: int, ue: UE, ucm: int, access: int) -> None:
        U, K = self.cfg.ucm_vocab, self.K
        if not 0 <= ucm < U:
            raise InvalidActionError(f"ucm[{s}]={ucm} is invalid: allowed 0..{U - 1}")
        if not 0 <= access <= K + 1:
            raise InvalidActionError(f"access[{s}]={access} is invalid: allowed 0 (IDLE), 1..{K} (TX), {K + 1} (DELETE)")
        if access != spec.IDLE and not ue.buffer:
            raise InvalidActionError(f"access[{s}]={access} is invalid with an empty buffer: allowed 0 (IDLE)")

    def end_tti(self, ucm, access) -> spec.Rewards:
        """Followers' UCMs and access actions; channel, reception, deletion, rewards."""
        assert self.phase == "end", "end_tti called out of order"
        K = self.K
        acts = {}
        for s, ue in enumerate(self.ues):  # §2.4 only active UEs act
            if ue is not None:
                acts[s] = (int(ucm[s]), int(access[s]))
                self._check(s, ue, *acts[s])
        senders = {k: [s for s, (_, a) in acts.items() if a == k] for k in range(1, K + 1)}
        new = [0] * self.S
        del_unrec = [0] * self.S
        tx = [0] * self.S
        self.outcome, self.decoded_id = [spec.OUT_IDLE] * K, [spec.NO_UE] * K
        for k in range(1, K + 1):  # §2.5 channel, §2.6 reception
            group = senders[k]
            for s in group:
                tx[s] = 1
            if not group:
                self.c.idle += 1
            elif len(group) > 1:
                self.c.collisions += 1
                self.outcome[k - 1] = spec.OUT_UNDECODABLE
            elif self.draws.decode[k - 1] < self.cfg.tbler:
                self.c.erasures += 1
                self.outcome[k - 1] = spec.OUT_UNDECODABLE
            else:
                s = group[0]
                ue = self.ues[s]
                pdu = ue.buffer[0]
                self.outcome[k - 1], self.decoded_id[k - 1] = spec.OUT_DECODED, ue.ue_id
                if pdu.received:
                    self.c.duplicates += 1
                else:
                    pdu.received = True
                    new[s] = 1
                    ue.delivered += 1
                    self.c.delivered += 1
                    self.latencies.append(self.t - pdu.arrival)
        for s, (_, a) in acts.items():  # §2.7 deletion
            if a == K + 1:
                pdu = self.ues[s].buffer.popleft()
                self.c.deleted += 1
                if not pdu.received:
                    del_unrec[s] = 1
                    self.c.deleted_unreceived += 1
        self.c.tx += sum(tx)
        self.c.ue_ttis += len(acts)
        self.c.ucm_nonzero += sum(1 for (m, _) in acts.values() if m != 0)
        self.c.dcm_nonzero += sum(1 for d in self.dcm if d != 0)
        for s, (m, a) in acts.items():
            ue = self.ues[s]
            ue.prev_ucm, ue.prev_access, ue.prev_dcm = m, a, self.dcm[s]
        self.c.in_buffer = sum(len(ue.buffer) for ue in self.ues if ue)
        rewards = self._rewards(new, del_unrec, tx)  # §2.8
        self.t += 1
        self.phase = "begin"
        return rewards

    def _rewards(self, new, del_unrec, tx) -> spec.Rewards:
        u = self.cfg.utility
        team = spec.team_reward(u, sum(new), sum(del_unrec))
        follower = np.zeros(self.S)
        for s, ue in enumerate(self.ues):
            if ue is not None:
                follower[s] = spec.follower_reward(u, new[s], del_unrec[s], len(ue.buffer), tx[s], self.B)
        leader = team
        if self.t == self.T - 1:
            for ue in self.ues:
                if ue is not None:
                    self._fold_fairness(ue)
            leader += u.beta_fair * self.jain()
        team_ue = np.array([spec.team_reward(u, new[s], del_unrec[s]) for s in range(self.S)], dtype=float)
        return spec.Rewards(team=team, leader=leader, follower=follower, team_ue=team_ue)

    def jain(self) -> float:
        """Jain's index over the UEs folded so far (all UEs of the episode once it is over)."""
        return spec.jain_from_sums(self.c.fair_n, self.c.fair_sum, self.c.fair_sumsq)
