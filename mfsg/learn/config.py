"""Training configuration: ``[env]``, ``[policy]``, ``[ppo]`` and ``[run]`` tables of one TOML file,
which may name a base recipe (``base = "FILE"``) and give only the fields it changes."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfsg.config import ConfigError, EnvConfig, check_int, check_prob, from_dict, to_dict
from mfsg.learn.device import check_device, check_precision
from mfsg.learn.imitation import ImitationConfig
from mfsg.learn.language_players import LanguagePlayersConfig, language_players_config
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
    from pretraining; ours may get it by imitation).

    ``init_checkpoint``: a folder of saved players (a run's ``final/``, ``imitated/`` or a committed
    checkpoint, relative to the repository root or absolute) whose weights the players start from,
    before any warm start; its players must be the ones this table builds. Several PPO recipes (seeds,
    τ) can so share one imitation."""

    kind: str = "language"
    mlp: MLPConfig = field(default_factory=MLPConfig)
    language: LanguagePlayersConfig = field(default_factory=LanguagePlayersConfig)
    warm_start: str = ""
    imitation: ImitationConfig = field(default_factory=ImitationConfig)
    init_checkpoint: str = ""

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ConfigError(f"policy.kind={self.kind!r} is invalid: allowed one of {', '.join(POLICY_KINDS)}")
        from mfsg.protocols import PROTOCOLS

        if self.warm_start not in ("", *PROTOCOLS):
            raise ConfigError(f"policy.warm_start={self.warm_start!r} is invalid: allowed '' or one of "
                              + ", ".join(PROTOCOLS))


@dataclass(frozen=True)
class RunConfig:
    """Iterations, batch, seeds, evaluation and checkpoint cadence, and the models' device and precision."""

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
    device: str = "cpu"  # players, critics and the PPO update: cpu | cuda | cuda:N | auto (mfsg.learn.device)
    precision: str = "fp32"  # fp32 | bf16 (bfloat16 autocast of the language players' forward passes)

    def __post_init__(self) -> None:
        check_device("run.device", self.device)
        check_precision("run.precision", self.precision)
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
    pol["language"] = language_players_config(pol.get("language", {}))
    pol["imitation"] = _section(ImitationConfig, pol.get("imitation", {}), "policy.imitation")
    return TrainConfig(
        env=from_dict(data.get("env", {})),
        policy=_section(PolicyConfig, pol, "policy"),
        ppo=_section(PPOConfig, data.get("ppo", {}), "ppo"),
        run=_section(RunConfig, data.get("run", {}), "run"),
    )


BASE = "base"  # the top-level key that names a config's base recipe


def _merged(base: dict, over: dict) -> dict:
    """``over`` applied to ``base``: tables merge key by key (recursively), any other value replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _base_path(path: Path, data: dict) -> Path | None:
    base = data.get(BASE)
    if base is None:
        return None
    if not (isinstance(base, str) and base):
        raise ConfigError(f"{BASE}={base!r} in {path} is invalid: allowed the path of a training config, "
                          "relative to the file")
    return (path.parent / base).resolve()


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:  # a syntax error, or bytes that are not UTF-8
        raise ConfigError(f"config={str(path)!r} is invalid: not a TOML file ({err})") from None
    except OSError as err:  # e.g. a folder
        raise ConfigError(f"config={str(path)!r} is invalid: cannot be read ({err.strerror or err})") from None


def config_base(path: str | Path) -> Path | None:
    """The file that the training config ``path`` names as its base recipe (None: it names none)."""
    path = Path(path)
    return _base_path(path, _read_toml(path))


def read_train_config_table(path: str | Path) -> dict:
    """The tables of the training config ``path`` with its base recipes applied.

    A config may name its base recipe (``base = "mfsg_default.toml"``, relative to the file) and give
    only the fields it changes: its tables are merged into the base's key by key, any other value
    replaces the base's. A base may have a base; a missing base or a cycle raises ConfigError
    naming the file."""
    path, chain, layers = Path(path), [], []
    if not path.exists():
        raise ConfigError(f"config={str(path)!r} is invalid: no such file")
    while path is not None:
        chain.append(path.resolve())
        data = _read_toml(path)
        base = _base_path(path, data)
        layers.append({k: v for k, v in data.items() if k != BASE})
        if base is not None and base in chain:
            cycle = " -> ".join(str(p) for p in [*chain[chain.index(base):], base])
            raise ConfigError(f"{BASE}={data[BASE]!r} in {path} is invalid: a cycle of bases ({cycle})")
        if base is not None and not base.exists():
            raise ConfigError(f"{BASE}={data[BASE]!r} in {path} is invalid: no such file {base}")
        path = base
    table: dict = {}
    for layer in reversed(layers):
        table = _merged(table, layer)
    return table


def load_train_config(path: str | Path) -> TrainConfig:
    """The validated :class:`TrainConfig` of a TOML file (its base recipes applied, see
    :func:`read_train_config_table`)."""
    return train_config_from_dict(read_train_config_table(path))


def changed_fields(cfg: TrainConfig, ref: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """The fields in which ``cfg`` differs from ``ref``: dotted name -> (value in ``ref``, value in
    ``cfg``). An option of ``[policy.language]`` left out counts as its default value."""
    from mfsg.learn.language_players import LanguagePlayersConfig

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    def table(c: TrainConfig) -> dict:
        d = train_config_to_dict(c)
        if isinstance(d["policy"].get("language"), dict):
            d["policy"]["language"] = {**dataclasses.asdict(LanguagePlayersConfig()), **d["policy"]["language"]}
        return flat(d)

    a, b = table(ref), table(cfg)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def train_config_to_dict(cfg: TrainConfig) -> dict:
    return {
        "env": to_dict(cfg.env),
        "policy": dataclasses.asdict(cfg.policy),
        "ppo": dataclasses.asdict(cfg.ppo),
        "run": {**dataclasses.asdict(cfg.run), "eval_ns": list(cfg.run.eval_ns), "eval_modes": list(cfg.run.eval_modes)},
    }
