"""The batched uplink MAC: E independent episodes as ``[E, S]`` arrays (model §2–§3).

Same semantics and the same three-call TTI as :mod:`mfsg.env.reference` (the differential
test drives both with identical draws and actions). All episodes run in lock-step over the
horizon T. Representation choices, all for speed (``mfsg bench env``):

- The state lives in NumPy arrays; every observation, reward, counter and public attribute
  is handed out as a torch tensor sharing their memory (``torch.from_numpy``, no copy). A
  TTI is a few dozen small array operations: NumPy's per-operation cost on arrays of a few
  thousand elements is a fraction of torch's, and it never starts a thread pool (torch's
  intra-op threads make such small operations much slower on a loaded machine).
- Only the head-of-line (HOL) dPDU is ever transmitted, so "received by the BS" is one flag
  per UE (``hol_rx``): every dPDU behind the HOL has never been sent. A UE's FIFO is then
  fully described by its length ``count``.
- dPDU latencies need arrival times, which are *not* tracked per TTI: the env logs each
  TTI's stored / removed / newly received masks (arrays it computes anyway) and
  :attr:`latency_hist` replays them in a few batched operations when read. Each slot's
  dPDUs get consecutive sequence numbers over the whole episode (a leaving UE's queue is
  skipped), so the HOL at TTI t is the dPDU numbered "removed before t".
- Counters accumulate per slot (or, per RBG, are logged per TTI as a class code);
  :attr:`c` sums them on read. Sums over the S slots inside a TTI add the S columns
  (NumPy's reduction over a short last axis is slow).
- The channel counts senders per access code with one ``bincount`` over flat
  ``[episode, code]`` indices; per-RBG arrays are flat ``[E * K]`` (contiguous).
- Follower rewards come from a table of :func:`mfsg.env.spec.follower_reward` over every
  (event, buffer) pair, filled once at construction (same formula, same float64 values).
- Arrays handed out are never modified in place afterwards (a new array replaces them), so
  callers may keep them, e.g. to stack a rollout. ``hol_rx`` is the exception: read it now.
- Draws come from a NumPy PCG64 generator; the uniforms a churn process never reads
  (join/leave when the active set is fixed after reset) are not drawn and read as 0.
"""

from __future__ import annotations

import numpy as np
import torch

from mfsg.config import EnvConfig
from mfsg.env import spec
from mfsg.env.churn import Churn, make_churn
from mfsg.env.draws import Draws, block_size
from mfsg.env.reference import InvalidActionError

_INT = np.int64  # dtype of every integer handed out (observations, counters): torch.long
_ACC = np.int32  # internal per-slot accumulators
_COUNT = np.int16  # internal FIFO lengths (handed out as int64)
_U64 = np.uint64  # int64 viewed as uint64: one comparison tests 0 <= x < n

# The outcome is min(senders, 2) + erased: idle 0, decoded 1, collision or erasure 2.
assert (spec.OUT_IDLE, spec.OUT_DECODED, spec.OUT_UNDECODABLE) == (0, 1, 2)

# A UE's event in a TTI for its reward: nothing (IDLE or DELETE of a received dPDU), TX without
# a new reception, TX with one, DELETE of an unreceived dPDU. ev = tx + new + 3·del_unrec.
_EVENTS = ((0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 0, 1))  # (tx, new, del_unrec)
_EV_DEL_UNREC = 3

# Per-slot accumulators ([E, S]), summed over slots on read.
_SLOT_ACC = ("stored", "deleted_unreceived", "ucm_nonzero", "dcm_nonzero", "ue_ttis")
# RBG classes of a TTI, logged per TTI: the outcome (= class for the first three) + erased.
_RBG_IDLE, _RBG_DECODED, _RBG_COLLISION, _RBG_ERASURE = 0, 1, 2, 3
_CHURN_ACC = ("generated_departed", "delivered_departed", "lost_on_departure", "joins", "fair_n")


class _TorchView:
    """Read-only attribute: the torch tensor sharing the NumPy array stored as ``_<name>``."""

    def __set_name__(self, owner, name: str) -> None:
        self.name, self.key = name, "_" + name

    def __get__(self, obj, objtype=None):
        return self if obj is None else torch.from_numpy(getattr(obj, self.key))

    def __set__(self, obj, value) -> None:
        raise AttributeError(f"BatchedEnv.{self.name} is read-only")


def _as_long(x) -> np.ndarray:
    """An action array (torch tensor, NumPy array or nested list) as int64 NumPy, without copying if possible."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.long).numpy()
    return np.asarray(x, dtype=_INT)


def _as_f64(x) -> np.ndarray:
    """Draws (torch tensor or array) as float64 NumPy, without copying if possible."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


_FEW_SLOTS = 16  # up to this many slots, row sums add columns one by one (int8 cannot overflow)


def _sum_slots(x: np.ndarray) -> np.ndarray:
    """Row sums of a bool or int8 ``[E, S]`` array of values in {-1, 0, 1}, as int64 ``[E]``.

    NumPy reduces a short last axis row by row (slow); adding the S strided columns is several
    times faster for few slots."""
    y, S = x.view(np.int8), x.shape[1]
    if S > _FEW_SLOTS or S == 1:
        return y.sum(axis=1, dtype=_INT)
    total = y[:, 0] + y[:, 1]
    for s in range(2, S):
        total += y[:, s]
    return total.astype(_INT)


class BatchedEnv:
    """model §2 for ``n_envs`` episodes at once; observations, rewards and counters are CPU tensors."""

    # state handed out as torch tensors (views of the NumPy arrays ``_<name>``)
    active = _TorchView()
    ue_id = _TorchView()
    next_id = _TorchView()
    hol_rx = _TorchView()  # the BS has decoded the head-of-line dPDU
    prev_ucm = _TorchView()
    prev_access = _TorchView()
    prev_dcm = _TorchView()
    ue_generated = _TorchView()
    ue_delivered = _TorchView()
    outcome = _TorchView()
    decoded_id = _TorchView()
    dcm = _TorchView()
    fair_sum = _TorchView()
    fair_sumsq = _TorchView()

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
        self._shape = (E, S)
        self._p_arrival = np.broadcast_to(self.p_arrival.numpy(), (E, S)).copy()  # contiguous: fast comparisons
        # buffers in int16, which also holds every reward-table index (EnvConfig caps B at 4096)
        assert len(_EVENTS) * (self.B + 1) <= np.iinfo(_COUNT).max, "buffer too large for int16 counts"
        e = np.arange(E, dtype=_INT)[:, None]
        self._code_base = np.repeat(e * (K + 2), S, axis=1)  # [E, S] flat index of [e, access code 0]
        self._rbg_index = (e * (K + 2) + 1 + np.arange(K)).ravel()  # flat index of [e, TX code 1..K]
        # flat indices of the arrival and decode uniforms in a draw block of each width (:meth:`_draw_block`)
        self._place = cfg.churn.random_placement
        full, short = block_size(S, K, self._place), S + K
        self._draw_index = {
            full: ((e * full + 2 + S + np.arange(S)).ravel(), (e * full + 2 + 2 * S + np.arange(K)).ravel()),
            short: ((e * short + np.arange(S)).ravel(), (e * short + S + np.arange(K)).ravel()),
        }
        self._dec_code = np.zeros(E * (K + 2), dtype=bool)  # decoded per [e, access code]; codes 0, K+1 stay False
        self._id_code = np.zeros(E * (K + 2), dtype=_INT)  # scratch: an identity per [e, access code]
        self._no_draw_e, self._no_draw_es = torch.zeros(E, dtype=torch.float64), torch.zeros(E, S, dtype=torch.float64)
        self._reward_table = self._follower_reward_table().numpy()
        self._no_discard = np.zeros((E, S), dtype=_INT)  # logged when nobody can leave; never modified
        self.reset(seed)

    def _follower_reward_table(self) -> torch.Tensor:
        """r_n for every (event, buffer) pair, flattened as ``ev * (B + 1) + buffer`` (model §4)."""
        ev = torch.tensor(_EVENTS, dtype=torch.float64)[:, None, :]  # [4, 1, 3]
        buf = torch.arange(self.B + 1, dtype=torch.float64)[None, :]
        tx, new, del_unrec = ev[..., 0], ev[..., 1], ev[..., 2]
        return spec.follower_reward(self.cfg.utility, new, del_unrec, buf, tx, self.B).reshape(-1)

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        E, S, K = self.E, self.S, self.K
        z = lambda *shape, dtype=_INT: np.zeros(shape, dtype=dtype)  # noqa: E731
        self.t = 0
        self._set_active(z(E, S, dtype=bool))
        self._ue_id = np.full((E, S), spec.NO_UE, dtype=_INT)
        self._next_id = z(E)
        self._count = z(E, S, dtype=_COUNT)
        self._hol_rx = z(E, S, dtype=bool)
        self._prev_ucm, self._prev_access, self._prev_dcm = z(E, S), z(E, S), z(E, S)
        self._ue_generated, self._ue_delivered = z(E, S, dtype=_ACC), z(E, S, dtype=_ACC)
        self._outcome = z(E, K)  # [E, K] views of flat [E * K] arrays from here on
        self._decoded_id = np.full((E, K), spec.NO_UE, dtype=_INT)
        self._dcm = z(E, S)
        self._slot = {f: z(E, S, dtype=_ACC) for f in _SLOT_ACC}
        self._access = z(E * (K + 2))  # UE-TTIs per flat [e, access code]
        self._churn_c = {f: z(E) for f in _CHURN_ACC}
        self._fair_sum, self._fair_sumsq = z(E, dtype=np.float64), z(E, dtype=np.float64)
        self._log = {"stored": [], "discarded": [], "new": [], "deleted": []}  # per TTI, for latency_hist
        self._rbg_log: list[np.ndarray] = []  # per TTI: flat [e, RBG] class _RBG_*, for the counters
        self.phase = "begin"

    def _set_active(self, active: np.ndarray) -> None:
        self._active, self._act_int = active, active.astype(_INT)  # as integers, for masking actions
        self._all_active = bool(active.all())

    def _mask(self, x: np.ndarray) -> np.ndarray:
        """A new array: ``x`` where the slot is active, 0 elsewhere (§2.4 only active UEs act)."""
        return x.copy() if self._all_active and x.shape == self._shape else x * self._act_int

    @property
    def count(self) -> torch.Tensor:
        """``[E, S]`` dPDUs in each FIFO (a fresh int64 tensor)."""
        return torch.from_numpy(self._count.astype(_INT))

    @property
    def done(self) -> bool:
        return self.t >= self.T

    def _draw_block(self) -> tuple[Draws, np.ndarray, np.ndarray]:
        """One TTI's uniforms (layout of :mod:`mfsg.env.draws`; unread churn draws are 0), with
        contiguous copies of the arrival ``[E, S]`` and decode ``[E * K]`` uniforms."""
        S, K = self.S, self.K
        full = self.t == 0 or not self._static_churn
        u = self.rng.random((self.E, block_size(S, K, self._place) if full else S + K))
        arrival, decode = (u.ravel().take(i) for i in self._draw_index[u.shape[1]])
        if full:
            d = Draws.split(torch.from_numpy(u), S, K, self._place)
        else:
            d = Draws(n_init=self._no_draw_e, join=self._no_draw_e, leave=self._no_draw_es,
                      arrival=torch.from_numpy(u[:, :S]), decode=torch.from_numpy(u[:, S:]))
        return d, arrival.reshape(self._shape), decode

    def draw(self) -> Draws:
        """One TTI's uniforms (layout of :mod:`mfsg.env.draws`); unread churn draws are 0."""
        return self._draw_block()[0]

    @property
    def c(self) -> spec.Counters:
        """Episode counters ``[E]`` (model §2–§3, §7), summed from the accumulators (fresh tensors)."""
        def total(x: np.ndarray) -> np.ndarray:
            return x.sum(axis=1, dtype=_INT)
        slot = {f: total(x) for f, x in self._slot.items()}
        rbg = self._rbg_counts()
        ch = {f: x.copy() for f, x in self._churn_c.items()}
        generated = ch["generated_departed"] + total(self._ue_generated)
        delivered = ch["delivered_departed"] + total(self._ue_delivered)
        acc = self._access.reshape(self.E, self.K + 2)
        values = dict(
            generated=generated,
            dropped_overflow=generated - slot["stored"],
            in_buffer=total(self._count),
            deleted=acc[:, self.K + 1].copy(),
            deleted_unreceived=slot["deleted_unreceived"],
            lost_on_departure=ch["lost_on_departure"],
            delivered=delivered,
            duplicates=rbg[_RBG_DECODED] - delivered,
            collisions=rbg[_RBG_COLLISION],
            erasures=rbg[_RBG_ERASURE],
            idle=rbg[_RBG_IDLE],
            tx=total(acc[:, 1 : self.K + 1]),
            ucm_nonzero=slot["ucm_nonzero"],
            dcm_nonzero=slot["dcm_nonzero"],
            ue_ttis=slot["ue_ttis"],
            joins=ch["joins"],
            fair_n=ch["fair_n"],
            fair_sum=self._fair_sum.copy(),
            fair_sumsq=self._fair_sumsq.copy(),
        )
        return spec.Counters(**{f: torch.from_numpy(x) for f, x in values.items()})

    def _rbg_counts(self) -> list[np.ndarray]:
        """RBG-TTIs so far per class ``_RBG_*``, each ``[E]``, from the log."""
        E, K, n = self.E, self.K, len(self._rbg_log)
        cls = np.stack(self._rbg_log).reshape(n, E, K) if n else np.zeros((0, E, K), dtype=np.uint8)
        return [(cls == c).sum(axis=(0, 2), dtype=_INT) for c in range(_RBG_ERASURE + 1)]

    @property
    def latency_hist(self) -> torch.Tensor:
        """``[E, T]``: dPDUs first received l TTIs after their arrival (model §7), so far.

        Replays the log: the dPDU a slot stores at TTI t gets the next sequence number of that
        slot; the HOL when TTI t's receptions happen is the dPDU numbered (deleted before t) +
        (discarded by departures up to t).
        """
        E, S, T = self.E, self.S, self.T
        hist = torch.zeros(E * T, dtype=torch.long)
        n = len(self._log["new"])
        if n == 0:
            return hist.view(E, T)
        log = {k: torch.from_numpy(np.stack(v[:n])) for k, v in self._log.items()}
        stored, deleted, new = log["stored"].long(), log["deleted"].long(), log["new"]  # [n, E, S]
        removed = deleted + log["discarded"]
        tti = torch.arange(n)[:, None, None].expand(n, E, S)
        seq = stored.cumsum(dim=0) - 1  # sequence number of the dPDU stored at t
        arrival = torch.zeros(E, S, T, dtype=torch.long)
        es = torch.arange(E * S).view(1, E, S).expand(n, E, S)
        arrival.view(-1)[(es * T + seq)[stored.bool()]] = tti[stored.bool()]
        hol = removed.cumsum(dim=0) - deleted  # removed before this TTI's receptions
        lat = tti - arrival.view(-1)[es * T + hol.clamp(max=T - 1)].view(n, E, S)
        e = torch.arange(E).view(1, E, 1).expand(n, E, S)
        hist.index_put_(((e * T + lat)[new],), torch.ones((), dtype=torch.long), accumulate=True)
        return hist.view(E, T)

    # ------------------------------------------------------------ §2.1 churn
    def _join(self, joining: np.ndarray) -> None:
        order = joining.cumsum(axis=1) - 1  # several joiners only at reset
        self._ue_id = np.where(joining, self._next_id[:, None] + order, self._ue_id)
        n_join = _sum_slots(joining)
        self._next_id = self._next_id + n_join
        ch = self._churn_c
        ch["joins"] += n_join
        ch["generated_departed"] += (self._ue_generated * joining).sum(axis=1)
        ch["delivered_departed"] += (self._ue_delivered * joining).sum(axis=1)
        for x in (self._hol_rx, self._ue_generated, self._ue_delivered):
            x[joining] = 0
        # handed-out arrays: replaced, never modified in place
        self._count, self._prev_ucm = np.where(joining, 0, self._count), np.where(joining, 0, self._prev_ucm)
        self._prev_access, self._prev_dcm = np.where(joining, 0, self._prev_access), np.where(joining, 0, self._prev_dcm)
        self._set_active(self._active | joining)

    def _fold_fairness(self, mask: np.ndarray) -> None:
        x = spec.delivery_ratio(self._ue_delivered.astype(np.float64), self._ue_generated)
        self._churn_c["fair_n"] += _sum_slots(mask)
        self._fair_sum += (x * mask).sum(axis=1)
        self._fair_sumsq += (x * x * mask).sum(axis=1)

    def _leave(self, leaving: np.ndarray) -> np.ndarray:
        """Departures; returns the number of dPDUs each slot discarded."""
        discarded = (self._count * leaving).astype(_INT)
        self._churn_c["lost_on_departure"] += discarded.sum(axis=1)
        self._fold_fairness(leaving)
        self._set_active(self._active & ~leaving)
        self._count = np.where(leaving, 0, self._count)
        self._ue_id = np.where(leaving, spec.NO_UE, self._ue_id)
        self._prev_ucm, self._prev_dcm = np.where(leaving, 0, self._prev_ucm), np.where(leaving, 0, self._prev_dcm)
        self._prev_access = np.where(leaving, 0, self._prev_access)
        return discarded

    def _churn(self, d: Draws) -> np.ndarray:
        """§2.1; returns the dPDUs discarded per slot."""
        if self.t == 0:
            place = None if d.place is None else torch.as_tensor(d.place)
            self._join(self.churn.initial_batched(torch.as_tensor(d.n_init), place).numpy())
            return self._no_discard
        if self._static_churn:
            return self._no_discard
        as_t = torch.as_tensor
        place = None if d.place is None else as_t(d.place)
        leaving, joining = self.churn.step_batched(self.t, self.active, as_t(d.join), as_t(d.leave), place)
        discarded = self._leave(leaving.numpy())
        self._join(joining.numpy())
        return discarded

    # ------------------------------------------------------------ §2.2 traffic
    def _traffic(self, arrival: np.ndarray) -> np.ndarray:
        """§2.2; returns which slots stored a new dPDU."""
        arrive = arrival < self._p_arrival
        arrive &= self._active
        self._ue_generated += arrive
        store = self._count < self.B
        store &= arrive
        self._slot["stored"] += store
        self._count = self._count + store
        return store

    def begin_tti(self, draws: Draws | None = None) -> spec.LeaderObs:
        """§2.1–§2.2 for every episode, then o_b(t) as ``[E, ...]`` tensors."""
        assert self.phase == "begin" and not self.done, "begin_tti called out of order"
        if draws is None:
            self.draws, arrival, self._decode = self._draw_block()
        else:
            arrival, decode = (np.ascontiguousarray(_as_f64(x)) for x in (draws.arrival, draws.decode))
            self.draws, self._decode = draws, decode.ravel()
        self._log["discarded"].append(self._churn(self.draws))
        self._log["stored"].append(self._traffic(arrival))
        self.phase = "deliver"
        return self.leader_observation()

    def leader_observation(self) -> spec.LeaderObs:
        return spec.LeaderObs(
            t=self.t, active=self.active, ue_id=self.ue_id, outcome=self.outcome,
            decoded_id=self.decoded_id, prev_ucm=self.prev_ucm, prev_dcm=self.prev_dcm,
        )

    # ------------------------------------------------------------ §2.3 leader moves
    def deliver(self, dcm) -> spec.FollowerObs:
        assert self.phase == "deliver", "deliver called out of order"
        dcm = self._mask(_as_long(dcm))
        if self.check_actions:
            bad = dcm.view(_U64) >= self.cfg.dcm_vocab  # negative values wrap to huge ones
            if bad.any():
                e, s = (int(i) for i in np.argwhere(bad)[0])
                allowed = f"allowed 0..{self.cfg.dcm_vocab - 1}"
                raise InvalidActionError(f"dcm[{e},{s}]={int(dcm[e, s])} is invalid: {allowed}")
        self._dcm = dcm
        self.phase = "end"
        return self.follower_observation()

    def follower_observation(self) -> spec.FollowerObs:
        return spec.FollowerObs(
            t=self.t, active=self.active, buffer=self.count, prev_ucm=self.prev_ucm,
            prev_access=self.prev_access, dcm=self.dcm,
        )

    # ------------------------------------------------------------ §2.4–§2.8
    def _check(self, ucm: np.ndarray, access: np.ndarray, acting: np.ndarray) -> None:
        """Raise on the first invalid action; one fused test, the rules only when it fails."""
        U, K, count = self.cfg.ucm_vocab, self.K, self._count
        bad = ucm.view(_U64) >= U  # negative values wrap to huge ones
        bad |= access.view(_U64) > K + 1
        bad |= acting > (count != 0)  # IDLE only with an empty buffer
        if not bad.any():
            return
        rules = (
            ((ucm < 0) | (ucm >= U), "ucm", f"allowed 0..{U - 1}"),
            ((access < 0) | (access > K + 1), "access", f"allowed 0 (IDLE), 1..{K} (TX), {K + 1} (DELETE)"),
            ((access != spec.IDLE) & (count == 0), "access", "with an empty buffer: allowed 0 (IDLE)"),
        )
        for rule, name, allowed in rules:
            if rule.any():
                e, s = (int(i) for i in np.argwhere(rule)[0])
                value = int((ucm if name == "ucm" else access)[e, s])
                raise InvalidActionError(f"{name}[{e},{s}]={value} is invalid: {allowed}")

    def _channel(self, access: np.ndarray) -> np.ndarray:
        """§2.5: per-RBG outcome, decoded identities and RBG counters; returns which slots were decoded.

        Per-RBG arrays are flat ``[E * K]`` (contiguous, hence fast) and viewed as ``[E, K]`` when handed out."""
        E, S, K = self.E, self.S, self.K
        code = (access + self._code_base).ravel()  # flat index of [e, access code]
        per_code = np.bincount(code, minlength=E * (K + 2))  # UEs per access code
        self._access += per_code
        n_send = per_code.take(self._rbg_index)
        one = n_send == 1
        erased = self._decode < self.cfg.tbler
        erased &= one
        decoded = one ^ erased
        outcome = np.minimum(n_send, spec.OUT_UNDECODABLE)
        outcome += erased
        self._outcome = outcome.reshape(E, K)
        self._rbg_log.append(np.add(outcome, erased, dtype=np.uint8, casting="unsafe"))  # an erasure: 2 + 1
        # the single sender's identity: every slot writes its identity at its code; a decoded code
        # had exactly one sender, so exactly one write (the other codes' values are never read)
        self._id_code[code] = self._ue_id.ravel()
        self._decoded_id = np.where(decoded, self._id_code.take(self._rbg_index), spec.NO_UE).reshape(E, K)
        # which slots were decoded: look up the code each slot used (codes 0 and K+1 are never decoded)
        self._dec_code[self._rbg_index] = decoded
        return self._dec_code.take(code).reshape(E, S)

    def end_tti(self, ucm, access) -> spec.Rewards:
        assert self.phase == "end", "end_tti called out of order"
        ucm, access = self._mask(_as_long(ucm)), self._mask(_as_long(access))  # §2.4 only active UEs act
        acting = access != spec.IDLE
        if self.check_actions:
            self._check(ucm, access, acting)
        dec_slot = self._channel(access)  # §2.5
        # §2.6 reception: new or duplicate (only the HOL dPDU is ever sent); bool a > b is a & ~b
        new = dec_slot > self._hol_rx
        self._ue_delivered += new
        # §2.7 deletion
        delete = access == self.K + 1
        del_unrec = delete > self._hol_rx
        self._slot["deleted_unreceived"] += del_unrec
        self._count = self._count - delete
        self._hol_rx = (self._hol_rx | new) > delete  # a new HOL dPDU was never sent
        tx = acting ^ delete  # TX on some RBG: neither IDLE (0) nor DELETE
        self._log["new"].append(new)
        self._log["deleted"].append(delete)
        self._slot["ucm_nonzero"] += ucm != 0
        self._slot["dcm_nonzero"] += self._dcm != 0
        self._slot["ue_ttis"] += self._active
        self._prev_ucm, self._prev_access, self._prev_dcm = ucm, access, self._dcm
        rewards = self._rewards(new, del_unrec, tx)  # §2.8
        self.t += 1
        self.phase = "begin"
        return rewards

    def _rewards(self, new: np.ndarray, del_unrec: np.ndarray, tx: np.ndarray) -> spec.Rewards:
        """model §4; inactive slots get 0 (event 0 with an empty buffer)."""
        u, u8 = self.cfg.utility, np.uint8
        # new and del_unrec never both hold for a slot: one sum of their difference, Σnew − Σdel_unrec
        net = new.view(np.int8) - del_unrec.view(np.int8)
        team = spec.team_reward(u, _sum_slots(net), 0)
        event = tx.view(u8) + new.view(u8)
        event += del_unrec.view(u8) * u8(_EV_DEL_UNREC)
        index = event.astype(_COUNT)
        index *= self.B + 1
        index += self._count
        follower = self._reward_table.take(index)
        leader = team
        if self.t == self.T - 1:
            self._fold_fairness(self._active)
            leader = team + u.beta_fair * self.jain().numpy()
        return spec.Rewards(team=torch.from_numpy(team), leader=torch.from_numpy(leader),
                            follower=torch.from_numpy(follower), team_ue=torch.from_numpy(spec.team_reward(u, net, 0)))

    def jain(self) -> torch.Tensor:
        """[E] Jain's index over the UEs folded so far (all UEs once the episode is over)."""
        n = torch.from_numpy(self._churn_c["fair_n"]).double()
        return spec.jain_from_sums(n, self.fair_sum, self.fair_sumsq)
