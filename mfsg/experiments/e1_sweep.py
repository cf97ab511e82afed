"""E1: throughput and Jain's index against p_a and N (MFSG paper Fig. 4): the learned MFSG policy
against the genie, SR/grant, ALOHA, No-comm, Sym. MAPPO and LLM-PL (model §6, §7).

Every (N, p_a) cell is a fixed-N scenario of the default environment (model §1); all methods of a
cell see the same draws (baselines with ``baseline_episodes``, learned players with
``learned_episodes``). The summary puts the MFSG paper's headline (+77.6 % throughput, +65.2 %
fairness over conventional baselines) next to our gains over SR/grant and ALOHA on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mfsg.config import EnvConfig, check_int, check_prob
from mfsg.experiments.common import Results, check_bool, check_checkpoints, check_list, check_names, new_figure, progress
from mfsg.experiments.executor import Unit, current
from mfsg.experiments.methods import CONVENTIONAL, METHODS, Evaluator, relative_gain, scenario

NAME = "e1"
CHECKPOINT_KEYS = ("mfsg", "mfsg_speculative", "mappo", "llm_pl")
PAPER = {"source": "MFSG paper (arXiv 2510.10895), abstract",
         "claim": "our framework achieves a 77.6% greater throughput and a 65.2% fairness improvement over "
                  "conventional baselines", "throughput_gain": 0.776, "fairness_gain": 0.652}


@dataclass(frozen=True)
class E1Config:
    """Grid, methods, episodes and checkpoints of E1 (``checkpoints``: mfsg, mfsg_speculative, mappo, llm_pl)."""

    p_arrival: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    n_ue: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    methods: tuple[str, ...] = ("genie", "sr-grant", "aloha", "mfsg", "no-comm", "mappo", "llm-pl")
    baseline_episodes: int = 1000
    learned_episodes: int = 64
    seed: int = 0
    greedy: bool = False
    plot_n: int = 6
    plot_p: float = 0.5
    checkpoints: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "p_arrival", check_list("e1.p_arrival", self.p_arrival, check_prob))
        object.__setattr__(self, "n_ue", check_list("e1.n_ue", self.n_ue, lambda f, v: check_int(f, v, 1, 64)))
        object.__setattr__(self, "methods", check_names("e1.methods", self.methods, tuple(METHODS)))
        check_int("e1.baseline_episodes", self.baseline_episodes, 1)
        check_int("e1.learned_episodes", self.learned_episodes, 1)
        check_int("e1.seed", self.seed, 0)
        check_bool("e1.greedy", self.greedy)
        check_int("e1.plot_n", self.plot_n, 1, 64)
        check_prob("e1.plot_p", self.plot_p)
        object.__setattr__(self, "checkpoints", check_checkpoints("e1.checkpoints", self.checkpoints, CHECKPOINT_KEYS))


def cell(cfg: E1Config, ev: Evaluator, methods: tuple[str, ...], env: EnvConfig, n: int, p: float) -> list[dict]:
    """The rows of one (N, p_a) cell, one per method: an independent unit of the grid."""
    sc = scenario(env, n, p)
    rows = []
    for name in methods:
        learned = bool(METHODS[name].checkpoint)
        eps = cfg.learned_episodes if learned else cfg.baseline_episodes
        progress(f"e1: {name} N={n} p_a={p}")
        r = ev.evaluate(name, sc, episodes=eps, seed=cfg.seed, greedy=cfg.greedy)
        rows.append({"method": name, "n_ue": n, "p_arrival": p, "episodes": eps, **r})
    return rows


def sweep(cfg: E1Config, ev: Evaluator, methods: tuple[str, ...], env: EnvConfig) -> list[dict]:
    """One row per (method, N, p_a); the cells run on the command's executor."""
    units = [Unit(f"N={n} p_a={p}", cell, (cfg, ev, methods, env, n, p)) for n in cfg.n_ue for p in cfg.p_arrival]
    return [r for rows in current().map(units, NAME).values() for r in rows]


def gains(rows: list[dict], metric: str) -> dict:
    """MFSG's relative gain in ``metric`` over each conventional baseline and the better of them, per cell:
    mean and max over the grid."""
    cell = {(r["method"], r["n_ue"], r["p_arrival"]): r[metric] for r in rows}
    cells = sorted({(n, p) for m, n, p in cell if m == "mfsg"})
    out = {}
    for ref in (*CONVENTIONAL, "best_conventional"):
        g = []
        for n, p in cells:
            refs = [cell.get((b, n, p)) for b in CONVENTIONAL] if ref == "best_conventional" else [cell.get((ref, n, p))]
            refs = [v for v in refs if v is not None]
            if refs:
                g.append(relative_gain(cell[("mfsg", n, p)], max(refs)))
        if g:
            out[ref] = {"mean": float(np.nanmean(g)), "max": float(np.nanmax(g)), "cells": len(g)}
    return out


def _plot(res: Results, rows: list[dict], methods, cfg: E1Config) -> None:
    n_plot = cfg.plot_n if cfg.plot_n in cfg.n_ue else cfg.n_ue[-1]
    p_plot = min(cfg.p_arrival, key=lambda p: abs(p - cfg.plot_p))
    for stem, xkey, fixed_key, fixed in (("vs_p_arrival", "p_arrival", "n_ue", n_plot),
                                         ("vs_n_ue", "n_ue", "p_arrival", p_plot)):
        fig, ax = new_figure(1, 2)
        for name in methods:
            pts = sorted((r[xkey], r["throughput"], r["jain"]) for r in rows
                         if r["method"] == name and r[fixed_key] == fixed)
            if pts:
                x, s, j = zip(*pts, strict=True)
                ax[0, 0].plot(x, s, marker="o", label=name)
                ax[0, 1].plot(x, j, marker="o", label=name)
        xlabel = "arrival probability p_a" if xkey == "p_arrival" else "number of UEs N"
        ax[0, 0].set(xlabel=xlabel, ylabel="throughput S (dPDU/TTI)", title=f"{fixed_key} = {fixed}")
        ax[0, 1].set(xlabel=xlabel, ylabel="Jain's index", title=f"{fixed_key} = {fixed}")
        ax[0, 1].legend(fontsize="small")
        res.figure(fig, stem)


def run(cfg: E1Config, res: Results) -> tuple[dict, dict]:
    ev = Evaluator(cfg.checkpoints, "e1.checkpoints")
    env = EnvConfig()
    methods = tuple(ev.usable(cfg.methods, env))
    skipped = [m for m in cfg.methods if m not in methods]
    rows = sweep(cfg, ev, methods, env)
    res.table("e1", rows)
    _plot(res, rows, methods, cfg)
    summary = {
        "methods": list(methods),
        "skipped_methods": {m: f"checkpoints.{METHODS[m].checkpoint} not set" for m in skipped},
        "paper": PAPER,
        "ours": {"throughput_gain": gains(rows, "throughput"), "fairness_gain": gains(rows, "jain")}
        if "mfsg" in methods else None,
        "mean_over_grid": {m: {k: float(np.mean([r[k] for r in rows if r["method"] == m]))
                               for k in ("throughput", "jain", "genie_fraction")} for m in methods},
    }
    return summary, {"seed": cfg.seed}
