"""Shared builders for the language tests: random observations and small player pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mfsg.config import ChurnConfig, EnvConfig
from mfsg.env import spec
from mfsg.language import prompts
from mfsg.language.backbones import BackboneConfig
from mfsg.language.policy import LanguagePolicy, LanguagePolicyConfig
from mfsg.learn.language_players import LanguagePlayer, language_players

ENV = EnvConfig(churn=ChurnConfig(kind="per_episode", n_min=1, n_max=5))


@dataclass
class Acted:
    """One policy's decisions of a TTI as [E, S] tensors (0 / True where no decision)."""

    actions: tuple[torch.Tensor, ...]
    logp: torch.Tensor
    entropy: torch.Tensor
    valid: torch.Tensor


def _scatter(E: int, S: int, r: prompts.Rendered, values: torch.Tensor, fill) -> torch.Tensor:
    out = torch.full((E, S), fill, dtype=values.dtype)
    out[torch.tensor(r.env, dtype=torch.long), torch.tensor(r.slot, dtype=torch.long)] = values
    return out


class PlayerPair:
    """The leader and follower :class:`LanguagePlayer` of one config, acting through
    :meth:`LanguagePolicy.decide` on rendered prompts (``leader`` / ``follower``: their policies)."""

    def __init__(self, env_cfg: EnvConfig, cfg: LanguagePolicyConfig):
        self.env_cfg, self.pcfg = env_cfg, cfg.prompts
        self.players: tuple[LanguagePlayer, LanguagePlayer] = language_players(env_cfg, cfg)
        self.leader: LanguagePolicy = self.players[0].policy
        self.follower: LanguagePolicy = self.players[1].policy
        self.gen = torch.Generator().manual_seed(0)

    def reseed(self, seed: int) -> None:
        self.gen.manual_seed(seed)

    def _act(self, policy: LanguagePolicy, r: prompts.Rendered, shape, greedy: bool) -> Acted:
        ch = policy.decide(r, greedy, self.gen)
        E, S = shape
        acts = tuple(_scatter(E, S, r, a, 0) for a in ch.actions.unbind(1))
        return Acted(acts, _scatter(E, S, r, ch.logp, 0.0), _scatter(E, S, r, ch.entropy, 0.0),
                     _scatter(E, S, r, ch.valid, True))

    def act_leader(self, lobs: spec.LeaderObs, greedy: bool = False) -> Acted:
        r = prompts.leader_prompts(lobs, self.leader.lim, self.pcfg)
        return self._act(self.leader, r, lobs.active.shape, greedy)

    def act_followers(self, fobs: spec.FollowerObs, greedy: bool = False) -> Acted:
        r = prompts.follower_prompts(fobs, self.follower.lim, self.pcfg)
        return self._act(self.follower, r, fobs.active.shape, greedy)


def agents(family: str, decoding: str = "score", env_cfg: EnvConfig = ENV, **kw) -> PlayerPair:
    return PlayerPair(env_cfg, LanguagePolicyConfig(backbone=BackboneConfig(family=family), decoding=decoding, **kw))


def rendered_inputs(policy: LanguagePolicy, r: prompts.Rendered) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, state class) of rendered prompts."""
    ids, mask = policy.encode(r.texts, r.pieces)
    return ids, mask, torch.from_numpy(np.array(r.state_class, dtype=np.int64))


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
