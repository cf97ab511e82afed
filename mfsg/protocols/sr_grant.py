"""The human-crafted SR/grant protocol (model §6; 3GPP-like, as in Sarbu et al., ICC 2024).

Messages: UCM 1 = scheduling request (SR), UCM 0 = none; DCM 0 = none, 1 = ACK,
2..K+1 = grant of RBG 1..K. One DCM per UE per TTI, an ACK taking priority over a grant.

- BS: ACKs every UE whose dPDU it decoded in t−1 (decoded_id against ue_id); grants the RBGs
  round robin (rotating pointer, moved past the last granted UE) among the UEs whose last UCM
  was an SR and that are not being ACKed.
- UE: transmits only on a grant, on the granted RBG; deletes its head-of-line dPDU on an ACK;
  sends an SR when it will still hold data after this TTI's action.
"""

from __future__ import annotations

import torch

from mfsg.env import spec
from mfsg.protocols.base import (
    DCM_ACK,
    DCM_NONE,
    UCM_REQUEST,
    Protocol,
    acked,
    advance_pointer,
    assign_rbgs,
    rotated_order,
)

_GRANT_OFFSET = DCM_ACK  # DCM of a grant of RBG k is k + 1


def requesting(obs: spec.LeaderObs, ack: torch.Tensor) -> torch.Tensor:
    """[E, S]: the UEs SR/grant may grant, those whose last UCM was an SR and that are not being ACKed."""
    return obs.active & (obs.prev_ucm == UCM_REQUEST) & ~ack


def observed_pointer(obs: spec.LeaderObs) -> torch.Tensor:
    """SR/grant's round-robin pointer as the BS's observation shows it, ``[E]``: just past the UE granted
    the highest RBG in t−1 (the last one served, since RBG k goes to the k-th requester in pointer
    order), or slot 0 after a TTI without grants."""
    granted = obs.active & (obs.prev_dcm > DCM_ACK)
    last = torch.where(granted, obs.prev_dcm, -1).argmax(dim=1)
    return torch.where(granted.any(dim=1), (last + 1) % granted.shape[1], torch.zeros_like(last))


def grant_dcm(rbg: torch.Tensor, ack: torch.Tensor) -> torch.Tensor:
    """[E, S] DCMs: ACK where ``ack``, else the grant of RBG ``rbg`` (> 0), else none."""
    dcm = torch.where(rbg > 0, rbg + _GRANT_OFFSET, DCM_NONE)
    return torch.where(ack, DCM_ACK, dcm)


class SrGrant(Protocol):
    name = "sr-grant"
    memoryless = False

    def leader(self, obs: spec.LeaderObs) -> torch.Tensor:
        ack = acked(obs)
        eligible = requesting(obs, ack)
        rbg = assign_rbgs(rotated_order(eligible, self.ptr), eligible, self.K)
        self.ptr = advance_pointer(self.ptr, rbg > 0)
        return grant_dcm(rbg, ack)

    def followers(self, obs: spec.FollowerObs) -> tuple[torch.Tensor, torch.Tensor]:
        K, has = self.K, obs.active & (obs.buffer > 0)
        delete = has & (obs.dcm == DCM_ACK)
        grant = has & (obs.dcm > DCM_ACK)
        access = torch.where(grant, obs.dcm - _GRANT_OFFSET, spec.IDLE)
        access = torch.where(delete, K + 1, access)
        still_holding = obs.buffer - delete.long() > 0
        ucm = (obs.active & still_holding).long() * UCM_REQUEST
        return ucm, access
