"""The protocol interface and what the baselines share (model §6).

A protocol plays both sides of one TTI on a :class:`~mfsg.env.BatchedEnv` through the
observations: ``leader(o_b) -> dcm [E, S]``, then ``followers(o_n) -> (ucm, access)``.
Its randomness comes from its own generator, never from the environment's, so the same env
seed gives the same arrivals, churn and erasures whatever the protocol does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from mfsg.env import spec
from mfsg.env.batched import BatchedEnv

DCM_NONE, DCM_ACK = 0, 1  # fixed DCM meanings of the SR/grant and ALOHA baselines (model §6)
UCM_NONE, UCM_REQUEST = 0, 1


class Protocol(ABC):
    """A rule-based MAC protocol with a seeded generator; :meth:`reset` binds it to an env."""

    name: str = ""
    memoryless: bool = True  # its actions are a function of the current observations (no pointer kept as memory)

    def __init__(self, seed: int = 0):
        self.gen = torch.Generator().manual_seed(seed)
        self.env: BatchedEnv | None = None

    def reset(self, env: BatchedEnv, seed: int | None = None) -> None:
        """Start of a batch of episodes on ``env``; ``seed`` re-seeds the protocol's generator."""
        if seed is not None:
            self.gen.manual_seed(seed)
        self.env = env
        self.K = env.K
        self.ptr = torch.zeros(env.E, dtype=torch.long)  # rotating pointer per episode

    @abstractmethod
    def leader(self, obs: spec.LeaderObs) -> torch.Tensor:
        """The BS's DCM for every slot, ``[E, S]``."""

    @abstractmethod
    def followers(self, obs: spec.FollowerObs) -> tuple[torch.Tensor, torch.Tensor]:
        """Every slot's UCM and access action, ``[E, S]`` each."""


def acked(obs: spec.LeaderObs) -> torch.Tensor:
    """[E, S]: the slot's UE had a dPDU decoded in t−1 (the BS compares decoded_id with ue_id)."""
    hit = (obs.decoded_id[:, None, :] == obs.ue_id[:, :, None]).any(dim=2)
    return hit & obs.active


def tiered_order(tier: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Slot indices ``[E, S]`` sorted by ``tier`` (0 first), each tier in cyclic order from ``ptr``."""
    S = tier.shape[1]
    cyclic = (torch.arange(S)[None, :] - ptr[:, None]) % S
    return (cyclic + S * tier).argsort(dim=1)


def rotated_order(mask: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Slot indices ``[E, S]`` sorted with ``mask`` first, each group in cyclic order from ``ptr``."""
    return tiered_order((~mask).long(), ptr)


def assign_rbgs(order: torch.Tensor, eligible: torch.Tensor, n_rbg: int) -> torch.Tensor:
    """RBG k (1..K) to the k-th slot of ``order`` if it is eligible; 0 elsewhere. ``[E, S]``."""
    E, S = eligible.shape
    k = min(n_rbg, S)
    first = order[:, :k]
    rbg = torch.arange(1, k + 1).expand(E, k) * eligible.gather(1, first)
    return torch.zeros(E, S, dtype=torch.long).scatter_(1, first, rbg)


def advance_pointer(ptr: torch.Tensor, served: torch.Tensor) -> torch.Tensor:
    """Round robin: the pointer moves just past the last served slot (in cyclic order from it), if any."""
    S = served.shape[1]
    cyclic = (torch.arange(S)[None, :] - ptr[:, None]) % S
    last = torch.where(served, cyclic, -1).amax(dim=1)  # cyclic position of the last served
    return torch.where(last >= 0, (ptr + last + 1) % S, ptr)
