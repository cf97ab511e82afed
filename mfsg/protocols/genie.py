"""The genie scheduler (model §6): a centralized oracle, the upper bound of ``genie_fraction``.

It sees every buffer and every reception (it reads the environment's state, which no real
protocol can) and needs no signaling (UCM = DCM = 0). It acts through ordinary UE actions:
a UE whose head-of-line dPDU was received deletes it; the RBGs go to at most one UE each
among the others with a non-empty buffer, longest buffer first, ties in rotating order
(the pointer advances by one slot every TTI).
"""

from __future__ import annotations

import torch

from mfsg.env import spec
from mfsg.protocols.base import Protocol


class Genie(Protocol):
    name = "genie"
    memoryless = False

    def leader(self, obs: spec.LeaderObs) -> torch.Tensor:
        return torch.zeros_like(obs.ue_id)

    def followers(self, obs: spec.FollowerObs) -> tuple[torch.Tensor, torch.Tensor]:
        env, K = self.env, self.K
        has = obs.active & (obs.buffer > 0)
        delete = has & env.hol_rx  # the BS already holds this dPDU
        eligible = has & ~env.hol_rx
        E, S = eligible.shape
        cyclic = (torch.arange(S)[None, :] - self.ptr[:, None]) % S
        # longest buffer first, then the rotating order; ineligible slots last
        key = torch.where(eligible, obs.buffer * S + (S - 1 - cyclic), -1)
        k = min(K, S)
        top = key.topk(k, dim=1).indices
        rbg = torch.arange(1, k + 1).expand(E, k) * eligible.gather(1, top)
        access = torch.zeros(E, S, dtype=torch.long).scatter_(1, top, rbg)
        access = torch.where(delete, K + 1, access)
        self.ptr = (self.ptr + 1) % S
        return torch.zeros_like(access), access
