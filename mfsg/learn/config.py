"""Training configuration: ``[env]``, ``[policy]``, ``[ppo]`` and ``[run]`` tables of one TOML file."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfsg.config import ConfigError, EnvConfig, check_int, check_prob, from_dict, to_dict
from mfsg.learn.imitation import ImitationConfig
from mfsg.learn.mappo import MLPConfig
from mfsg.learn.ppo import PPOConfig

POLICY_KINDS = ("mlp", "language")
EVAL_MODES = ("sampled", "greedy")


@dataclass(frozen=True)
class PolicyConfig:
    """Which players to train: ``mlp`` (symbolic MAPPO) or ``language`` (model §5).

    ``warm_start`` names a rule-based protocol (e.g. ``sr-grant``) that both players imitate
    before PPO starts (:mod:`mfsg.learn.imitation`, options in ``imitation``); "" starts PPO
    from the players as built (reconstructed choice: the papers' LLMs bring protocol knowledge
    from pretraining; ours may get it by imitation)."""

    kind: str = "language"
    mlp: MLPConfig = field(default_factory=MLPConfig)
    language: dict = field(default_factory=dict)  # options of mfsg.learn.language_players.LanguagePlayersConfig
    warm_start: str = ""
    imitation: ImitationConfig = field(default_factory=ImitationConfig)

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ConfigError(f"policy.kind={self.kind!r} is invalid: allowed one of {', '.join(POLICY_KINDS)}")
        from mfsg.protocols import PROTOCOLS

        if self.warm_start not in ("", *PROTOCOLS):
            raise ConfigError(f"policy.warm_start={self.warm_start!r} is invalid: allowed '' or one of "
                              + ", ".join(PROTOCOLS))


@dataclass(frozen=True)
class RunConfig:
    """Iterations, batch, seeds, evaluation and checkpoint cadence."""

    iterations: int = 100
    n_envs: int = 64  # episodes per iteration
    seed: int = 0
    threads: int = 2
    no_comm: bool = False  # model §6 "No-communication": UCM/DCM forced to 0
    eval_every: int = 10
    eval_ns: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    eval_p_arrival: float = 0.48
    eval_episodes: int = 64
    eval_seed: int = 12345  # the same evaluation episodes at every iteration (and for `mfsg simulate --seed`)
    eval_modes: tuple[str, ...] = ("sampled",)  # "sampled" (the policy as trained) and/or "greedy" (argmax)
    checkpoint_every: int = 5

    def __post_init__(self) -> None:
        check_int("run.iterations", self.iterations, 1)
        check_int("run.n_envs", self.n_envs, 1)
        check_int("run.seed", self.seed, 0)
        check_int("run.threads", self.threads, 1)
        check_int("run.eval_every", self.eval_every, 1)
        check_int("run.eval_episodes", self.eval_episodes, 1)
        check_int("run.checkpoint_every", self.checkpoint_every, 1)
        check_int("run.eval_seed", self.eval_seed, 0)
        check_prob("run.eval_p_arrival", self.eval_p_arrival)
        object.__setattr__(self, "eval_modes", tuple(self.eval_modes))
        for i, mode in enumerate(self.eval_modes):
            if mode not in EVAL_MODES:
                raise ConfigError(f"run.eval_modes[{i}]={mode!r} is invalid: allowed one of {', '.join(EVAL_MODES)}")
        object.__setattr__(self, "eval_ns", tuple(self.eval_ns))
        for i, n in enumerate(self.eval_ns):
            check_int(f"run.eval_ns[{i}]", n, 1)


@dataclass(frozen=True)
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    run: RunConfig = field(default_factory=RunConfig)


def _section(cls, data: dict, name: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]} is not a known field: allowed {', '.join(sorted(names))}")
    return cls(**data)


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(data) - {"env", "policy", "ppo", "run"})
    if unknown:
        raise ConfigError(f"[{unknown[0]}] is not a known table: allowed env, policy, ppo, run")
    pol = dict(data.get("policy", {}))
    pol["mlp"] = _section(MLPConfig, pol.get("mlp", {}), "policy.mlp")
    pol["imitation"] = _section(ImitationConfig, pol.get("imitation", {}), "policy.imitation")
    return TrainConfig(
        env=from_dict(data.get("env", {})),
        policy=_section(PolicyConfig, pol, "policy"),
        ppo=_section(PPOConfig, data.get("ppo", {}), "ppo"),
        run=_section(RunConfig, data.get("run", {}), "run"),
    )


def load_train_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config={str(path)!r} is invalid: no such file")
    with open(path, "rb") as fh:
        return train_config_from_dict(tomllib.load(fh))


def train_config_to_dict(cfg: TrainConfig) -> dict:
    return {
        "env": to_dict(cfg.env),
        "policy": dataclasses.asdict(cfg.policy),
        "ppo": dataclasses.asdict(cfg.ppo),
        "run": {**dataclasses.asdict(cfg.run), "eval_ns": list(cfg.run.eval_ns), "eval_modes": list(cfg.run.eval_modes)},
    }
