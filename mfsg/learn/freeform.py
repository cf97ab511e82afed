"""Free-form (no-PAG) decoding of language players for evaluation (model §5, §6).

model §5: "Free-form generation without PAG exists as the ablation. Its invalid outputs are
counted, never silently repaired"; model §6: LLM-PL decodes free-form and "its invalid outputs
count". Each decision's action text is generated token by token with no grammar constraint
(:meth:`mfsg.language.policy.LanguagePolicy.decide` with ``decoding='free'``) and parsed with the PAG parser of
:mod:`mfsg.language.grammar`; an output that does not parse, or parses to an action that is not
valid in the state, is an *invalid output*. It is counted, and so that the episode can continue
the environment executes the documented :class:`FreeformConfig` fallback instead: DCM
``fallback_dcm`` for the leader, (UCM ``fallback_ucm``, IDLE) for a UE — IDLE being the only
access valid in every state (model §2.4). The fallback is what the *channel* sees; the valid-action
rate reports what the *model* produced.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from mfsg.config import ConfigError, EnvConfig, check_int
from mfsg.env import BatchedEnv, spec
from mfsg.language import grammar, prompts
from mfsg.learn.language_players import LanguagePlayer
from mfsg.learn.players import Player
from mfsg.metrics import episode_metrics

__all__ = ["FreeformConfig", "FreeformCounts", "FALLBACK_ACCESS", "free_decoding", "freeform_rollout",
           "evaluate_freeform"]

FALLBACK_ACCESS = spec.IDLE  # the only access action valid with any buffer (model §2.4)


@dataclass(frozen=True)
class FreeformConfig:
    """What the environment executes in place of an invalid free-form output (never counted as valid)."""

    fallback_dcm: int = 0
    fallback_ucm: int = 0

    def __post_init__(self) -> None:
        check_int("freeform.fallback_dcm", self.fallback_dcm, 0)
        check_int("freeform.fallback_ucm", self.fallback_ucm, 0)

    def check_env(self, env_cfg: EnvConfig) -> None:
        """Raise unless the fallbacks are messages of ``env_cfg``'s vocabularies."""
        check_int("freeform.fallback_dcm", self.fallback_dcm, 0, env_cfg.dcm_vocab - 1)
        check_int("freeform.fallback_ucm", self.fallback_ucm, 0, env_cfg.ucm_vocab - 1)


@dataclass
class FreeformCounts:
    """Decisions and invalid outputs of each player over a rollout."""

    leader_decisions: int = 0
    leader_invalid: int = 0
    follower_decisions: int = 0
    follower_invalid: int = 0

    @property
    def decisions(self) -> int:
        return self.leader_decisions + self.follower_decisions

    @property
    def invalid(self) -> int:
        return self.leader_invalid + self.follower_invalid

    def valid_rate(self, who: str = "all") -> float:
        """Fraction of outputs that parsed to a valid action (``who``: all, leader or follower)."""
        n, bad = {"all": (self.decisions, self.invalid), "leader": (self.leader_decisions, self.leader_invalid),
                  "follower": (self.follower_decisions, self.follower_invalid)}[who]
        return 1.0 - bad / n if n else 1.0


def _language(player: Player, name: str) -> LanguagePlayer:
    if not isinstance(player, LanguagePlayer):
        raise ConfigError(f"{name}={type(player).__name__} is invalid for free-form decoding: allowed language "
                          "players (policy.kind = 'language')")
    return player


@contextmanager
def free_decoding(player: LanguagePlayer) -> Iterator[None]:
    """Temporarily switch a language player's decoding to ``free`` (fusion off; it needs ``score``)."""
    policy = player.policy
    saved = policy.cfg
    policy.cfg = dataclasses.replace(saved, decoding="free", fusion_eps=None)
    try:
        yield
    finally:
        policy.cfg = saved


def _decide(player: LanguagePlayer, rendered: prompts.Rendered, greedy: bool, gen: torch.Generator):
    """(env idx, slot idx, action rows [M, n] with INVALID where the output was invalid)."""
    with free_decoding(player):
        choices = player.policy.decide(rendered, greedy, gen)
    return torch.tensor(rendered.env, dtype=torch.long), torch.tensor(rendered.slot, dtype=torch.long), choices.actions


@torch.no_grad()
def freeform_rollout(env: BatchedEnv, leader: Player, follower: Player, *, seed: int, greedy: bool = False,
                     no_comm: bool = False, cfg: FreeformConfig = FreeformConfig()) -> FreeformCounts:
    """Run ``env.E`` whole episodes with free-form decoding; count invalid outputs (model §5).

    ``no_comm`` (model §6 "No-communication") forces the executed UCMs and DCMs to 0 after parsing;
    validity is judged on the generated text as is.
    """
    lp, fp = _language(leader, "leader"), _language(follower, "follower")
    cfg.check_env(env.cfg)
    E, S = env.E, env.S
    gen = torch.Generator().manual_seed(seed)
    env.reset(seed)
    counts = FreeformCounts()
    while not env.done:
        obs_l = env.begin_tti()
        e, s, acts = _decide(lp, prompts.leader_prompts(obs_l, lp.policy.lim, lp.pcfg), greedy, gen)
        bad = acts[:, 0] == grammar.INVALID
        counts.leader_decisions += len(e)
        counts.leader_invalid += int(bad.sum())
        dcm = torch.zeros(E, S, dtype=torch.long)
        dcm[e, s] = torch.where(bad, cfg.fallback_dcm, acts[:, 0])
        if no_comm:
            dcm.zero_()
        obs_f = env.deliver(dcm)
        e, s, acts = _decide(fp, prompts.follower_prompts(obs_f, fp.policy.lim, fp.pcfg), greedy, gen)
        bad = acts[:, 0] == grammar.INVALID
        counts.follower_decisions += len(e)
        counts.follower_invalid += int(bad.sum())
        ucm = torch.zeros(E, S, dtype=torch.long)
        access = torch.zeros(E, S, dtype=torch.long)
        ucm[e, s] = torch.where(bad, cfg.fallback_ucm, acts[:, 0])
        access[e, s] = torch.where(bad, FALLBACK_ACCESS, acts[:, 1])
        if no_comm:
            ucm.zero_()
        env.end_tti(ucm, access)
    return counts


def evaluate_freeform(leader: Player, follower: Player, env_cfg: EnvConfig, *, episodes: int, seed: int,
                      no_comm: bool = False, greedy: bool = False, cfg: FreeformConfig = FreeformConfig()) -> dict:
    """model §7 metrics under free-form decoding, with the same keys as
    :func:`mfsg.learn.train.evaluate_players` (``valid_action_rate`` from the real parse), plus
    ``leader_valid_rate``, ``follower_valid_rate`` and ``invalid_outputs`` (per episode)."""
    env = BatchedEnv(env_cfg, episodes, seed=seed)
    t0 = time.perf_counter()
    counts = freeform_rollout(env, leader, follower, seed=seed, greedy=greedy, no_comm=no_comm, cfg=cfg)
    elapsed = time.perf_counter() - t0
    out = episode_metrics(env)
    out["decision_latency_ms"] = 1e3 * elapsed / max(1, env_cfg.horizon)  # as evaluate_players: one batched TTI
    out["decisions_per_s"] = counts.decisions / elapsed
    out["valid_action_rate"] = counts.valid_rate()
    out["leader_valid_rate"] = counts.valid_rate("leader")
    out["follower_valid_rate"] = counts.valid_rate("follower")
    out["invalid_outputs"] = counts.invalid / episodes
    return out
