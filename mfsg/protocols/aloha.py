"""Slotted ALOHA with ACK (model §6).

BS: DCM 1 = ACK of a dPDU decoded in t−1, else 0. UE: on an ACK it deletes its head-of-line
dPDU; otherwise, when backlogged, it transmits with probability q on a uniformly random RBG.
UCM is always 0. q defaults to 1/N with N the number of active UEs of the episode at that TTI
(an idealization: a real UE would have to be told N).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mfsg.config import check_prob
from mfsg.env import spec
from mfsg.protocols.base import DCM_ACK, DCM_NONE, Protocol, acked


@dataclass(frozen=True)
class AlohaConfig:
    """``q``: transmit probability of a backlogged UE; ``None`` means 1/N (N active UEs)."""

    q: float | None = None

    def __post_init__(self) -> None:
        if self.q is not None:
            check_prob("aloha.q", self.q, open_low=True)


class Aloha(Protocol):
    name = "aloha"

    def __init__(self, cfg: AlohaConfig | None = None, seed: int = 0):
        super().__init__(seed)
        self.cfg = cfg if cfg is not None else AlohaConfig()

    def leader(self, obs: spec.LeaderObs) -> torch.Tensor:
        return torch.where(acked(obs), DCM_ACK, DCM_NONE)

    def q(self, active: torch.Tensor) -> torch.Tensor:
        """[E, 1] transmit probability per episode."""
        if self.cfg.q is not None:
            return torch.full((active.shape[0], 1), float(self.cfg.q), dtype=torch.float64)
        return 1.0 / active.sum(dim=1, keepdim=True).clamp(min=1).double()

    def followers(self, obs: spec.FollowerObs) -> tuple[torch.Tensor, torch.Tensor]:
        K, has = self.K, obs.active & (obs.buffer > 0)
        delete = has & (obs.dcm == DCM_ACK)
        coin = torch.rand(obs.buffer.shape, generator=self.gen, dtype=torch.float64) < self.q(obs.active)
        rbg = torch.randint(1, K + 1, obs.buffer.shape, generator=self.gen)
        access = torch.where(has & ~delete & coin, rbg, spec.IDLE)
        access = torch.where(delete, K + 1, access)
        return torch.zeros_like(access), access
