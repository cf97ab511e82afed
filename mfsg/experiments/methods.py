"""The compared methods (model §6) evaluated in one scenario with the same model §7 metrics.

Rule-based baselines run through :func:`mfsg.protocols.run_protocol` and
:func:`mfsg.metrics.summarize`; learned players through :func:`mfsg.learn.train.load_players`
and :func:`mfsg.learn.train.evaluate_players` (or :func:`mfsg.learn.freeform.evaluate_freeform`
for free-form decoding). Every method of a scenario sees the same env draws (same seed and
episode count), and ``genie_fraction`` divides by the genie's throughput on those draws.
``team_return`` is the undiscounted episode sum of the team reward (LLM4MAC Eq. 2), from the
episode counters through :func:`mfsg.env.spec.team_reward`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.env import spec
from mfsg.experiments.common import checkpoint_path
from mfsg.learn import device as devices
from mfsg.metrics import summarize
from mfsg.protocols import make_protocol, run_protocol

__all__ = ["Method", "METHODS", "BASELINES", "LEARNED", "Evaluator", "scenario"]

ROW_KEYS = ("throughput", "genie_fraction", "jain", "collision_rate", "idle_rate", "duplicate_rate", "latency_mean",
            "signaling_rate", "valid_action_rate", "decision_latency_ms", "decisions_per_s", "team_return")


@dataclass(frozen=True)
class Method:
    """A compared method: a protocol (``protocol``) or a checkpoint key with evaluation options."""

    name: str
    protocol: str = ""
    checkpoint: str = ""
    no_comm: bool = False
    decoding: str = "pag"


METHODS = {m.name: m for m in (
    Method("genie", protocol="genie"),
    Method("sr-grant", protocol="sr-grant"),
    Method("sr-grant-speculative", protocol="sr-grant-speculative"),  # SR/grant's messages, free RBGs granted too
    Method("aloha", protocol="aloha"),
    Method("mfsg", checkpoint="mfsg"),  # the learned MFSG policy, PAG decoding (model §5)
    Method("mfsg-speculative", checkpoint="mfsg_speculative"),  # PPO from the clone of SR/grant with speculative grants
    Method("no-comm", checkpoint="mfsg", no_comm=True),  # model §6: the learned policy, UCM/DCM forced to 0
    Method("mfsg-free", checkpoint="mfsg", decoding="free"),  # the no-PAG ablation (model §6)
    Method("mappo", checkpoint="mappo"),  # Sym. MAPPO, trained for one N
    Method("llm-pl", checkpoint="llm_pl", decoding="free"),  # imitation only, decoding free-form (model §6)
)}
BASELINES = tuple(n for n, m in METHODS.items() if m.protocol)
LEARNED = tuple(n for n, m in METHODS.items() if m.checkpoint)
CONVENTIONAL = ("sr-grant", "aloha")  # the conventional (human-crafted) baselines of the papers' claims


def scenario(env_cfg: EnvConfig, n_ue: int, p_arrival: float, churn: str = "fixed", *, n_min: int = 2,
             p_join: float = 0.1, p_leave: float = 0.05) -> EnvConfig:
    """The evaluation scenario: ``churn`` fixed (N = ``n_ue``) or markov (N in [n_min, n_ue], model §3)."""
    if churn == "fixed":
        c = ChurnConfig(kind="fixed", n=n_ue)
    else:
        c = ChurnConfig(kind=churn, n=n_ue, n_min=n_min, n_max=n_ue, p_join=p_join, p_leave=p_leave)
    return dataclasses.replace(env_cfg, churn=c, p_arrival=p_arrival)


class Evaluator:
    """Evaluates methods; loads each checkpoint once. ``checkpoints`` maps keys to paths ("" = unavailable)."""

    def __init__(self, checkpoints: dict[str, str], field: str, *, freeform=None, device: str | None = None):
        self.paths = checkpoints
        self.device = device or devices.current()  # where learned players run (the command's --device)
        self.field = field
        self.freeform = freeform
        self._players: dict[str, tuple] = {}
        self._genie: dict[tuple, dict] = {}

    def __getstate__(self) -> dict:
        """Pickled (sent to another process by an executor) without its caches: the receiver loads again."""
        return {**self.__dict__, "_players": {}, "_genie": {}}

    def available(self, method: str | Method) -> bool:
        m = METHODS[method] if isinstance(method, str) else method
        return bool(m.protocol) or bool(self.paths.get(m.checkpoint, ""))

    def players(self, key: str) -> tuple:
        """(leader, follower, TrainConfig) of checkpoint ``key`` (loaded once)."""
        if key not in self._players:
            from mfsg.learn.train import load_players

            path = self.paths.get(key, "")
            if not path:
                raise ConfigError(f"{self.field}.{key}='' is invalid here: allowed a checkpoint path")
            self._players[key] = load_players(checkpoint_path(f"{self.field}.{key}", path), device=self.device)
        return self._players[key]

    def check_paths(self, methods) -> None:
        """Fail early (one line, naming the field and the path) on a named checkpoint that is missing."""
        for name in methods:
            key = (METHODS[name] if isinstance(name, str) else name).checkpoint
            if key and self.paths.get(key, ""):
                checkpoint_path(f"{self.field}.{key}", self.paths[key])

    def usable(self, methods, env_cfg: EnvConfig) -> list:
        """The ``methods`` (names or :class:`Method`) that can run: named checkpoints exist (else a
        one-line error), unavailable ones ("" path) are left out, learned ones fit ``env_cfg``."""
        self.check_paths(methods)
        out = [m for m in methods if self.available(m)]
        for m in out:
            self.check_compatible(m, env_cfg)
        return out

    def check_compatible(self, method: str | Method, env_cfg: EnvConfig) -> None:
        """A learned method is evaluated in its training scenario's K, B, T, vocabularies and utilities."""
        key = (METHODS[method] if isinstance(method, str) else method).checkpoint
        if not key:
            return
        trained = self.players(key)[2].env
        for f in ("n_rbg", "buffer", "horizon", "ucm_vocab", "dcm_vocab", "utility", "tbler"):
            if getattr(trained, f) != getattr(env_cfg, f):
                raise ConfigError(f"{self.field}.{key}={self.paths[key]!r} is invalid: trained with env.{f}="
                                  f"{getattr(trained, f)!r}, the experiment uses {getattr(env_cfg, f)!r}")

    def genie(self, env_cfg: EnvConfig, episodes: int, seed: int) -> dict:
        k = (repr(env_cfg), episodes, seed)
        if k not in self._genie:
            self._genie[k] = run_protocol(env_cfg, make_protocol("genie"), episodes, seed)
        return self._genie[k]

    def evaluate(self, method: str | Method, env_cfg: EnvConfig, *, episodes: int, seed: int,
                 greedy: bool = False) -> dict:
        """One row of model §7 metrics (means; ``throughput_ci95`` for baselines)."""
        m = METHODS[method] if isinstance(method, str) else method
        genie = self.genie(env_cfg, episodes, seed)
        if m.protocol:
            est = summarize(run_protocol(env_cfg, make_protocol(m.protocol, seed=seed), episodes, seed), genie)
            row = {k: v.mean for k, v in est.items()}
            row["throughput_ci95"] = est["throughput"].ci95
            row["valid_action_rate"] = 1.0  # rule-based actions are valid by construction (the env checks them)
        else:
            row = self._learned(m, env_cfg, episodes, seed, greedy)
            g = float(genie["delivered"].double().mean()) / env_cfg.horizon
            row["genie_fraction"] = row["throughput"] / g if g > 0 else float("nan")
        u = env_cfg.utility
        row["team_return"] = float(spec.team_reward(u, row["throughput"] * env_cfg.horizon, row["deleted_unreceived"]))
        return {k: row.get(k) for k in ROW_KEYS} | {"throughput_ci95": row.get("throughput_ci95")}

    def _learned(self, m: Method, env_cfg: EnvConfig, episodes: int, seed: int, greedy: bool) -> dict:
        from mfsg.learn.train import evaluate_players

        leader, follower, cfg = self.players(m.checkpoint)
        no_comm = m.no_comm or cfg.run.no_comm
        if m.decoding == "free":
            from mfsg.learn.freeform import FreeformConfig, evaluate_freeform

            return evaluate_freeform(leader, follower, env_cfg, episodes=episodes, seed=seed, no_comm=no_comm,
                                     greedy=greedy, cfg=self.freeform or FreeformConfig())
        return evaluate_players(leader, follower, env_cfg, episodes=episodes, seed=seed, no_comm=no_comm,
                                greedy=greedy)


def relative_gain(ours: float, theirs: float) -> float:
    """(ours − theirs) / theirs, NaN when theirs is 0."""
    return (ours - theirs) / theirs if theirs else float("nan")


def resolve(path: str) -> str:
    """An absolute form of a command-line path (configs' own paths are relative to the repository)."""
    return str(Path(path).resolve())
