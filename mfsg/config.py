"""Typed, validated configuration (model §1 scenario, §3 churn, §4 utilities).

Every field is checked at construction; a bad value raises :class:`ConfigError`
with a one-line message naming the field, the value and what is allowed.
Configs load from and dump to TOML (``[env]``, ``[env.churn]``, ``[env.utility]``).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "ChurnConfig",
    "UtilityConfig",
    "EnvConfig",
    "CHURN_KINDS",
    "PLACEMENTS",
    "from_dict",
    "load_toml",
    "dump_toml",
]

CHURN_KINDS = ("fixed", "per_episode", "markov", "trace")
PLACEMENTS = ("lowest", "random")


class ConfigError(ValueError):
    """A configuration value is outside what is allowed; the message names the field."""


class UsageError(ConfigError):
    """A command-line value is not allowed (the message names the option and the allowed values)."""


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{name}={value!r} is invalid: allowed {allowed}")


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    """Raise unless ``value`` is an int in [lo, hi]."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and value >= lo and (hi is None or value <= hi)
    if not ok:
        _fail(name, value, f"an integer in [{lo}, {hi if hi is not None else 'inf'}]")


def check_prob(name: str, value: Any, *, open_low: bool = False, open_high: bool = False) -> None:
    """Raise unless ``value`` is a finite real probability (bounds optionally open)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if open_low else value >= 0) and (value < 1 if open_high else value <= 1)
    if not ok:
        lo, hi = "(0" if open_low else "[0", "1)" if open_high else "1]"
        _fail(name, value, f"a real number in {lo}, {hi}")


def check_real(name: str, value: Any, lo: float, hi: float | None = None) -> None:
    """Raise unless ``value`` is a finite real number in [lo, hi]."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and value >= lo and (hi is None or value <= hi)):
        _fail(name, value, f"a real number in [{lo}, {hi if hi is not None else 'inf'}]")


def check_nonneg(name: str, value: Any) -> None:
    """Raise unless ``value`` is a finite real number >= 0."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and value >= 0):
        _fail(name, value, "a finite real number >= 0")


@dataclass(frozen=True)
class ChurnConfig:
    """Which UE slots are active (model §3).

    ``kind``: ``fixed`` uses ``n``; ``per_episode`` draws N in [n_min, n_max] at reset;
    ``markov`` also starts uniform in [n_min, n_max], then each TTI every active UE leaves
    with ``p_leave`` (never below n_min) and one UE joins with ``p_join`` (never above n_max);
    ``trace`` replays ``schedule``, one list of active slot indices per TTI.

    Slot placement (reconstructed; model §3 says only that a joiner may reuse a freed slot):
    ``slots`` is the number of UE slots, i.e. of distinct UE labels "UE 1" ... "UE slots"
    (default: the fewest the process needs, :attr:`n_slots`); ``placement = "lowest"``
    puts the UEs at reset and every joiner in the lowest free slots, ``"random"`` in
    uniformly random free slots (so that with ``slots > n_max`` every label is seen).
    """

    kind: str = "per_episode"
    n: int = 4
    n_min: int = 2
    n_max: int = 6
    p_join: float = 0.1
    p_leave: float = 0.05
    schedule: tuple[tuple[int, ...], ...] = ()
    slots: int | None = None
    placement: str = "lowest"

    def __post_init__(self) -> None:
        if self.kind not in CHURN_KINDS:
            _fail("churn.kind", self.kind, "one of " + ", ".join(CHURN_KINDS))
        if self.placement not in PLACEMENTS:
            _fail("churn.placement", self.placement, "one of " + ", ".join(PLACEMENTS))
        check_int("churn.n", self.n, 1)
        check_int("churn.n_min", self.n_min, 1)
        check_int("churn.n_max", self.n_max, self.n_min)
        check_prob("churn.p_join", self.p_join)
        check_prob("churn.p_leave", self.p_leave)
        if not isinstance(self.schedule, (list, tuple)) or not all(isinstance(s, (list, tuple)) for s in self.schedule):
            _fail("churn.schedule", self.schedule, "a list of active-slot lists")
        sched = tuple(tuple(s) for s in self.schedule)
        object.__setattr__(self, "schedule", sched)
        if self.kind == "trace":
            if not sched:
                _fail("churn.schedule", self.schedule, "a non-empty list of active-slot lists for kind='trace'")
            for t, slots in enumerate(sched):
                for s in slots:
                    check_int(f"churn.schedule[{t}]", s, 0)
                if len(set(slots)) != len(slots):
                    _fail(f"churn.schedule[{t}]", list(slots), "distinct slot indices")
        if self.slots is not None:
            check_int("churn.slots", self.slots, self._slots_needed)

    @property
    def n_slots(self) -> int:
        """Number of UE slots (``slots``, or the fewest the process needs)."""
        return self._slots_needed if self.slots is None else self.slots

    @property
    def random_placement(self) -> bool:
        return self.placement == "random"

    @property
    def _slots_needed(self) -> int:
        if self.kind == "fixed":
            return self.n
        if self.kind == "trace":
            return 1 + max((s for slots in self.schedule for s in slots), default=0)
        return self.n_max


@dataclass(frozen=True)
class UtilityConfig:
    """Players' utilities (model §4); all zeros for kappa_buf, c_tx, beta_fair is LLM4MAC's team game."""

    reward_scale: float = 1.5
    kappa_buf: float = 0.1
    c_tx: float = 0.05
    beta_fair: float = 2.0
    gamma: float = 0.99

    def __post_init__(self) -> None:
        check_nonneg("utility.reward_scale", self.reward_scale)
        check_nonneg("utility.kappa_buf", self.kappa_buf)
        check_nonneg("utility.c_tx", self.c_tx)
        check_nonneg("utility.beta_fair", self.beta_fair)
        check_prob("utility.gamma", self.gamma, open_low=True)


@dataclass(frozen=True)
class EnvConfig:
    """The uplink scenario (model §1). ``dcm_vocab=None`` means K + 2.

    ``p_arrival`` is a scalar or one value per UE slot (a tuple of length ``n_slots``).
    """

    n_rbg: int = 2
    buffer: int = 15
    horizon: int = 24
    p_arrival: float | tuple[float, ...] = 0.48
    tbler: float = 1e-3
    ucm_vocab: int = 2
    dcm_vocab: int | None = None
    churn: ChurnConfig = field(default_factory=ChurnConfig)
    utility: UtilityConfig = field(default_factory=UtilityConfig)

    def __post_init__(self) -> None:
        check_int("n_rbg", self.n_rbg, 1, 64)
        check_int("buffer", self.buffer, 1, 4096)
        check_int("horizon", self.horizon, 1)
        check_prob("tbler", self.tbler, open_high=True)
        check_int("ucm_vocab", self.ucm_vocab, 1)
        if self.dcm_vocab is None:
            object.__setattr__(self, "dcm_vocab", self.n_rbg + 2)
        check_int("dcm_vocab", self.dcm_vocab, 1)
        if not isinstance(self.churn, ChurnConfig):
            _fail("churn", self.churn, "a ChurnConfig")
        if not isinstance(self.utility, UtilityConfig):
            _fail("utility", self.utility, "a UtilityConfig")
        if isinstance(self.p_arrival, (list, tuple)):
            pa = tuple(self.p_arrival)
            if len(pa) != self.n_slots:
                _fail("p_arrival", list(pa), f"a scalar or a list of {self.n_slots} probabilities (one per UE slot)")
            for i, p in enumerate(pa):
                check_prob(f"p_arrival[{i}]", p)
            object.__setattr__(self, "p_arrival", pa)
        else:
            check_prob("p_arrival", self.p_arrival)
        if self.churn.kind == "trace" and len(self.churn.schedule) < self.horizon:
            _fail("churn.schedule", f"<{len(self.churn.schedule)} entries>", f"at least horizon={self.horizon} entries")

    @property
    def n_slots(self) -> int:
        return self.churn.n_slots

    @property
    def n_access(self) -> int:
        """Access actions: 0 = IDLE, 1..K = TX on RBG k, K+1 = DELETE (model §2.4)."""
        return self.n_rbg + 2

    @property
    def delete_action(self) -> int:
        return self.n_rbg + 1

    def arrival_probs(self) -> tuple[float, ...]:
        """Per-slot arrival probabilities."""
        if isinstance(self.p_arrival, tuple):
            return self.p_arrival
        return (float(self.p_arrival),) * self.n_slots

    def replace(self, **changes: Any) -> EnvConfig:
        return dataclasses.replace(self, **changes)



def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        _fail(prefix.rstrip(".") or "env", data, "a table of fields")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{prefix}{key} is not a known field: allowed {', '.join(sorted(names))}")
    return cls(**data)


def from_dict(data: Mapping[str, Any]) -> EnvConfig:
    """Build an :class:`EnvConfig` from a nested mapping (the ``[env]`` table of a TOML file)."""
    data = dict(data)
    churn = _build(ChurnConfig, data.pop("churn", {}), "churn.")
    utility = _build(UtilityConfig, data.pop("utility", {}), "utility.")
    return _build(EnvConfig, {**data, "churn": churn, "utility": utility}, "")


def to_dict(cfg: EnvConfig) -> dict[str, Any]:
    """Nested plain-data form of a config (inverse of :func:`from_dict`)."""
    out = dataclasses.asdict(cfg)
    out["churn"]["schedule"] = [list(s) for s in cfg.churn.schedule]
    if isinstance(cfg.p_arrival, tuple):
        out["p_arrival"] = list(cfg.p_arrival)
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; the ``env`` table (if any) is returned as an :class:`EnvConfig`."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    if "env" in data:
        data["env"] = from_dict(data["env"])
    return data


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(cfg: EnvConfig) -> str:
    """TOML text of an :class:`EnvConfig` under ``[env]``; ``load_toml`` reads it back."""
    d = to_dict(cfg)
    churn, utility = d.pop("churn"), d.pop("utility")
    lines = ["[env]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in d.items() if v is not None]
    lines += ["", "[env.churn]"] + [f"{k} = {_toml_value(v)}" for k, v in churn.items() if v is not None]
    lines += ["", "[env.utility]"] + [f"{k} = {_toml_value(v)}" for k, v in utility.items()]
    return "\n".join(lines) + "\n"
