"""SR/grant with speculative grants (model §6): SR/grant's messages, RBGs no request claims granted anyway.

SR/grant leaves an RBG idle whenever fewer UEs request than there are RBGs, and it never lets a UE send
in the TTI its dPDU arrives (the request costs one TTI). This protocol keeps SR/grant's messages and
its UE rule unchanged; only the BS differs: after granting the requesting UEs as SR/grant does, it
grants each RBG still free to an active UE that did not request and is not being ACKed, in cyclic
order from the pointer. Such a UE sends on the grant if a dPDU has arrived since its last UCM (a UE
with nothing to send leaves the RBG idle, as SR/grant would have), so the RBGs SR/grant leaves idle
carry the newest arrivals in the TTI they arrive.

The pointer is a function of what the BS observes (:func:`~mfsg.protocols.sr_grant.observed_pointer`,
just past the UE granted the highest RBG in t−1), so the protocol needs no memory.
"""

from __future__ import annotations

import torch

from mfsg.env import spec
from mfsg.protocols.base import DCM_ACK, DCM_NONE, acked, assign_rbgs
from mfsg.protocols.sr_grant import SrGrant, observed_pointer, requesting


class SpeculativeSrGrant(SrGrant):
    name = "sr-grant-speculative"
    memoryless = True

    def leader(self, obs: spec.LeaderObs) -> torch.Tensor:
        ack = acked(obs)
        req = requesting(obs, ack)
        idle = obs.active & ~ack & ~req  # the speculative candidates
        self.ptr = observed_pointer(obs)
        S = req.shape[1]
        cyclic = (torch.arange(S)[None, :] - self.ptr[:, None]) % S
        key = cyclic + S * (~req).long() + S * (~(req | idle)).long()  # requesters, then the others, then none
        rbg = assign_rbgs(key.argsort(dim=1), req | idle, self.K)
        dcm = torch.where(rbg > 0, rbg + DCM_ACK, DCM_NONE)
        return torch.where(ack, DCM_ACK, dcm)
