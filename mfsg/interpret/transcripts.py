"""Transcripts: every decision of whole episodes with the messages, the actions and the hidden state
behind them (model §2), from a rule-based protocol or from trained players.

A :class:`TranscriptEnv` is a :class:`~mfsg.env.BatchedEnv` that records, at each TTI, what the
BS saw (decoded identities of t−1, last UCMs and DCMs), the DCM it sent, what the UE then saw
(its buffer) and chose (UCM and access), and what neither side sees directly: whether the
head-of-line dPDU had already been received (``hol_rx``). The protocol runner and the players'
rollout drive it through the env's ordinary three calls, so nothing about the policies changes.

One row of a :class:`Transcript` is one decision pair (the BS's DCM to UE n at TTI t, then UE
n's UCM and access), for every active UE of every TTI of every episode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from mfsg.config import EnvConfig, check_int
from mfsg.env import spec
from mfsg.env.batched import BatchedEnv
from mfsg.learn.players import Player
from mfsg.learn.rollout import rollout
from mfsg.protocols import make_protocol
from mfsg.protocols.runner import chunk_seeds, run_episodes

NO_NEXT = -1  # next_dcm of a UE's last decision (episode over or the UE left)


def access_name(code: int, n_rbg: int) -> str:
    """IDLE, TX k or DELETE (model §2.4)."""
    if code == spec.IDLE:
        return "IDLE"
    return "DELETE" if code == spec.delete_action(n_rbg) else f"TX {code}"


ROW_FIELDS = ("episode", "t", "slot", "dcm", "ucm", "access", "buffer", "hol_rx", "decoded_prev", "prev_ucm",
              "prev_dcm", "prev_access", "n_requesters", "next_dcm")


@dataclass(frozen=True, eq=False)
class Transcript:
    """Per-decision arrays (one row per active UE per TTI, episode-major) and per-episode totals.

    Observable to the BS before its DCM: ``decoded_prev`` (this UE's dPDU decoded in t−1),
    ``prev_ucm``, ``prev_dcm``, ``n_requesters`` (active UEs whose UCM of t−1 was non-zero).
    Observable to the UE before its action: ``buffer``, ``prev_ucm``, ``prev_access``, ``dcm``.
    Hidden from the UE: ``hol_rx`` (its head-of-line dPDU was already received).
    ``next_dcm`` is the BS's DCM to the same UE at t+1 (:data:`NO_NEXT` if there is none).
    """

    name: str
    cfg: EnvConfig
    episode: np.ndarray
    t: np.ndarray
    slot: np.ndarray
    dcm: np.ndarray
    ucm: np.ndarray
    access: np.ndarray
    buffer: np.ndarray
    hol_rx: np.ndarray
    decoded_prev: np.ndarray
    prev_ucm: np.ndarray
    prev_dcm: np.ndarray
    prev_access: np.ndarray
    n_requesters: np.ndarray
    next_dcm: np.ndarray
    delivered: np.ndarray  # [E] new dPDUs received per episode
    generated: np.ndarray  # [E]

    @property
    def n_episodes(self) -> int:
        return int(self.delivered.size)

    @property
    def n_decisions(self) -> int:
        return int(self.dcm.size)

    @property
    def holding_after(self) -> np.ndarray:
        """The UE still holds a dPDU after this TTI's action (buffer minus its DELETE)."""
        return self.buffer - (self.access == spec.delete_action(self.cfg.n_rbg)) > 0

    def subset(self, rows: np.ndarray) -> Transcript:
        """The same transcript restricted to the decisions ``rows`` (a bool mask); totals kept."""
        return dataclasses.replace(self, **{k: getattr(self, k)[rows] for k in ROW_FIELDS})


class TranscriptEnv(BatchedEnv):
    """A :class:`BatchedEnv` that records every decision and the hidden state behind it."""

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.records: dict[str, list[np.ndarray]] = {}

    def _keep(self, **arrays) -> None:
        for k, v in arrays.items():
            x = v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            self.records.setdefault(k, []).append(x.copy())

    def begin_tti(self, draws=None) -> spec.LeaderObs:
        obs = super().begin_tti(draws)
        decoded = (obs.decoded_id[:, None, :] == obs.ue_id[:, :, None]).any(dim=2) & obs.active
        requesters = ((obs.prev_ucm != 0) & obs.active).sum(dim=1, keepdim=True).expand_as(obs.prev_ucm)
        self._keep(active=obs.active, ue_id=obs.ue_id, buffer=self.count, hol_rx=self.hol_rx,
                   decoded_prev=decoded, prev_ucm=obs.prev_ucm, prev_dcm=obs.prev_dcm,
                   prev_access=self.prev_access, n_requesters=requesters)
        return obs

    def end_tti(self, ucm, access) -> spec.Rewards:
        rewards = super().end_tti(ucm, access)
        # the env's own masked copies: this TTI's DCM, and the UCM and access it executed
        self._keep(dcm=self.dcm, ucm=self.prev_ucm, access=self.prev_access)
        return rewards

    def transcript(self, name: str) -> Transcript:
        """The finished episodes as a :class:`Transcript`."""
        assert self.done, "transcript() needs whole episodes"
        rec = {k: np.stack(v, axis=1) for k, v in self.records.items()}  # [E, T, S]
        E, T, S = rec["active"].shape
        same_ue = np.zeros((E, T, S), dtype=bool)
        same_ue[:, :-1] = rec["active"][:, 1:] & (rec["ue_id"][:, 1:] == rec["ue_id"][:, :-1])
        next_dcm = np.full((E, T, S), NO_NEXT, dtype=np.int64)
        next_dcm[:, :-1] = np.where(same_ue[:, :-1], rec["dcm"][:, 1:], NO_NEXT)
        rows = rec["active"]
        idx = np.nonzero(rows)
        c = self.c
        per_row = {k: rec[k][rows] for k in ("dcm", "ucm", "access", "buffer", "hol_rx", "decoded_prev",
                                            "prev_ucm", "prev_dcm", "prev_access", "n_requesters")}
        per_row = {k: v.astype(bool) if v.dtype == bool else v.astype(np.int64) for k, v in per_row.items()}
        return Transcript(name=name, cfg=self.cfg, episode=idx[0], t=idx[1], slot=idx[2],
                          next_dcm=next_dcm[rows], delivered=c.delivered.numpy().copy(),
                          generated=c.generated.numpy().copy(), **per_row)


def record_protocol(env_cfg: EnvConfig, protocol: str, episodes: int, seed: int) -> Transcript:
    """A rule-based protocol's transcript on the env draws of ``mfsg simulate`` with the same seed
    (one chunk: ``episodes`` up to the runner's chunk size give the same arrivals)."""
    check_int("episodes", episodes, 1)
    env_seed, proto_seed = chunk_seeds(seed, 1)[0]
    env = TranscriptEnv(env_cfg, episodes)
    run_episodes(env, make_protocol(protocol, seed=seed), env_seed=env_seed, protocol_seed=proto_seed)
    return env.transcript(protocol)


def record_players(leader: Player, follower: Player, env_cfg: EnvConfig, episodes: int, seed: int, *,
                   greedy: bool = False, no_comm: bool = False, name: str = "learned") -> Transcript:
    """Trained players' transcript (:func:`mfsg.learn.rollout.rollout`, env seeded by ``seed`` as
    :func:`record_protocol` does, so both see the same arrivals)."""
    check_int("episodes", episodes, 1)
    env = TranscriptEnv(env_cfg, episodes)
    rollout(env, leader, follower, seed=seed, greedy=greedy, no_comm=no_comm)
    return env.transcript(name)


__all__ = ["NO_NEXT", "ROW_FIELDS", "access_name", "Transcript", "TranscriptEnv", "record_players", "record_protocol"]
