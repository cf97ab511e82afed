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
from mfsg.language.backbones import BackboneConfig
from mfsg.language.policy import LanguagePolicy, LanguagePolicyConfig, PolicyOptions, StateBatch
from mfsg.language.pretrain import default_checkpoint
from mfsg.language.scoring import unique_rows
from mfsg.learn import actions
from mfsg.learn.players import Inputs, Player
from mfsg.seeds import derive

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LanguagePlayersConfig(PolicyOptions):
    """``[policy.language]``: where the players' weights come from, and the
    :class:`~mfsg.language.policy.PolicyOptions` of their policies (engine, score memo, critic
    width; defined there, once).

    ``pretrained`` starts from the local protocol-pretrained checkpoint (``checkpoint``, default
    ``experiments/checkpoints/lm-<family>`` or, with ``positions`` other than absolute,
    ``lm-<family>-<positions>``, with ``log_n`` ``lm-<family>-<positions>-log_n``); False is the
    no-pretraining ablation (random init of ``family``). ``no_sie`` is the SIE ablation.
    ``positions`` and ``attention_scale`` are the backbone's position-id rule and attention scale
    (:class:`~mfsg.language.backbones.BackboneConfig`, reconstructed), which a pretrained
    checkpoint must match. ``seed``: the backbones' initialization seed (without a checkpoint)."""

    pretrained: bool = True
    checkpoint: str = ""
    family: str = BackboneConfig.family
    no_sie: bool = False
    positions: str = BackboneConfig.positions
    attention_scale: str = BackboneConfig.attention_scale
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("policy.language.seed", self.seed, 0)
        try:  # the backbone's own checks, reported under this table's name
            BackboneConfig(family=self.family, positions=self.positions, attention_scale=self.attention_scale)
        except ConfigError as err:
            raise ConfigError(str(err).replace("backbone.", "policy.language.", 1)) from None

    @classmethod
    def _where(cls) -> str:
        return "policy.language"

    def policy_config(self) -> LanguagePolicyConfig:
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
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(PolicyOptions)}
        return LanguagePolicyConfig(backbone=backbone, prompts=prompts.PromptConfig(no_sie=self.no_sie), **options)


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
    """One player (leader or unified follower) whose policy is a
    :class:`~mfsg.language.policy.LanguagePolicy` (``policy``) with its own parameters."""

    def __init__(self, role: str, env_cfg: EnvConfig, cfg: LanguagePolicyConfig, backbone: BackboneConfig | None = None,
                 value_per_ue: bool = False):
        super().__init__()
        self.role, self.env_cfg = role, env_cfg
        self.value_per_ue = role == "follower" or value_per_ue  # the leader's: ppo.leader_credit = "per_ue"
        self.policy = LanguagePolicy(role, env_cfg, cfg, backbone, value_per_ue=self.value_per_ue)
        self.pcfg = cfg.prompts
        self.register_buffer("order", _to_fixed_order(env_cfg, self.policy), persistent=False)

    def parameters_changed(self) -> None:
        self.policy.parameters_changed()

    def forget_cached(self) -> None:
        self.policy.forget_scores()

    def _render(self, obs_l: spec.LeaderObs, obs_f: spec.FollowerObs | None) -> prompts.Rendered:
        if self.role == "leader":
            return prompts.leader_prompts(obs_l, self.policy.lim, self.pcfg)
        return prompts.follower_prompts(obs_f, self.policy.lim, self.pcfg)

    def encode(self, obs_l, obs_f, e_idx, s_idx) -> Inputs:
        r = self._render(obs_l, obs_f)
        assert r.env == e_idx.tolist() and r.slot == s_idx.tolist(), "prompts are not in decision order"
        return self.inputs_of(r.texts, r.state_class, r.pieces)

    def inputs_of(self, texts: list[str], state_class, pieces: list[tuple[str, ...]] | None = None) -> Inputs:
        """Decision inputs of prompt texts with their candidate-validity classes (``pieces``: see
        :meth:`mfsg.language.policy.LanguagePolicy.encode`)."""
        ids, mask = self.policy.encode(texts, pieces)
        return {"ids": ids, "mask": mask, "cls": torch.as_tensor(state_class, dtype=torch.long)}

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
        rows = e_idx if s_idx is not None else torch.arange(st.ids.shape[0])
        out = {f.name: getattr(st, f.name)[rows] for f in dataclasses.fields(StateBatch)}
        if s_idx is not None:
            out["slot"] = s_idx
        return out

    def value(self, inputs: Inputs) -> torch.Tensor:
        """V of each row; a follower's rows repeat their episode's state, which is read once."""
        if not self.value_per_ue:
            return self.policy.critic(StateBatch(**{f.name: inputs[f.name] for f in dataclasses.fields(StateBatch)}))
        _, _, inv = unique_rows(inputs["ids"], inputs["mask"])
        first = torch.full((int(inv.max()) + 1,), len(inv), dtype=torch.long, device=inv.device).scatter_reduce(
            0, inv, torch.arange(len(inv), device=inv.device), reduce="amin")
        st = StateBatch(**{f.name: inputs[f.name][first] for f in dataclasses.fields(StateBatch)})
        return self.policy.critic(st)[inv, inputs["slot"]]


def make_language_players(env_cfg: EnvConfig, cfg: LanguagePlayersConfig | dict,
                          leader_value_per_ue: bool = False) -> tuple[LanguagePlayer, LanguagePlayer]:
    """Leader and unified follower language players of ``[policy.language]`` (a config, or its
    table as a dict). Without a checkpoint the follower's backbone is initialized from its own
    seed, derived from the leader's. ``leader_value_per_ue``: the leader's critic values each UE."""
    if isinstance(cfg, dict):
        cfg = language_players_config(cfg)
    return language_players(env_cfg, cfg.policy_config(), leader_value_per_ue)


def language_players(env_cfg: EnvConfig, pcfg: LanguagePolicyConfig,
                     leader_value_per_ue: bool = False) -> tuple[LanguagePlayer, LanguagePlayer]:
    """Leader and unified follower playing the language policy ``pcfg``, each with its own
    parameters (a backbone built from sizes initializes the follower from a seed derived from
    the leader's)."""
    b = pcfg.backbone
    follower_b = b if b.path is not None else dataclasses.replace(b, seed=derive(b.seed, "follower-backbone"))
    return (LanguagePlayer("leader", env_cfg, pcfg, b, value_per_ue=leader_value_per_ue),
            LanguagePlayer("follower", env_cfg, pcfg, follower_b))


def language_players_config(options: dict) -> LanguagePlayersConfig:
    """The :class:`LanguagePlayersConfig` of a ``[policy.language]`` table (unknown keys name the field)."""
    names = {f.name for f in dataclasses.fields(LanguagePlayersConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"policy.language.{unknown[0]} is not a known field: allowed {', '.join(sorted(names))}")
    return LanguagePlayersConfig(**options)
