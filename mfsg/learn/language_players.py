"""Language players for Stackelberg PPO: the model §5 policies of :mod:`mfsg.language.policy`
behind the :class:`~mfsg.learn.players.Player` interface.

Decision inputs are the SIE prompt's token ids, mask and candidate-validity class; the
scores are log π over the PAG candidate table (LLM4MAC Eqs. 9–10), re-ordered into the
fixed action sets of :mod:`mfsg.learn.actions`. The critic reads the centralized-state
prompt (one per episode; a follower's value is its UE's segment of it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from mfsg.config import ConfigError, EnvConfig, check_int
from mfsg.env import spec
from mfsg.language import prompts
from mfsg.language.attention_scale import SCALES
from mfsg.language.backbones import BackboneConfig
from mfsg.language.policy import Agents, PolicyConfig, StateBatch
from mfsg.language.policy import Player as LanguagePolicy
from mfsg.language.positions import SCHEMES
from mfsg.language.pretrain import default_checkpoint
from mfsg.language.scoring import ENGINES, unique_rows
from mfsg.learn import actions
from mfsg.learn.players import Inputs, Player

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LanguagePlayersConfig:
    """``[policy.language]`` options: ``pretrained`` starts from the local protocol-pretrained
    checkpoint (``checkpoint``, default ``experiments/checkpoints/lm-gpt2`` or, with ``positions``
    other than absolute, ``lm-gpt2-<positions>``); False is the no-pretraining ablation (random
    init of ``family``); ``no_sie`` is the SIE ablation. ``positions``: the position-id rule
    (:mod:`mfsg.language.positions`, reconstructed), which a pretrained checkpoint must match;
    ``attention_scale`` likewise (:mod:`mfsg.language.attention_scale`; with ``log_n`` the default
    checkpoint is ``lm-gpt2-<positions>-log_n``).
    ``engine`` and ``score_cache``: the candidate scorer and score memo of
    :class:`~mfsg.language.policy.PolicyConfig` (same results; speed only)."""

    pretrained: bool = True
    checkpoint: str = ""
    family: str = "gpt2"
    no_sie: bool = False
    positions: str = "absolute"
    attention_scale: str = "standard"
    reuse: bool = True
    dedup: bool = True
    critic_hidden: int = 64
    engine: str = PolicyConfig.engine
    score_cache: int = PolicyConfig.score_cache
    seed: int = 0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"policy.language.engine={self.engine!r} is invalid: allowed one of {', '.join(ENGINES)}")
        check_int("policy.language.score_cache", self.score_cache, 0)
        if self.positions not in SCHEMES:
            raise ConfigError(f"policy.language.positions={self.positions!r} is invalid: allowed one of "
                              f"{', '.join(SCHEMES)}")
        if self.attention_scale not in SCALES:
            raise ConfigError(f"policy.language.attention_scale={self.attention_scale!r} is invalid: allowed one of "
                              f"{', '.join(SCALES)}")

    def policy_config(self) -> PolicyConfig:
        if self.pretrained:
            path = self.checkpoint or str(REPOSITORY / default_checkpoint(self.family, self.positions, self.attention_scale))
            if not (Path(path) / "config.json").exists():
                raise ConfigError(f"policy.language.checkpoint={path!r} is invalid: no transformers checkpoint there "
                                  "(run `python -m mfsg.language.pretrain --out DIR` or set pretrained = false)")
            source = {"path": path}
        else:
            source = {"family": self.family}
        backbone = BackboneConfig(**source, seed=self.seed, positions=self.positions,
                                  attention_scale=self.attention_scale)
        return PolicyConfig(backbone=backbone, prompts=prompts.PromptConfig(no_sie=self.no_sie), reuse=self.reuse,
                            dedup=self.dedup, engine=self.engine, score_cache=self.score_cache,
                            critic_hidden=self.critic_hidden, seed=self.seed)


def _to_fixed_order(env_cfg: EnvConfig, policy: LanguagePolicy) -> torch.Tensor:
    """Index of each fixed action (model §2 codes) in the policy's candidate table."""
    acts = policy.table.action_tensor()
    if policy.kind == "leader":
        fixed = acts[:, 0]
    else:
        fixed = actions.follower_index(env_cfg, acts[:, 0], acts[:, 1])
    order = torch.empty(len(fixed), dtype=torch.long)
    order[fixed] = torch.arange(len(fixed))
    return order


class LanguagePlayer(Player):
    """One player (leader or unified follower) of a language :class:`Agents` pair."""

    def __init__(self, agents: Agents, role: str, env_cfg: EnvConfig):
        super().__init__()
        self.role, self.env_cfg = role, env_cfg
        self.policy: LanguagePolicy = agents.leader if role == "leader" else agents.follower
        self.pcfg = agents.pcfg
        self.register_buffer("order", _to_fixed_order(env_cfg, self.policy), persistent=False)

    def _render(self, obs_l: spec.LeaderObs, obs_f: spec.FollowerObs | None) -> prompts.Rendered:
        if self.role == "leader":
            return prompts.leader_prompts(obs_l, self.policy.lim, self.pcfg)
        return prompts.follower_prompts(obs_f, self.policy.lim, self.pcfg)

    def encode(self, obs_l, obs_f, e_idx, s_idx) -> Inputs:
        r = self._render(obs_l, obs_f)
        assert r.env == e_idx.tolist() and r.slot == s_idx.tolist(), "prompts are not in decision order"
        ids, mask = self.policy.encode(r.texts)
        return {"ids": ids, "mask": mask, "cls": torch.tensor(r.state_class, dtype=torch.long)}

    def scores(self, inputs: Inputs) -> torch.Tensor:
        width = int(inputs["mask"].sum(1).max()) if len(inputs["mask"]) else 0  # drop all-padding columns
        ids, mask = inputs["ids"][:, :width], inputs["mask"][:, :width]
        return self.policy.log_pi(ids, mask, inputs["cls"])[:, self.order]

    def sequence_scores(self, inputs: Inputs) -> torch.Tensor:
        """[M, A] Σ_j log P(w_j | s, w_<j) of each fixed action's text (LLM4MAC Eq. 9), not normalized
        over the candidates: the language model's own likelihood, as free-form decoding sees it."""
        width = int(inputs["mask"].sum(1).max()) if len(inputs["mask"]) else 0
        ids, mask = inputs["ids"][:, :width], inputs["mask"][:, :width]
        return self.policy.candidate_scores(ids, mask, inputs["cls"])[:, self.order]

    def encode_state(self, obs_l, obs_f, e_idx, s_idx) -> Inputs:
        with_dcm = self.role == "follower"
        sp = prompts.state_prompts(obs_l, obs_f, self.policy.lim, with_dcm=with_dcm)
        st = self.policy.encode_states(sp, obs_l.active.shape[1])
        rows = e_idx if s_idx is not None else torch.arange(len(st))
        out = {f.name: getattr(st, f.name)[rows] for f in dataclasses.fields(StateBatch)}
        if s_idx is not None:
            out["slot"] = s_idx
        return out

    def value(self, inputs: Inputs) -> torch.Tensor:
        """V of each row; a follower's rows repeat their episode's state, which is read once."""
        if self.role == "leader":
            return self.policy.critic(StateBatch(**{f.name: inputs[f.name] for f in dataclasses.fields(StateBatch)}))
        _, _, inv = unique_rows(inputs["ids"], inputs["mask"])
        first = torch.full((int(inv.max()) + 1,), len(inv), dtype=torch.long).scatter_reduce(
            0, inv, torch.arange(len(inv)), reduce="amin")
        st = StateBatch(**{f.name: inputs[f.name][first] for f in dataclasses.fields(StateBatch)})
        return self.policy.critic(st)[inv, inputs["slot"]]


def make_language_players(env_cfg: EnvConfig, options: dict) -> tuple[LanguagePlayer, LanguagePlayer]:
    """Leader and unified follower language players from ``[policy.language]`` options."""
    names = {f.name for f in dataclasses.fields(LanguagePlayersConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"policy.language.{unknown[0]} is not a known field: allowed {', '.join(sorted(names))}")
    cfg = LanguagePlayersConfig(**options)
    agents = Agents(env_cfg, cfg.policy_config())
    return LanguagePlayer(agents, "leader", env_cfg), LanguagePlayer(agents, "follower", env_cfg)
