"""Shared builders for the language tests: random observations and small agents."""

from __future__ import annotations

import torch

from mfsg.config import ChurnConfig, EnvConfig
from mfsg.env import spec
from mfsg.language.backbones import BackboneConfig
from mfsg.language.policy import Agents, PolicyConfig

ENV = EnvConfig(churn=ChurnConfig(kind="per_episode", n_min=1, n_max=5))


def agents(family: str, decoding: str = "score", **kw) -> Agents:
    return Agents(ENV, PolicyConfig(backbone=BackboneConfig(family=family), decoding=decoding, **kw))


def random_obs(seed: int, E: int, cfg: EnvConfig = ENV) -> tuple[spec.LeaderObs, spec.FollowerObs]:
    """Leader and follower observations with every field drawn uniformly in its range."""
    g = torch.Generator().manual_seed(seed)
    S, K = cfg.n_slots, cfg.n_rbg
    r = lambda hi, *shape: torch.randint(hi, shape, generator=g)  # noqa: E731
    active = r(2, E, S).bool()
    active[:, 0] = True
    ue_id = torch.where(active, torch.arange(E * S).view(E, S), spec.NO_UE)
    outcome = r(3, E, K)
    pick = ue_id.gather(1, r(S, E, K))
    decoded = torch.where(outcome == spec.OUT_DECODED, torch.where(r(4, E, K) == 0, 10_000, pick), spec.NO_UE)
    decoded = torch.where(decoded == spec.NO_UE, spec.NO_UE, decoded.clamp(min=0))
    outcome = torch.where((outcome == spec.OUT_DECODED) & (decoded < 0), spec.OUT_IDLE, outcome)
    a = active.long()
    lobs = spec.LeaderObs(
        t=int(r(cfg.horizon)),
        active=active,
        ue_id=ue_id,
        outcome=outcome,
        decoded_id=decoded,
        prev_ucm=r(cfg.ucm_vocab, E, S) * a,
        prev_dcm=r(cfg.dcm_vocab, E, S) * a,
    )
    fobs = spec.FollowerObs(
        t=lobs.t,
        active=active,
        buffer=r(cfg.buffer + 1, E, S) * a,
        prev_ucm=lobs.prev_ucm,
        prev_access=r(cfg.n_access, E, S) * a,
        dcm=r(cfg.dcm_vocab, E, S) * a,
    )
    return lobs, fobs
