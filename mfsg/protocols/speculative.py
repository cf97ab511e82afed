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
from mfsg.protocols.base import acked, assign_rbgs, tiered_order
from mfsg.protocols.sr_grant import SrGrant, grant_dcm, observed_pointer, requesting


class SpeculativeSrGrant(SrGrant):
    name = "sr-grant-speculative"
    memoryless = True

    def leader(self, obs: spec.LeaderObs) -> torch.Tensor:
        ack = acked(obs)
        req = requesting(obs, ack)
        idle = obs.active & ~ack & ~req  # the speculative candidates
        self.ptr = observed_pointer(obs)
        tier = (~req).long() + (~(req | idle)).long()  # requesters, then the others, then none
        rbg = assign_rbgs(tiered_order(tier, self.ptr), req | idle, self.K)
        return grant_dcm(rbg, ack)
