"""The batched uplink MAC: E independent episodes as ``[E, S]`` tensors (SPEC §2–§3).

Same semantics and the same three-call TTI as :mod:`mfsg.env.reference` (the differential
test drives both with identical draws and actions). All episodes run in lock-step over the
horizon T. Representation choices, all for speed (``mfsg bench env``); each TTI is a few
dozen small tensor operations and no reductions:

- Only the head-of-line (HOL) dPDU is ever transmitted, so "received by the BS" is one flag
  per UE (``hol_rx``): every dPDU behind the HOL has never been sent. A UE's FIFO is then
  fully described by its length ``count``.
- dPDU latencies need arrival times, which are *not* tracked per TTI: the env logs each
  TTI's stored / removed / newly received masks (tensors it computes anyway) and
  :attr:`latency_hist` replays them in a few batched operations when read. Each slot's
  dPDUs get consecutive sequence numbers over the whole episode (a leaving UE's queue is
  skipped), so the HOL at TTI t is the dPDU numbered "removed before t".
- Counters accumulate per slot or per RBG without reductions; :attr:`c` sums them on read.
- Follower rewards come from a table of :func:`mfsg.env.spec.follower_reward` over every
  (event, buffer) pair, filled once at construction (same formula, same float64 values).
- Tensors handed out in observations are never modified in place afterwards, so they are
  not copied (callers may keep them, e.g. to stack a rollout).
- Draws come from a NumPy PCG64 generator (much faster than torch's CPU generator); the
  uniforms a churn process never reads (join/leave when the active set is fixed after reset)
  are not drawn and read as 0.
"""

from __future__ import annotations

import numpy as np
import torch

from mfsg.config import EnvConfig
from mfsg.env import spec
from mfsg.env.churn import Churn, make_churn
from mfsg.env.draws import Draws, block_size
from mfsg.env.reference import InvalidActionError

_INT = torch.long  # dtype of everything handed out (observations, counters)
_ACC = torch.int32  # internal per-slot accumulators

# RBG classes accumulated per episode; the first three equal the OUT_* codes the BS sees.
_RBG_IDLE, _RBG_DECODED, _RBG_COLLISION, _RBG_ERASURE = 0, 1, 2, 3
assert (spec.OUT_IDLE, spec.OUT_DECODED, spec.OUT_UNDECODABLE) == (_RBG_IDLE, _RBG_DECODED, _RBG_COLLISION)

# A UE's event in a TTI for its reward: nothing (IDLE or DELETE of a received dPDU), TX without
# a new reception, TX with one, DELETE of an unreceived dPDU. ev = tx + new + 3·del_unrec.
_EVENTS = ((0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 0, 1))  # (tx, new, del_unrec)
_EV_DEL_UNREC = 3

# Per-slot accumulators (one [E, S] int32 tensor each), summed over slots on read.
_SLOT_ACC = ("stored", "deleted_unreceived", "ucm_nonzero", "dcm_nonzero", "ue_ttis")


class BatchedEnv:
    """SPEC §2 for ``n_envs`` episodes at once, on CPU tensors."""

    def __init__(self, cfg: EnvConfig, n_envs: int, seed: int | None = None, check_actions: bool = True):
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs={n_envs!r} is invalid: allowed an integer >= 1")
        self.cfg, self.E = cfg, n_envs
        self.S, self.K, self.B, self.T = cfg.n_slots, cfg.n_rbg, cfg.buffer, cfg.horizon
        self.check_actions = check_actions
        self.churn = make_churn(cfg.churn, self.S)
        # The base Churn rule never changes the active set after reset: skip the churn step then.
        self._static_churn = type(self.churn).step_batched is Churn.step_batched
        self.p_arrival = torch.tensor(cfg.arrival_probs(), dtype=torch.float64)
        self.rng = np.random.default_rng(seed)
        E, S, K = self.E, self.S, self.K
        self._ones_ek = torch.ones(E, K, dtype=_INT)
        self._ones_es = torch.ones(E, S, dtype=_INT)
        self._ones_s = torch.ones(S, dtype=torch.float64)
        self._code_base = torch.arange(E)[:, None] * (K + 2)  # flat index of [e, access code 0]
        self._no_draw_e, self._no_draw_es = torch.zeros(E, dtype=torch.float64), torch.zeros(E, S, dtype=torch.float64)
        self._reward_table = self._follower_reward_table()
        self._no_discard = torch.zeros(E, S, dtype=_INT)  # logged when nobody can leave; never modified
        self.reset(seed)

    def _follower_reward_table(self) -> torch.Tensor:
        """r_n for every (event, buffer) pair, flattened as ``ev * (B + 1) + buffer`` (SPEC §4)."""
        ev = torch.tensor(_EVENTS, dtype=torch.float64)[:, None, :]  # [4, 1, 3]
        buf = torch.arange(self.B + 1, dtype=torch.float64)[None, :]
        tx, new, del_unrec = ev[..., 0], ev[..., 1], ev[..., 2]
        return spec.follower_reward(self.cfg.utility, new, del_unrec, buf, tx, self.B).reshape(-1)

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        E, S, K = self.E, self.S, self.K
        z = lambda *shape, dtype=_INT: torch.zeros(*shape, dtype=dtype)  # noqa: E731
        self.t = 0
        self.active = z(E, S, dtype=torch.bool)
        self._act_int = z(E, S)  # active as integers, for masking actions
        self.ue_id = torch.full((E, S), spec.NO_UE, dtype=_INT)
        self.next_id = z(E)
        self.count = z(E, S)
        self.hol_rx = z(E, S, dtype=torch.bool)  # the BS has decoded the head-of-line dPDU
        self.prev_ucm, self.prev_access, self.prev_dcm = z(E, S), z(E, S), z(E, S)
        self.ue_generated, self.ue_delivered = z(E, S, dtype=_ACC), z(E, S, dtype=_ACC)
        self.outcome = z(E, K)
        self.decoded_id = torch.full((E, K), spec.NO_UE, dtype=_INT)
        self.dcm = z(E, S)
        self._slot = {f: z(E, S, dtype=_ACC) for f in _SLOT_ACC}
        self._rbg = z(E, 4)  # [E, class] RBG-TTIs per _RBG_* class
        self._access = z(E, K + 2, dtype=_ACC)  # [E, access code] UE-TTIs per access action
        churn_fields = ("generated_departed", "delivered_departed", "lost_on_departure", "joins", "fair_n")
        self._churn_c = {f: z(E) for f in churn_fields}
        self.fair_sum, self.fair_sumsq = z(E, dtype=torch.float64), z(E, dtype=torch.float64)
        self._log = {"stored": [], "discarded": [], "new": [], "deleted": []}  # per TTI, for latency_hist
        self.phase = "begin"

    @property
    def done(self) -> bool:
        return self.t >= self.T

    def draw(self) -> Draws:
        """One TTI's uniforms (layout of :mod:`mfsg.env.draws`); unread churn draws are 0."""
        S, K = self.S, self.K
        if self.t == 0 or not self._static_churn:
            return Draws.split(torch.from_numpy(self.rng.random((self.E, block_size(S, K)))), S, K)
        u = torch.from_numpy(self.rng.random((self.E, S + K)))
        return Draws(n_init=self._no_draw_e, join=self._no_draw_e, leave=self._no_draw_es,
                     arrival=u[:, :S], decode=u[:, S:])

    @property
    def c(self) -> spec.Counters:
        """Episode counters ``[E]`` (SPEC §2–§3, §7), summed from the accumulators."""
        slot = {f: x.sum(dim=1, dtype=_INT) for f, x in self._slot.items()}
        ch = self._churn_c
        generated = ch["generated_departed"] + self.ue_generated.sum(dim=1, dtype=_INT)
        delivered = ch["delivered_departed"] + self.ue_delivered.sum(dim=1, dtype=_INT)
        rbg, acc = self._rbg, self._access.to(_INT)
        return spec.Counters(
            generated=generated,
            dropped_overflow=generated - slot["stored"],
            in_buffer=self.count.sum(dim=1),
            deleted=acc[:, self.K + 1],
            deleted_unreceived=slot["deleted_unreceived"],
            lost_on_departure=ch["lost_on_departure"].clone(),
            delivered=delivered,
            duplicates=rbg[:, _RBG_DECODED] - delivered,
            collisions=rbg[:, _RBG_COLLISION].clone(),
            erasures=rbg[:, _RBG_ERASURE].clone(),
            idle=rbg[:, _RBG_IDLE].clone(),
            tx=acc[:, 1 : self.K + 1].sum(dim=1),
            ucm_nonzero=slot["ucm_nonzero"],
            dcm_nonzero=slot["dcm_nonzero"],
            ue_ttis=slot["ue_ttis"],
            joins=ch["joins"].clone(),
            fair_n=ch["fair_n"].clone(),
            fair_sum=self.fair_sum.clone(),
            fair_sumsq=self.fair_sumsq.clone(),
        )

    @property
    def latency_hist(self) -> torch.Tensor:
        """``[E, T]``: dPDUs first received l TTIs after their arrival (SPEC §7), so far.

        Replays the log: the dPDU a slot stores at TTI t gets the next sequence number of that
        slot; the HOL when TTI t's receptions happen is the dPDU numbered (deleted before t) +
        (discarded by departures up to t).
        """
        E, S, T = self.E, self.S, self.T
        hist = torch.zeros(E * T, dtype=_INT)
        n = len(self._log["new"])
        if n == 0:
            return hist.view(E, T)
        stored = torch.stack(self._log["stored"][:n]).long()  # [n, E, S]
        removed = torch.stack(self._log["deleted"]).long() + torch.stack(self._log["discarded"][:n])
        deleted = torch.stack(self._log["deleted"]).long()
        new = torch.stack(self._log["new"])
        tti = torch.arange(n)[:, None, None].expand(n, E, S)
        seq = stored.cumsum(dim=0) - 1  # sequence number of the dPDU stored at t
        arrival = torch.zeros(E, S, T, dtype=_INT)
        es = torch.arange(E * S).view(1, E, S).expand(n, E, S)
        arrival.view(-1)[(es * T + seq)[stored.bool()]] = tti[stored.bool()]
        hol = removed.cumsum(dim=0) - deleted  # removed before this TTI's receptions
        lat = tti - arrival.view(-1)[es * T + hol.clamp(max=T - 1)].view(n, E, S)
        e = torch.arange(E).view(1, E, 1).expand(n, E, S)
        hist.index_put_(((e * T + lat)[new],), torch.ones((), dtype=_INT), accumulate=True)
        return hist.view(E, T)

    # ------------------------------------------------------------ §2.1 churn
    def _join(self, joining: torch.Tensor) -> None:
        order = joining.long().cumsum(dim=1) - 1  # several joiners only at reset
        self.ue_id = torch.where(joining, self.next_id[:, None] + order, self.ue_id)
        n_join = joining.sum(dim=1)
        self.next_id += n_join
        self._churn_c["joins"] += n_join
        self._churn_c["generated_departed"] += (self.ue_generated * joining).sum(dim=1)
        self._churn_c["delivered_departed"] += (self.ue_delivered * joining).sum(dim=1)
        for x in (self.hol_rx, self.ue_generated, self.ue_delivered):
            x.masked_fill_(joining, 0)
        # handed-out tensors: replaced, never modified in place
        self.count, self.prev_ucm = self.count.masked_fill(joining, 0), self.prev_ucm.masked_fill(joining, 0)
        self.prev_access = self.prev_access.masked_fill(joining, 0)
        self.prev_dcm = self.prev_dcm.masked_fill(joining, 0)
        self.active = self.active | joining
        self._act_int = self.active.long()

    def _fold_fairness(self, mask: torch.Tensor) -> None:
        x = spec.delivery_ratio(self.ue_delivered.double(), self.ue_generated)
        m = mask.double()
        self._churn_c["fair_n"] += mask.sum(dim=1)
        self.fair_sum += (x * m).sum(dim=1)
        self.fair_sumsq += (x * x * m).sum(dim=1)

    def _leave(self, leaving: torch.Tensor) -> torch.Tensor:
        """Departures; returns the number of dPDUs each slot discarded."""
        discarded = self.count * leaving
        self._churn_c["lost_on_departure"] += discarded.sum(dim=1)
        self._fold_fairness(leaving)
        self.active = self.active & ~leaving
        self._act_int = self.active.long()
        self.count = self.count.masked_fill(leaving, 0)
        self.ue_id = self.ue_id.masked_fill(leaving, spec.NO_UE)
        self.prev_ucm, self.prev_dcm = self.prev_ucm.masked_fill(leaving, 0), self.prev_dcm.masked_fill(leaving, 0)
        self.prev_access = self.prev_access.masked_fill(leaving, 0)
        return discarded

    def _churn(self, d: Draws) -> torch.Tensor | int:
        """§2.1; returns the dPDUs discarded per slot (0 when nobody can leave)."""
        if self.t == 0:
            self._join(self.churn.initial_batched(d.n_init))
            return 0
        if self._static_churn:
            return 0
        leaving, joining = self.churn.step_batched(self.t, self.active, d.join, d.leave)
        discarded = self._leave(leaving)
        self._join(joining)
        return discarded

    # ------------------------------------------------------------ §2.2 traffic
    def _traffic(self, d: Draws) -> torch.Tensor:
        """§2.2; returns which slots stored a new dPDU."""
        arrive = (d.arrival < self.p_arrival) & self.active
        self.ue_generated += arrive
        store = arrive & (self.count < self.B)
        self._slot["stored"] += store
        self.count = self.count + store
        return store

    def begin_tti(self, draws: Draws | None = None) -> spec.LeaderObs:
        """§2.1–§2.2 for every episode, then o_b(t) as ``[E, ...]`` tensors."""
        assert self.phase == "begin" and not self.done, "begin_tti called out of order"
        self.draws = draws if draws is not None else self.draw()
        discarded = self._churn(self.draws)
        self._log["discarded"].append(discarded if torch.is_tensor(discarded) else self._no_discard)
        self._log["stored"].append(self._traffic(self.draws))
        self.phase = "deliver"
        return self.leader_observation()

    def leader_observation(self) -> spec.LeaderObs:
        return spec.LeaderObs(
            t=self.t, active=self.active, ue_id=self.ue_id, outcome=self.outcome,
            decoded_id=self.decoded_id, prev_ucm=self.prev_ucm, prev_dcm=self.prev_dcm,
        )

    # ------------------------------------------------------------ §2.3 leader moves
    def deliver(self, dcm: torch.Tensor) -> spec.FollowerObs:
        assert self.phase == "deliver", "deliver called out of order"
        dcm = torch.as_tensor(dcm, dtype=_INT) * self._act_int
        if self.check_actions:
            bad = dcm.clamp(0, self.cfg.dcm_vocab - 1) != dcm
            if bool(bad.any()):
                e, s = (int(i) for i in bad.nonzero()[0])
                allowed = f"allowed 0..{self.cfg.dcm_vocab - 1}"
                raise InvalidActionError(f"dcm[{e},{s}]={int(dcm[e, s])} is invalid: {allowed}")
        self.dcm = dcm
        self.phase = "end"
        return self.follower_observation()

    def follower_observation(self) -> spec.FollowerObs:
        return spec.FollowerObs(
            t=self.t, active=self.active, buffer=self.count, prev_ucm=self.prev_ucm,
            prev_access=self.prev_access, dcm=self.dcm,
        )

    # ------------------------------------------------------------ §2.4–§2.8
    def _check(self, ucm: torch.Tensor, access: torch.Tensor) -> None:
        """Raise on the first invalid action; one fused test, the rules only when it fails."""
        U, K = self.cfg.ucm_vocab, self.K
        max_access = self.count.clamp(max=1) * (K + 1)  # IDLE only with an empty buffer
        bad = ((ucm | access) < 0) | (ucm >= U) | (access > max_access)
        if not bool(bad.any()):
            return
        rules = (
            ((ucm < 0) | (ucm >= U), "ucm", f"allowed 0..{U - 1}"),
            ((access < 0) | (access > K + 1), "access", f"allowed 0 (IDLE), 1..{K} (TX), {K + 1} (DELETE)"),
            ((access != spec.IDLE) & (self.count == 0), "access", "with an empty buffer: allowed 0 (IDLE)"),
        )
        for rule, name, allowed in rules:
            if bool(rule.any()):
                e, s = (int(i) for i in rule.nonzero()[0])
                value = int((ucm if name == "ucm" else access)[e, s])
                raise InvalidActionError(f"{name}[{e},{s}]={value} is invalid: {allowed}")

    def end_tti(self, ucm: torch.Tensor, access: torch.Tensor) -> spec.Rewards:
        assert self.phase == "end", "end_tti called out of order"
        K = self.K
        ucm = torch.as_tensor(ucm, dtype=_INT) * self._act_int  # §2.4 only active UEs act
        access = torch.as_tensor(access, dtype=_INT) * self._act_int
        if self.check_actions:
            self._check(ucm, access)
        # §2.5 channel: per access code (0 idle, 1..K RBGs, K+1 delete) the number of UEs and Σ ue_id
        per_code = torch.zeros(self.E, K + 2, dtype=_INT).scatter_add_(1, access, self._ones_es)
        self._access += per_code
        n_send = per_code[:, 1 : K + 1]
        id_sum = torch.zeros(self.E, K + 2, dtype=_INT).scatter_add_(1, access, self.ue_id)[:, 1 : K + 1]
        erased = (n_send == 1) & (self.draws.decode < self.cfg.tbler)
        # idle 0, decoded 1, collision 2 (= OUT_*), erasure 3 (seen as OUT_UNDECODABLE)
        rbg_class = n_send.clamp(max=_RBG_COLLISION) + erased * (_RBG_ERASURE - _RBG_DECODED)
        self._rbg.scatter_add_(1, rbg_class, self._ones_ek)
        self.outcome = rbg_class.clamp(max=spec.OUT_UNDECODABLE)
        decoded = rbg_class == _RBG_DECODED
        self.decoded_id = torch.where(decoded, id_sum, spec.NO_UE)  # the single sender's identity
        # which slots were decoded: look up the RBG each slot used (codes 0 and K+1 are never decoded)
        dec_code = torch.zeros(self.E, K + 2, dtype=torch.bool)
        dec_code[:, 1 : K + 1] = decoded
        dec_slot = dec_code.view(-1).index_select(0, (access + self._code_base).view(-1)).view_as(access)
        # §2.6 reception: new or duplicate (only the HOL dPDU is ever sent)
        not_rx = ~self.hol_rx
        new = dec_slot & not_rx
        self.ue_delivered += new
        # §2.7 deletion
        delete = access == K + 1
        del_unrec = delete & not_rx
        self._slot["deleted_unreceived"] += del_unrec
        self.count = self.count - delete.long()
        self.hol_rx = (self.hol_rx | new) & ~delete  # a new HOL dPDU was never sent
        tx = access.bool() ^ delete  # TX on some RBG: neither IDLE (0) nor DELETE
        self._log["new"].append(new)
        self._log["deleted"].append(delete)
        self._slot["ucm_nonzero"] += ucm.bool()
        self._slot["dcm_nonzero"] += self.dcm.bool()
        self._slot["ue_ttis"] += self.active
        self.prev_ucm, self.prev_access, self.prev_dcm = ucm, access, self.dcm
        rewards = self._rewards(new, del_unrec, tx)  # §2.8
        self.t += 1
        self.phase = "begin"
        return rewards

    def _rewards(self, new, del_unrec, tx) -> spec.Rewards:
        """SPEC §4; inactive slots get 0 (event 0 with an empty buffer)."""
        u, u8 = self.cfg.utility, torch.uint8
        # per-episode totals as matrix-vector products (much cheaper than sums over a short dim)
        team = spec.team_reward(u, torch.mv(new.double(), self._ones_s), torch.mv(del_unrec.double(), self._ones_s))
        event = tx.view(u8) + new.view(u8) + del_unrec.view(u8) * _EV_DEL_UNREC
        follower = self._reward_table.take(event.long() * (self.B + 1) + self.count)
        leader = team
        if self.t == self.T - 1:
            self._fold_fairness(self.active)
            leader = team + u.beta_fair * self.jain()
        return spec.Rewards(team=team, leader=leader, follower=follower)

    def jain(self) -> torch.Tensor:
        """[E] Jain's index over the UEs folded so far (all UEs once the episode is over)."""
        return spec.jain_from_sums(self._churn_c["fair_n"].double(), self.fair_sum, self.fair_sumsq)
