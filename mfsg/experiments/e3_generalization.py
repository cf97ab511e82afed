"""E3: generalization without retraining (MFSG paper abstract; model §1, §3): the players trained
with N in 2..6 (per-episode churn) evaluated at every fixed N including the unseen N = 7 and 8,
and under Markov churn *within* episodes (UEs join and leave mid-episode, never seen in training).

Figures are fractions of the genie's throughput on the same draws, so scenarios of different load
compare. The summary gives each method's mean ``genie_fraction`` on the seen N, the unseen N and
under Markov churn, and the relative change from seen to unseen / Markov.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mfsg.config import ConfigError, EnvConfig, check_int, check_prob
from mfsg.experiments.common import (
    Results,
    check_bool,
    check_checkpoints,
    check_list,
    check_names,
    check_train_config,
    checkpoint_status,
    new_figure,
    progress,
)
from mfsg.experiments.executor import Unit, current
from mfsg.experiments.methods import METHODS, Evaluator, Method, relative_gain, scenario

NAME = "e3"
CHECKPOINT_KEYS = ("mfsg", "mfsg_speculative", "mappo", "llm_pl")
METRICS = ("genie_fraction", "throughput", "jain")


@dataclass(frozen=True)
class E3Config:
    """Seen and unseen N, the Markov churn scenario, methods, episodes and checkpoints."""

    seen_n: tuple[int, ...] = (2, 3, 4, 5, 6)
    unseen_n: tuple[int, ...] = (7, 8)
    p_arrival: float = 0.48
    markov_n_min: int = 2
    markov_n_max: int = 8
    markov_p_join: float = 0.2
    markov_p_leave: float = 0.05
    methods: tuple[str, ...] = ("genie", "sr-grant", "aloha", "mfsg", "mappo")
    baseline_episodes: int = 1000
    learned_episodes: int = 64
    seed: int = 0
    greedy: bool = False
    checkpoints: dict = field(default_factory=dict)
    variants: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        one_n = lambda f, v: check_int(f, v, 1, 64)  # noqa: E731
        object.__setattr__(self, "seen_n", check_list("e3.seen_n", self.seen_n, one_n))
        object.__setattr__(self, "unseen_n", check_list("e3.unseen_n", self.unseen_n, one_n))
        check_prob("e3.p_arrival", self.p_arrival)
        check_int("e3.markov_n_min", self.markov_n_min, 1)
        check_int("e3.markov_n_max", self.markov_n_max, self.markov_n_min, 64)
        check_prob("e3.markov_p_join", self.markov_p_join)
        check_prob("e3.markov_p_leave", self.markov_p_leave)
        object.__setattr__(self, "methods", check_names("e3.methods", self.methods, tuple(METHODS)))
        check_int("e3.baseline_episodes", self.baseline_episodes, 1)
        check_int("e3.learned_episodes", self.learned_episodes, 1)
        check_int("e3.seed", self.seed, 0)
        check_bool("e3.greedy", self.greedy)
        object.__setattr__(self, "checkpoints", check_checkpoints("e3.checkpoints", self.checkpoints, CHECKPOINT_KEYS))
        object.__setattr__(self, "variants", _check_variants("e3.variants", self.variants))
        if set(self.seen_n) & set(self.unseen_n):
            raise ConfigError(f"e3.unseen_n={list(self.unseen_n)!r} is invalid: allowed N not in seen_n")


def _check_variants(field_name: str, value) -> dict[str, dict[str, str]]:
    """Further learned players (PAG decoding), e.g. the MFSG policy trained with one reconstructed
    choice undone: a table ``"label" = {config = "...toml", checkpoint = "..."}`` (the training config
    that makes the checkpoint; run() evaluates the checkpoint only if it exists and was trained by what
    the config gives now, and otherwise says why not) or ``"label" = "checkpoint path"``. Labels must
    not name a method."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{field_name}={value!r} is invalid: allowed a table of \"label\" = "
                          "{config = \"path\", checkpoint = \"path\"}")
    out = {}
    for k, v in value.items():
        if k in METHODS:
            raise ConfigError(f"{field_name}.{k} is invalid: allowed a label that is not a method name "
                              f"({', '.join(METHODS)})")
        if isinstance(v, Mapping):
            unknown = sorted(set(v) - {"config", "checkpoint"})
            if unknown:
                raise ConfigError(f"{field_name}.{k}.{unknown[0]} is not a known field: allowed checkpoint, config")
            config = v.get("config", "")
            v = {"config": config and check_train_config(f"{field_name}.{k}.config", config),
                 "checkpoint": v.get("checkpoint")}
        else:
            v = {"config": "", "checkpoint": v}
        if not (isinstance(v["checkpoint"], str) and v["checkpoint"]):
            raise ConfigError(f"{field_name}.{k}={value[k]!r} is invalid: allowed a checkpoint path")
        out[k] = v
    return out


def scenarios(cfg: E3Config, env: EnvConfig) -> list[tuple[str, str, int, EnvConfig]]:
    """(label, kind, N or N_max, env config) of every evaluated scenario."""
    out = [(f"N={n}", "seen", n, scenario(env, n, cfg.p_arrival)) for n in cfg.seen_n]
    out += [(f"N={n}", "unseen", n, scenario(env, n, cfg.p_arrival)) for n in cfg.unseen_n]
    markov = scenario(env, cfg.markov_n_max, cfg.p_arrival, "markov", n_min=cfg.markov_n_min,
                      p_join=cfg.markov_p_join, p_leave=cfg.markov_p_leave)
    out.append((f"markov {cfg.markov_n_min}-{cfg.markov_n_max}", "markov", cfg.markov_n_max, markov))
    return out


def _plot(res: Results, rows: list[dict], methods, cfg: E3Config) -> None:
    fig, ax = new_figure(1, 2, width=5.5)
    for name in methods:
        pts = sorted((r["n_ue"], r["genie_fraction"], r["jain"]) for r in rows
                     if r["method"] == name and r["kind"] != "markov")
        mk = [r for r in rows if r["method"] == name and r["kind"] == "markov"]
        x, g, j = zip(*pts, strict=True)
        line = ax[0, 0].plot(x, g, marker="o", label=name)[0]
        ax[0, 1].plot(x, j, marker="o", label=name, color=line.get_color())
        if mk:
            xm = max(cfg.unseen_n + cfg.seen_n) + 1.5
            ax[0, 0].plot([xm], [mk[0]["genie_fraction"]], marker="*", ms=12, color=line.get_color())
            ax[0, 1].plot([xm], [mk[0]["jain"]], marker="*", ms=12, color=line.get_color())
    lo = min(cfg.unseen_n) - 0.5
    for a, label in ((ax[0, 0], "throughput / genie"), (ax[0, 1], "Jain's index")):
        a.axvspan(lo, max(cfg.unseen_n) + 0.5, color="grey", alpha=0.15, label="unseen N")
        a.set(xlabel="number of UEs N (star: Markov churn)", ylabel=label, title=f"p_a = {cfg.p_arrival}")
    ax[0, 1].legend(fontsize="small")
    res.figure(fig, "generalization")


def scenario_rows(cfg: E3Config, evaluated: list, label: str, kind: str, n: int, sc: EnvConfig) -> list[dict]:
    """The rows of one scenario, one per (method, evaluator) of ``evaluated``: an independent unit."""
    rows = []
    for m, evaluator in evaluated:
        eps = cfg.learned_episodes if m.checkpoint else cfg.baseline_episodes
        progress(f"e3: {m.name} {label}")
        r = evaluator.evaluate(m, sc, episodes=eps, seed=cfg.seed, greedy=cfg.greedy)
        rows.append({"method": m.name, "scenario": label, "kind": kind, "n_ue": n, "p_arrival": cfg.p_arrival,
                     "episodes": eps, **r})
    return rows


def run(cfg: E3Config, res: Results) -> tuple[dict, dict]:
    ev = Evaluator(cfg.checkpoints, "e3.checkpoints")
    not_evaluated = {k: why for k, v in cfg.variants.items() if v["config"]
                     and (why := checkpoint_status(v["config"], v["checkpoint"]))}
    for label, why in not_evaluated.items():
        progress(f"e3: variant {label!r} not evaluated: {why}")
    variant_ev = Evaluator({k: v["checkpoint"] for k, v in cfg.variants.items() if k not in not_evaluated},
                           "e3.variants")
    env = EnvConfig()
    evaluated = [(METHODS[m], ev) for m in ev.usable(cfg.methods, env)]
    evaluated += [(m, variant_ev) for m in variant_ev.usable([Method(k, checkpoint=k) for k in cfg.variants
                                                              if k not in not_evaluated], env)]
    methods = tuple(m.name for m, _ in evaluated)
    units = [Unit(label if kind == "markov" else f"{label} ({kind})", scenario_rows, (cfg, evaluated, label, kind, n, sc))
             for label, kind, n, sc in scenarios(cfg, env)]
    rows = [r for part in current().map(units, "e3").values() for r in part]
    res.table("e3", rows)
    _plot(res, rows, methods, cfg)
    by = {}
    for name in methods:
        mean = {kind: {k: float(np.mean([r[k] for r in rows if r["method"] == name and r["kind"] == kind]))
                       for k in METRICS} for kind in ("seen", "unseen", "markov")}
        mean["change_unseen_vs_seen"] = {k: relative_gain(mean["unseen"][k], mean["seen"][k]) for k in METRICS}
        mean["change_markov_vs_seen"] = {k: relative_gain(mean["markov"][k], mean["seen"][k]) for k in METRICS}
        by[name] = mean
    summary = {"methods": list(methods), "skipped_methods": [m for m in cfg.methods if m not in methods],
               "variants": dict(cfg.variants),
               "not_evaluated": not_evaluated,
               "by_method": by,
               "paper": {"source": "MFSG paper (arXiv 2510.10895), abstract",
                         "claim": "our framework generalizes excellently to a fluctuating number of users without "
                                  "requiring retraining or architectural changes"}}
    return summary, {"seed": cfg.seed}
