"""E5: ablations (LLM4MAC Fig. 3; model §6): no SIE, no PAG, no pretraining and τ = 1 against the
full MFSG players, throughput (and Jain's index, valid-action rate) against N.

- ``no-pag`` is the full players decoding free-form (:mod:`mfsg.learn.freeform`): no retraining.
- ``no-sie``, ``no-pretraining`` and ``tau1`` are training-time ablations, each defined by its own
  training config (``configs.no_sie`` …: a variant that names the full players' recipe as its base
  and changes one field) and evaluated from its checkpoint (``checkpoints.no_sie`` …). A checkpoint
  is used only if it was trained by what its config gives now and the full players by what the
  config's base gives now; otherwise the ablation is reported as unavailable, with the reason. In
  full mode with ``train_missing = true`` an ablation whose checkpoint is "" is trained from its
  config into ``<out>/runs/<key>/``.

``tau_replicates`` (τ label -> a seed-replicate folder of one recipe trained at that τ, e.g. the symbolic
``mlp_ppo`` recipe and its τ variants, :mod:`mfsg.experiments.replicates`): the τ comparison over seeds:
per τ and N the final greedy genie fraction (mean and 95 % interval over seeds) and the PPO gain over the
starting players, and each τ against ``tau_reference`` by Welch's interval on the per-seed finals.

The summary puts LLM4MAC's SIE-ablation drops (22.5 % at N = 2, about 50 % at N = 5) next to ours.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfsg.config import ConfigError, EnvConfig, check_int, check_prob, check_real
from mfsg.experiments.common import (
    Results,
    changed_since,
    check_bool,
    check_checkpoints,
    check_list,
    check_names,
    check_train_config,
    checkpoint_status,
    new_figure,
    progress,
    repo_path,
)
from mfsg.experiments.executor import Unit, current
from mfsg.experiments.methods import Evaluator, Method, relative_gain, scenario
from mfsg.learn import device as devices
from mfsg.learn.freeform import FreeformConfig

NAME = "e5"
ABLATIONS = {m.name: m for m in (
    Method("full", checkpoint="mfsg"),
    Method("no-pag", checkpoint="mfsg", decoding="free"),
    Method("no-sie", checkpoint="no_sie"),
    Method("no-pretraining", checkpoint="no_pretraining"),
    Method("tau1", checkpoint="tau1"),
)}
CHECKPOINT_KEYS = ("mfsg", "no_sie", "no_pretraining", "tau1")
CONFIG_KEYS = CHECKPOINT_KEYS[1:]  # the ablations trained on their own
PAPER = {"source": "LLM4MAC (Tan, Li, Zhao), Sec. IV, Fig. 3",
         "claim": "the impact of SIE becomes more pronounced as UE numbers increase, with throughput reductions of "
                  "22.5% at N=2 and approximately 50% at N=5", "sie_drop": {"2": 0.225, "5": 0.50}}


@dataclass(frozen=True)
class E5Config:
    n_ue: tuple[int, ...] = (2, 3, 4, 5, 6)
    p_arrival: float = 0.48
    ablations: tuple[str, ...] = tuple(ABLATIONS)
    episodes: int = 64
    seed: int = 0
    greedy: bool = False
    fallback_dcm: int = 0
    fallback_ucm: int = 0
    train_missing: bool = False
    train_iterations: int = 0  # 0: each ablation config's own run.iterations
    configs: dict = field(default_factory=dict)  # ablation key -> its training config ("" = none)
    checkpoints: dict = field(default_factory=dict)
    tau_replicates: dict = field(default_factory=dict)  # τ label -> seed-replicate folder (results/X/seed<k>/)
    tau_reference: str = "4"

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_ue", check_list("e5.n_ue", self.n_ue, lambda f, v: check_int(f, v, 1, 64)))
        check_prob("e5.p_arrival", self.p_arrival)
        object.__setattr__(self, "ablations", check_names("e5.ablations", self.ablations, tuple(ABLATIONS)))
        check_int("e5.episodes", self.episodes, 1)
        check_int("e5.seed", self.seed, 0)
        check_bool("e5.greedy", self.greedy)
        FreeformConfig(self.fallback_dcm, self.fallback_ucm)
        check_bool("e5.train_missing", self.train_missing)
        check_int("e5.train_iterations", self.train_iterations, 0)
        object.__setattr__(self, "checkpoints", check_checkpoints("e5.checkpoints", self.checkpoints, CHECKPOINT_KEYS))
        object.__setattr__(self, "configs", check_checkpoints("e5.configs", self.configs, CONFIG_KEYS))
        for k, v in self.configs.items():
            if v:
                check_train_config(f"e5.configs.{k}", v)
        for k, v in self.tau_replicates.items():
            check_real(f"e5.tau_replicates.{k}", _tau(k), 1.0)
            if not (repo_path(v)).is_dir():
                raise ConfigError(f"e5.tau_replicates.{k}={v!r} is invalid: no such folder")
        if self.tau_replicates and self.tau_reference not in self.tau_replicates:
            raise ConfigError(f"e5.tau_reference={self.tau_reference!r} is invalid: allowed one of "
                              + ", ".join(self.tau_replicates))
        if not self.checkpoints.get("mfsg"):
            raise ConfigError("e5.checkpoints.mfsg is invalid: allowed the path of the full MFSG players")


def _tau(label: str) -> float:
    try:
        return float(label)
    except ValueError:
        raise ConfigError(f"e5.tau_replicates.{label} is invalid: allowed a number >= 1 as the key") from None


def tau_comparison(cfg: E5Config) -> tuple[list[dict], dict]:
    """Rows (τ, N: start, final, gain over seeds) and each τ's final against the reference τ's (Welch)."""
    from mfsg.experiments.replicates import compare, per_seed, summarize

    rows, finals = [], {}
    for label, folder in cfg.tau_replicates.items():
        runs = per_seed(repo_path(folder))
        own = summarize(runs)
        rows += [{"tau": _tau(label), **r} for r in own]
        finals[label] = {r["n_ue"]: [run["final"][r["n_ue"]] for run in runs.values()] for r in own}
    ref = finals.get(cfg.tau_reference, {})
    versus = {label: {str(n): compare(f[n], ref[n]) for n in sorted(f) if n in ref}
              for label, f in finals.items() if label != cfg.tau_reference}
    return rows, {"folders": dict(cfg.tau_replicates), "reference": cfg.tau_reference, "final_minus_reference": versus}


def train_ablation(cfg: E5Config, name: str, out: Path, device: str = "cpu") -> str:
    """Train ablation ``name`` from its config into ``out`` (Stackelberg PPO) on ``device``; returns its final/ folder."""
    from mfsg.learn.config import load_train_config
    from mfsg.learn.train import Trainer

    tcfg = load_train_config(repo_path(cfg.configs[ABLATIONS[name].checkpoint]))
    if cfg.train_iterations:
        tcfg = dataclasses.replace(tcfg, run=dataclasses.replace(tcfg.run, iterations=cfg.train_iterations))
    Trainer(dataclasses.replace(tcfg, run=dataclasses.replace(tcfg.run, device=device)), out).run(progress=False)
    return str(out / "final")


def unusable(cfg: E5Config, name: str, paths: dict, trained_here: bool) -> str:
    """Why ablation ``name`` cannot be compared with the full players ("" when it can)."""
    key = ABLATIONS[name].checkpoint
    if key == "mfsg":
        return ""
    if not paths.get(key):
        return f"checkpoints.{key} not set"
    config = cfg.configs.get(key, "")
    if not config:
        return ""
    if not trained_here and (why := checkpoint_status(config, paths[key])):
        return why
    from mfsg.learn.config import config_base

    base = config_base(repo_path(config))
    full = repo_path(paths["mfsg"]) / "state.json"
    if base is not None and full.exists():
        diff = changed_since(json.loads(full.read_text())["config"], base)
        if diff:
            return (f"the full players ({paths['mfsg']}) were made from another recipe than {config}'s base gives "
                    f"now (differs in {', '.join(diff)}): to be rerun on the current default")
    return ""


def changes(cfg: E5Config) -> dict[str, dict]:
    """What each ablation's config changes in its base: ablation -> {field: [base value, value]}."""
    from mfsg.learn.config import changed_fields, config_base, load_train_config

    out = {}
    for name, m in ABLATIONS.items():
        config = cfg.configs.get(m.checkpoint, "")
        base = config_base(repo_path(config)) if config else None
        if base is not None:
            diff = changed_fields(load_train_config(repo_path(config)), load_train_config(base))
            out[name] = {k: list(v) for k, v in diff.items()}
    return out


def scenario_rows(cfg: E5Config, ev: Evaluator, names: list[str], env: EnvConfig, n: int) -> list[dict]:
    """The rows of one N, one per ablation: an independent unit of the evaluation."""
    sc = scenario(env, n, cfg.p_arrival)
    rows = []
    for name in names:
        progress(f"e5: {name} N={n}")
        r = ev.evaluate(ABLATIONS[name], sc, episodes=cfg.episodes, seed=cfg.seed, greedy=cfg.greedy)
        rows.append({"ablation": name, "n_ue": n, "p_arrival": cfg.p_arrival, "episodes": cfg.episodes, **r})
    return rows


def _plot(res: Results, rows: list[dict], names) -> None:
    fig, ax = new_figure(1, 2)
    for name in names:
        pts = sorted((r["n_ue"], r["throughput"], r["jain"]) for r in rows if r["ablation"] == name)
        x, s, j = zip(*pts, strict=True)
        ax[0, 0].plot(x, s, marker="o", label=name)
        ax[0, 1].plot(x, j, marker="o", label=name)
    ax[0, 0].set(xlabel="number of UEs N", ylabel="throughput S (dPDU/TTI)")
    ax[0, 1].set(xlabel="number of UEs N", ylabel="Jain's index")
    ax[0, 1].legend(fontsize="small")
    res.figure(fig, "ablations")


def run(cfg: E5Config, res: Results) -> tuple[dict, dict]:
    paths = dict(cfg.checkpoints)
    units = [Unit(name, train_ablation, (cfg, name, res.out / "runs" / ABLATIONS[name].checkpoint, devices.current()))
             for name in cfg.ablations if ABLATIONS[name].checkpoint in CONFIG_KEYS
             and not paths.get(ABLATIONS[name].checkpoint) and cfg.train_missing
             and cfg.configs.get(ABLATIONS[name].checkpoint)]
    trained = current().map(units, f"{NAME} training")  # independent trainings: units of the executor
    paths |= {ABLATIONS[name].checkpoint: path for name, path in trained.items()}
    unavailable = {n: why for n in cfg.ablations if (why := unusable(cfg, n, paths, n in trained))}
    for name, why in unavailable.items():
        progress(f"e5: {name} not evaluated: {why}")
    ev = Evaluator(paths, "e5.checkpoints", freeform=FreeformConfig(cfg.fallback_dcm, cfg.fallback_ucm))
    methods = [ABLATIONS[n] for n in cfg.ablations if n not in unavailable]
    env = EnvConfig()
    names = [m.name for m in ev.usable(methods, env)]
    units = [Unit(f"N={n}", scenario_rows, (cfg, ev, names, env, n)) for n in cfg.n_ue]
    rows = [r for part in current().map(units, NAME).values() for r in part]
    res.table("e5", rows)
    _plot(res, rows, names)
    full = {r["n_ue"]: r["throughput"] for r in rows if r["ablation"] == "full"}
    drops = {name: {str(r["n_ue"]): -relative_gain(r["throughput"], full[r["n_ue"]]) for r in rows
                    if r["ablation"] == name} for name in names if name != "full"}
    tau = {}
    if cfg.tau_replicates:
        tau_rows, tau = tau_comparison(cfg)
        res.table("e5_tau", tau_rows)
        tau["rows"] = tau_rows
    summary = {"ablations": names,
               "unavailable": unavailable,
               "changes": changes(cfg),
               "trained_here": trained,
               "throughput_drop_vs_full": drops,
               "mean_drop_vs_full": {k: float(np.mean(list(v.values()))) for k, v in drops.items()},
               "paper": PAPER,
               "ours_sie_drop": {k: drops.get("no-sie", {}).get(k) for k in PAPER["sie_drop"]},
               "tau": tau}
    return summary, {"seed": cfg.seed}
