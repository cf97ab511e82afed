"""E4: decision latency, valid-action rate and reward (LLM4MAC Fig. 5): the learned players with PAG
decoding (model §5) against the same players decoding free-form (the no-PAG ablation,
:mod:`mfsg.learn.freeform`), LLM-PL (free-form) and Sym. MAPPO.

``decision_latency_ms`` is the wall-clock of one TTI's decisions for all episodes of the batch
(as :func:`mfsg.learn.train.evaluate_players`); ``ms_per_decision`` divides by the decisions made.
Latencies are CPU wall-clock on a shared machine: compare them within one run only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mfsg.config import EnvConfig, check_int, check_prob
from mfsg.experiments.common import Results, check_bool, check_checkpoints, check_list, check_names, new_figure, progress
from mfsg.experiments.executor import Unit, current
from mfsg.experiments.methods import LEARNED, METHODS, Evaluator, scenario
from mfsg.learn.freeform import FreeformConfig

NAME = "e4"
CHECKPOINT_KEYS = ("mfsg", "mappo", "llm_pl")
PANELS = (("valid_action_rate", "valid-action rate"), ("ms_per_decision", "ms per decision"),
          ("team_return", "team return per episode (LLM4MAC Eq. 2)"))


@dataclass(frozen=True)
class E4Config:
    n_ue: tuple[int, ...] = (2, 4, 6)
    p_arrival: float = 0.48
    methods: tuple[str, ...] = ("mfsg", "mfsg-free", "llm-pl", "mappo")
    episodes: int = 64
    seed: int = 0
    greedy: bool = False
    fallback_dcm: int = 0
    fallback_ucm: int = 0
    checkpoints: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_ue", check_list("e4.n_ue", self.n_ue, lambda f, v: check_int(f, v, 1, 64)))
        check_prob("e4.p_arrival", self.p_arrival)
        object.__setattr__(self, "methods", check_names("e4.methods", self.methods, LEARNED))
        check_int("e4.episodes", self.episodes, 1)
        check_int("e4.seed", self.seed, 0)
        check_bool("e4.greedy", self.greedy)
        FreeformConfig(self.fallback_dcm, self.fallback_ucm)
        object.__setattr__(self, "checkpoints", check_checkpoints("e4.checkpoints", self.checkpoints, CHECKPOINT_KEYS))


def _plot(res: Results, rows: list[dict], methods, cfg: E4Config) -> None:
    fig, ax = new_figure(1, len(PANELS), width=4.6)
    width = 0.8 / max(1, len(methods))
    for i, name in enumerate(methods):
        for a, (key, label) in zip(ax[0], PANELS, strict=True):
            vals = [next((r[key] for r in rows if r["method"] == name and r["n_ue"] == n), np.nan) for n in cfg.n_ue]
            a.bar(np.arange(len(cfg.n_ue)) + i * width, vals, width, label=name)
            a.set(xticks=np.arange(len(cfg.n_ue)) + 0.4 - width / 2, xticklabels=[f"N={n}" for n in cfg.n_ue],
                  ylabel=label)
    ax[0, 1].set_yscale("log")
    ax[0, 0].legend(fontsize="small")
    res.figure(fig, "decoding")


def scenario_rows(cfg: E4Config, ev: Evaluator, methods: tuple[str, ...], env: EnvConfig, n: int) -> list[dict]:
    """The rows of one N, one per method: an independent unit of the experiment."""
    sc = scenario(env, n, cfg.p_arrival)
    rows = []
    for name in methods:
        progress(f"e4: {name} N={n}")
        r = ev.evaluate(name, sc, episodes=cfg.episodes, seed=cfg.seed, greedy=cfg.greedy)
        r["ms_per_decision"] = 1e3 / r["decisions_per_s"]
        rows.append({"method": name, "decoding": METHODS[name].decoding, "n_ue": n, "p_arrival": cfg.p_arrival,
                     "episodes": cfg.episodes, **r})
    return rows


def run(cfg: E4Config, res: Results) -> tuple[dict, dict]:
    ev = Evaluator(cfg.checkpoints, "e4.checkpoints", freeform=FreeformConfig(cfg.fallback_dcm, cfg.fallback_ucm))
    env = EnvConfig()
    methods = tuple(ev.usable(cfg.methods, env))
    units = [Unit(f"N={n}", scenario_rows, (cfg, ev, methods, env, n)) for n in cfg.n_ue]
    rows = [r for part in current().map(units, "e4").values() for r in part]
    res.table("e4", rows)
    _plot(res, rows, methods, cfg)
    keys = ("valid_action_rate", "ms_per_decision", "decision_latency_ms", "team_return", "throughput")
    by = {m: {k: float(np.mean([r[k] for r in rows if r["method"] == m])) for k in keys} for m in methods}
    summary = {"methods": list(methods), "skipped_methods": [m for m in cfg.methods if m not in methods],
               "mean_over_n": by,
               "fallback": {"dcm": cfg.fallback_dcm, "ucm": cfg.fallback_ucm, "access": "IDLE"},
               "paper": {"source": "LLM4MAC Fig. 5 / MFSG abstract",
                         "claim": "PAG is employed to ensure the reliability and efficiency of this process"}}
    return summary, {"seed": cfg.seed}
