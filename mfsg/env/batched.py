"""The batched uplink MAC: E independent episodes as ``[E, S]`` tensors (SPEC §2–§3).

Same semantics and the same three-call TTI as :mod:`mfsg.env.reference` (the differential
test drives both with identical draws and actions). Buffers are ring buffers
``[E, S, B]`` of arrival times and "received by the BS" flags; the head-of-line dPDU is at
``head``. All episodes run in lock-step over the horizon T.
"""

from __future__ import annotations

import torch

from mfsg.config import EnvConfig
from mfsg.env import spec
from mfsg.env.churn import make_churn
from mfsg.env.draws import Draws, block_size
from mfsg.env.reference import InvalidActionError

_INT = torch.long


class BatchedEnv:
    """SPEC §2 for ``n_envs`` episodes at once, on CPU tensors."""

    def __init__(self, cfg: EnvConfig, n_envs: int, seed: int | None = None, check_actions: bool = True):
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs={n_envs!r} is invalid: allowed an integer >= 1")
        self.cfg, self.E = cfg, n_envs
        self.S, self.K, self.B, self.T = cfg.n_slots, cfg.n_rbg, cfg.buffer, cfg.horizon
        self.check_actions = check_actions
        self.churn = make_churn(cfg.churn, self.S)
        self.p_arrival = torch.tensor(cfg.arrival_probs(), dtype=torch.float64)
        self.gen = torch.Generator().manual_seed(0 if seed is None else seed)
        self._ar_e = torch.arange(self.E)
        self._ar_b = torch.arange(self.B)
        self._ar_k = torch.arange(1, self.K + 1)
        self.reset(seed)

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.gen.manual_seed(seed)
        E, S, B, K = self.E, self.S, self.B, self.K
        z = lambda *shape, dtype=_INT: torch.zeros(*shape, dtype=dtype)  # noqa: E731
        self.t = 0
        self.active = z(E, S, dtype=torch.bool)
        self.ue_id = torch.full((E, S), spec.NO_UE, dtype=_INT)
        self.next_id = z(E)
        self.arrival = z(E, S, B)  # ring buffer: arrival TTI of each dPDU
        self.received = z(E, S, B, dtype=torch.bool)  # ring buffer: BS has decoded it
        self.head = z(E, S)
        self.count = z(E, S)
        self.prev_ucm, self.prev_access, self.prev_dcm = z(E, S), z(E, S), z(E, S)
        self.ue_generated, self.ue_delivered = z(E, S), z(E, S)
        self.outcome = z(E, K)
        self.decoded_id = torch.full((E, K), spec.NO_UE, dtype=_INT)
        self.dcm = z(E, S)
        self.latency_hist = z(E, self.T)  # [E, T]: dPDUs first received after l TTIs
        c = {f: z(E) for f in spec.COUNTER_FIELDS}
        c.update(fair_sum=z(E, dtype=torch.float64), fair_sumsq=z(E, dtype=torch.float64))
        self.c = spec.Counters(**c)
        self.phase = "begin"

    @property
    def done(self) -> bool:
        return self.t >= self.T

    def draw(self) -> Draws:
        u = torch.rand(self.E, block_size(self.S, self.K), generator=self.gen, dtype=torch.float64)
        return Draws.split(u, self.S, self.K)

    # ------------------------------------------------------------ §2.1 churn
    def _join(self, joining: torch.Tensor) -> None:
        order = joining.long().cumsum(dim=1) - 1  # several joiners only at reset
        self.ue_id = torch.where(joining, self.next_id[:, None] + order, self.ue_id)
        self.next_id += joining.sum(dim=1)
        self.c.joins += joining.sum(dim=1)
        for x in (self.count, self.head, self.prev_ucm, self.prev_access, self.prev_dcm, self.ue_generated, self.ue_delivered):
            x.masked_fill_(joining, 0)
        self.active |= joining

    def _fold_fairness(self, mask: torch.Tensor) -> None:
        x = spec.delivery_ratio(self.ue_delivered.double(), self.ue_generated)
        m = mask.double()
        self.c.fair_n += mask.sum(dim=1)
        self.c.fair_sum += (x * m).sum(dim=1)
        self.c.fair_sumsq += (x * x * m).sum(dim=1)

    def _leave(self, leaving: torch.Tensor) -> None:
        self.c.lost_on_departure += (self.count * leaving).sum(dim=1)
        self._fold_fairness(leaving)
        self.active &= ~leaving
        self.count.masked_fill_(leaving, 0)
        self.ue_id.masked_fill_(leaving, spec.NO_UE)

    def _churn(self, d: Draws) -> None:
        if self.t == 0:
            self._join(self.churn.initial_batched(d.n_init))
            return
        leaving, joining = self.churn.step_batched(self.t, self.active, d.join, d.leave)
        self._leave(leaving)
        self._join(joining)

    # ------------------------------------------------------------ §2.2 traffic
    def _traffic(self, d: Draws) -> None:
        arrive = self.active & (d.arrival < self.p_arrival)
        self.ue_generated += arrive
        self.c.generated += arrive.sum(dim=1)
        full = self.count >= self.B
        self.c.dropped_overflow += (arrive & full).sum(dim=1)
        store = arrive & ~full
        tail = (self.head + self.count) % self.B
        slot = torch.nn.functional.one_hot(tail, self.B).bool() & store[..., None]
        self.arrival.masked_fill_(slot, self.t)
        self.received.masked_fill_(slot, False)
        self.count += store

    def begin_tti(self, draws: Draws | None = None) -> spec.LeaderObs:
        """§2.1–§2.2 for every episode, then o_b(t) as ``[E, ...]`` tensors."""
        assert self.phase == "begin" and not self.done, "begin_tti called out of order"
        self.draws = draws if draws is not None else self.draw()
        self._churn(self.draws)
        self._traffic(self.draws)
        self.phase = "deliver"
        return self.leader_observation()

    def leader_observation(self) -> spec.LeaderObs:
        a = self.active
        return spec.LeaderObs(
            t=self.t, active=a.clone(), ue_id=self.ue_id.clone(), outcome=self.outcome.clone(),
            decoded_id=self.decoded_id.clone(), prev_ucm=self.prev_ucm * a, prev_dcm=self.prev_dcm * a,
        )

    # ------------------------------------------------------------ §2.3 leader moves
    def deliver(self, dcm: torch.Tensor) -> spec.FollowerObs:
        assert self.phase == "deliver", "deliver called out of order"
        dcm = torch.as_tensor(dcm, dtype=_INT) * self.active
        if self.check_actions:
            bad = (dcm < 0) | (dcm >= self.cfg.dcm_vocab)
            if bool(bad.any()):
                e, s = (int(i) for i in bad.nonzero()[0])
                raise InvalidActionError(f"dcm[{e},{s}]={int(dcm[e, s])} is invalid: allowed 0..{self.cfg.dcm_vocab - 1}")
        self.dcm = dcm
        self.phase = "end"
        return self.follower_observation()

    def follower_observation(self) -> spec.FollowerObs:
        a = self.active
        return spec.FollowerObs(
            t=self.t, active=a.clone(), buffer=self.count.clone(), prev_ucm=self.prev_ucm * a,
            prev_access=self.prev_access * a, dcm=self.dcm.clone(),
        )

    # ------------------------------------------------------------ §2.4–§2.8
    def _check(self, ucm: torch.Tensor, access: torch.Tensor) -> None:
        U, K = self.cfg.ucm_vocab, self.K
        rules = (
            ((ucm < 0) | (ucm >= U), "ucm", f"allowed 0..{U - 1}"),
            ((access < 0) | (access > K + 1), "access", f"allowed 0 (IDLE), 1..{K} (TX), {K + 1} (DELETE)"),
            ((access != spec.IDLE) & (self.count == 0), "access", "with an empty buffer: allowed 0 (IDLE)"),
        )
        for bad, name, allowed in rules:
            bad = bad & self.active
            if bool(bad.any()):
                e, s = (int(i) for i in bad.nonzero()[0])
                value = int((ucm if name == "ucm" else access)[e, s])
                raise InvalidActionError(f"{name}[{e},{s}]={value} is invalid: {allowed}")

    def end_tti(self, ucm: torch.Tensor, access: torch.Tensor) -> spec.Rewards:
        assert self.phase == "end", "end_tti called out of order"
        act = self.active
        ucm = torch.as_tensor(ucm, dtype=_INT) * act  # §2.4 only active UEs act
        access = torch.as_tensor(access, dtype=_INT) * act
        if self.check_actions:
            self._check(ucm, access)
        K, u = self.K, self.cfg.utility
        # §2.5 channel: senders[e, s, k] = slot s transmits on RBG k
        senders = access[..., None] == self._ar_k
        n_send = senders.sum(dim=1)  # [E, K]
        erased = self.draws.decode < self.cfg.tbler
        single = n_send == 1
        decoded = single & ~erased
        self.c.idle += (n_send == 0).sum(dim=1)
        self.c.collisions += (n_send > 1).sum(dim=1)
        self.c.erasures += (single & erased).sum(dim=1)
        self.outcome = torch.where(n_send == 0, spec.OUT_IDLE, torch.where(decoded, spec.OUT_DECODED, spec.OUT_UNDECODABLE))
        dec_slot = (senders & decoded[:, None, :]).any(dim=2)  # [E, S] decoded this TTI
        winner = senders.long().argmax(dim=1)  # [E, K] the single sender where decoded
        self.decoded_id = torch.where(decoded, self.ue_id.gather(1, winner), spec.NO_UE)
        # §2.6 reception: new or duplicate
        hol = torch.nn.functional.one_hot(self.head, self.B).bool()  # [E, S, B]
        hol_received = (self.received & hol).any(dim=2)
        new = dec_slot & ~hol_received
        self.c.duplicates += (dec_slot & hol_received).sum(dim=1)
        self.received |= hol & new[..., None]
        self.ue_delivered += new
        self.c.delivered += new.sum(dim=1)
        hol_arrival = (self.arrival * hol).sum(dim=2)
        lat = (self.t - hol_arrival).clamp(0, self.T - 1)
        self.latency_hist.scatter_add_(1, lat, new.long())
        # §2.7 deletion
        delete = access == K + 1
        del_unrec = delete & ~hol_received
        self.head = torch.where(delete, (self.head + 1) % self.B, self.head)
        self.count -= delete.long()
        self.c.deleted += delete.sum(dim=1)
        self.c.deleted_unreceived += del_unrec.sum(dim=1)
        tx = (access >= 1) & (access <= K)
        self.c.tx += tx.sum(dim=1)
        self.c.ue_ttis += act.sum(dim=1)
        self.c.ucm_nonzero += (ucm != 0).sum(dim=1)
        self.c.dcm_nonzero += (self.dcm != 0).sum(dim=1)
        self.prev_ucm, self.prev_access, self.prev_dcm = ucm, access, self.dcm
        self.c.in_buffer = self.count.sum(dim=1)
        rewards = self._rewards(new, del_unrec, tx)  # §2.8
        self.t += 1
        self.phase = "begin"
        return rewards

    def _rewards(self, new, del_unrec, tx) -> spec.Rewards:
        u = self.cfg.utility
        team = spec.team_reward(u, new.sum(dim=1).double(), del_unrec.sum(dim=1).double())
        follower = spec.follower_reward(u, new.double(), del_unrec.double(), self.count.double(), tx.double(), self.B)
        follower = follower * self.active
        leader = team.clone()
        if self.t == self.T - 1:
            self._fold_fairness(self.active)
            leader += u.beta_fair * self.jain()
        return spec.Rewards(team=team, leader=leader, follower=follower)

    def jain(self) -> torch.Tensor:
        """[E] Jain's index over the UEs folded so far (all UEs once the episode is over)."""
        return spec.jain_from_sums(self.c.fair_n.double(), self.c.fair_sum, self.c.fair_sumsq)
