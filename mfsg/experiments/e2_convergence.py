"""E2: convergence of the normalized system utility during training, evaluated at each N (MFSG
paper Fig. 5; LLM4MAC Fig. 4).

Reads a training run's ``metrics.jsonl`` (one line per PPO iteration) and ``eval.jsonl`` (periodic
evaluation at fixed N, :meth:`mfsg.learn.train.Trainer.evaluate`). The *normalized system
utility* (reconstructed: the papers do not define their normalization) is the evaluated
throughput divided by the genie's mean throughput at the same (N, p_a), estimated on
``genie_episodes`` episodes: 1 means genie-level service. Quick mode reads the committed runs
under ``experiments/results/``; full mode can first train (``train = true``: ``train_config`` with
``train_iterations``, through :class:`mfsg.learn.train.Trainer`) into ``<out>/run/`` and reads that.
A run folder without results yet is listed under ``missing``; a committed one made from an earlier
recipe than its config gives now is marked in its ``status``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfsg.config import ConfigError, check_int
from mfsg.experiments.common import (
    CONFIG_DIR,
    REPO,
    RESULTS_DIR,
    Results,
    changed_since,
    check_bool,
    check_checkpoints,
    new_figure,
    progress,
    repo_path,
)
from mfsg.learn.train import fixed_n_env
from mfsg.metrics import genie_throughput

NAME = "e2"
PATHS_FIELD = "runs"
RUN_FILES = ("metrics.jsonl", "eval.jsonl", "config.json")
TRAINED = "trained"  # key of the run trained by full mode
PANELS_PER_ROW = 3
CURVES = (("throughput", "throughput S"), ("jain", "Jain's index"), ("leader_return", "leader return"))
SMOOTH = 5  # iterations in the moving average of the training curves


@dataclass(frozen=True)
class E2Config:
    """``runs``: name -> run folder (with metrics.jsonl, eval.jsonl, config.json); ``greedy``: read each
    run's greedy evaluation rows (argmax actions, as the other experiments act), or its sampled ones."""

    runs: dict = field(default_factory=dict)
    genie_episodes: int = 1000
    seed: int = 0
    train: bool = False
    train_config: str = ""
    train_iterations: int = 0  # 0: the train config's own run.iterations
    greedy: bool = True

    def __post_init__(self) -> None:
        names = tuple(self.runs) + (TRAINED,)
        object.__setattr__(self, "runs", check_checkpoints("e2.runs", self.runs, names))
        check_int("e2.genie_episodes", self.genie_episodes, 1)
        check_int("e2.seed", self.seed, 0)
        check_int("e2.train_iterations", self.train_iterations, 0)
        check_bool("e2.train", self.train)
        check_bool("e2.greedy", self.greedy)
        if self.train and not self.train_config:
            raise ConfigError("e2.train_config='' is invalid with train = true: allowed a training config path")
        if not self.train and not any(self.runs.values()):
            raise ConfigError("e2.runs is invalid: allowed at least one run folder (or train = true)")


def run_folder(field_name: str, path: str) -> Path:
    p = Path(path)
    p = p if p.is_absolute() else REPO / p
    missing = [f for f in RUN_FILES if not (p / f).exists()]
    if missing:
        raise ConfigError(f"{field_name}={path!r} is invalid: no {missing[0]} there (allowed: a training run's "
                          "output folder or its committed results)")
    return p


def run_status(folder: Path) -> str:
    """"current" when a committed result folder (named after its config) was made by what
    ``experiments/configs/<folder>.toml`` gives now; otherwise how it differs, or "" for other folders.
    A seed replicate ``<config>/seed<k>`` (``mfsg train --seeds``) is compared with its config at ``run.seed = k``."""
    name, seed = folder.name, None
    if re.fullmatch(r"seed\d+", name):
        name, seed = folder.parent.name, int(name[4:])
    config = CONFIG_DIR / f"{name}.toml"
    if not (folder.is_relative_to(RESULTS_DIR) and config.exists()):
        return ""
    diff = changed_since(json.loads((folder / "config.json").read_text()), config)
    if seed is not None and diff.get("run.seed", (None, None))[1] == seed:
        diff.pop("run.seed")
    return "current" if not diff else ("made from an earlier recipe than its config gives now (differs in "
                                       f"{', '.join(diff)}): to be rerun on the current default")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def eval_rows(evals: list[dict], greedy: bool) -> tuple[list[dict], str]:
    """One action mode's evaluation rows and its name: ``greedy`` if asked for and logged, else ``sampled``
    (runs from before the mode was logged evaluated sampled actions only)."""
    mode = "greedy" if greedy and any(e.get("mode") == "greedy" for e in evals) else "sampled"
    return [e for e in evals if e.get("mode", "sampled") == mode], mode


def train(cfg: E2Config, out: Path) -> Path:
    """Full mode: train with ``cfg.train_config`` into ``out`` (Stackelberg PPO, :mod:`mfsg.learn.train`)."""
    import dataclasses

    from mfsg.learn.config import load_train_config
    from mfsg.learn.train import Trainer

    path = Path(cfg.train_config)
    tcfg = load_train_config(path if path.is_absolute() else REPO / path)
    if cfg.train_iterations:
        tcfg = dataclasses.replace(tcfg, run=dataclasses.replace(tcfg.run, iterations=cfg.train_iterations))
    Trainer(tcfg, out).run(progress=False)
    return out


def normalized(evals: list[dict], run_env, cfg: E2Config, cache: dict) -> list[dict]:
    """Eval rows with ``genie_throughput`` and ``normalized_utility`` = throughput / genie's."""
    rows = []
    for e in evals:
        key = (repr(run_env), e["n_ue"], e["p_arrival"])
        if key not in cache:
            cache[key] = genie_throughput(fixed_n_env(run_env, e["n_ue"], e["p_arrival"]), cfg.genie_episodes,
                                          cfg.seed)
        g = cache[key]
        rows.append({"iteration": e["iteration"], "n_ue": e["n_ue"], "p_arrival": e["p_arrival"],
                     "throughput": e["throughput"], "jain": e["jain"], "genie_throughput": g,
                     "normalized_utility": e["throughput"] / g if g > 0 else float("nan")})
    return rows


def _smooth(y: np.ndarray) -> np.ndarray:
    k = min(SMOOTH, len(y))
    return np.convolve(y, np.ones(k) / k, mode="valid")


def _plot(res: Results, runs: dict[str, tuple[list[dict], list[dict]]]) -> None:
    cols = min(PANELS_PER_ROW, len(runs))
    fig, ax = new_figure(-(-len(runs) // cols), cols, width=5.0, sharey=True)
    for a, (name, (_, ev)) in zip(ax.flat, runs.items()):
        for n in sorted({r["n_ue"] for r in ev}):
            pts = sorted((r["iteration"] + 1, r["normalized_utility"]) for r in ev if r["n_ue"] == n)
            a.plot(*zip(*pts, strict=True), marker="o", ms=3, label=f"N={n}")
        a.set(xlabel="PPO iteration", title=name)
        a.axhline(1.0, color="k", lw=0.8, ls="--")
    for a in ax.flat[len(runs):]:
        a.set_visible(False)
    for row in ax:
        row[0].set_ylabel("normalized system utility (S / S_genie)")
    ax[0, -1].legend(fontsize="small", ncol=2)
    res.figure(fig, "normalized_utility")
    fig, ax = new_figure(1, len(CURVES), width=4.4)
    for name, (metrics, _) in runs.items():
        it = np.array([m["iteration"] + 1 for m in metrics])
        for a, (key, label) in zip(ax[0], CURVES, strict=True):
            y = _smooth(np.array([m[key] for m in metrics], dtype=float))
            a.plot(it[len(it) - len(y):], y, label=name)
            a.set(xlabel="PPO iteration", ylabel=f"{label} (moving avg {SMOOTH})")
    ax[0, 0].legend(fontsize="small")
    res.figure(fig, "training_curves")


def run(cfg: E2Config, res: Results) -> tuple[dict, dict]:
    missing = {k: f"no results at {v} yet" for k, v in cfg.runs.items() if v and not (repo_path(v) / "eval.jsonl").exists()}
    for name, why in missing.items():
        progress(f"e2: run {name} not read: {why}")
    folders = {k: run_folder(f"e2.runs.{k}", v) for k, v in cfg.runs.items() if v and k not in missing}
    if cfg.train:
        folders[TRAINED] = run_folder(f"e2.runs.{TRAINED}", str(train(cfg, res.out / "run")))
    runs, rows, summary_runs, cache = {}, [], {}, {}
    from mfsg.learn.config import train_config_from_dict

    for name, folder in folders.items():
        run_cfg = train_config_from_dict(json.loads((folder / "config.json").read_text()))
        metrics = read_jsonl(folder / "metrics.jsonl")
        evals, mode = eval_rows(read_jsonl(folder / "eval.jsonl"), cfg.greedy)
        ev = normalized(evals, run_cfg.env, cfg, cache)
        runs[name] = (metrics, ev)
        rows += [{"run": name, "actions": mode, **r} for r in ev]
        last = max(r["iteration"] for r in ev) if ev else None
        first = min(r["iteration"] for r in ev) if ev else None
        summary_runs[name] = {
            "folder": str(folder.relative_to(REPO)) if folder.is_relative_to(REPO) else str(folder),
            "iterations": len(metrics),
            "actions": mode,
            "first_eval": {r["n_ue"]: r["normalized_utility"] for r in ev if r["iteration"] == first},
            "last_eval": {r["n_ue"]: r["normalized_utility"] for r in ev if r["iteration"] == last},
            "trained_ns": [run_cfg.env.churn.n] if run_cfg.env.churn.kind == "fixed"
            else list(range(run_cfg.env.churn.n_min, run_cfg.env.churn.n_max + 1)),
            "status": run_status(folder),
        }
    res.table("e2", rows)
    _plot(res, runs)
    summary = {"runs": summary_runs,
               "missing": missing,
               "normalization": "throughput / genie throughput at the same (N, p_a) (reconstructed)",
               "paper": {"source": "MFSG paper Fig. 5 caption; LLM4MAC Fig. 4",
                         "claim": "LLM4MAC converges unanimously and generalizes effectively in dynamic, "
                                  "heterogeneous agent environments"}}
    return summary, {"seed": cfg.seed}
