"""E5: ablations (LLM4MAC Fig. 3; model §6): no SIE, no PAG, no pretraining and τ = 1 against the
full MFSG players, throughput (and Jain's index, valid-action rate) against N.

- ``no-pag`` is the full players decoding free-form (:mod:`mfsg.learn.freeform`): no retraining.
- ``no-sie``, ``no-pretraining`` and ``tau1`` are training-time ablations: each needs its own
  checkpoint (``checkpoints.no_sie`` …). In full mode with ``train_missing = true`` an ablation
  whose checkpoint is "" is trained from ``train_config`` with the one field changed
  (``policy.language.no_sie = true``, ``policy.language.pretrained = false``, ``ppo.tau = 1``)
  into ``<out>/runs/<key>/``; otherwise it is reported as unavailable.

The summary puts LLM4MAC's SIE-ablation drops (22.5 % at N = 2, about 50 % at N = 5) next to ours.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfsg.config import ConfigError, EnvConfig, check_int, check_prob
from mfsg.experiments.common import REPO, Results, check_bool, check_checkpoints, check_list, check_names, new_figure, progress
from mfsg.experiments.executor import Unit, current
from mfsg.experiments.methods import Evaluator, Method, relative_gain, scenario
from mfsg.learn.freeform import FreeformConfig

NAME = "e5"
ABLATIONS = {
    "full": (Method("full", checkpoint="mfsg"), None),
    "no-pag": (Method("no-pag", checkpoint="mfsg", decoding="free"), None),
    "no-sie": (Method("no-sie", checkpoint="no_sie"), ("policy", "language", "no_sie", True)),
    "no-pretraining": (Method("no-pretraining", checkpoint="no_pretraining"), ("policy", "language", "pretrained", False)),
    "tau1": (Method("tau1", checkpoint="tau1"), ("ppo", None, "tau", 1.0)),
}
CHECKPOINT_KEYS = ("mfsg", "no_sie", "no_pretraining", "tau1")
PAPER = {"source": "LLM4MAC (papers/000_*.txt), Sec. IV, Fig. 3",
         "claim": "the impact of SIE becomes more pronounced as UE numbers increase, with throughput reductions of "
                  "22.5% at N=2 and approximately 50% at N=5", "sie_drop": {"2": 0.225, "5": 0.50}}


@dataclass(frozen=True)
class Config:
    n_ue: tuple[int, ...] = (2, 3, 4, 5, 6)
    p_arrival: float = 0.48
    ablations: tuple[str, ...] = tuple(ABLATIONS)
    episodes: int = 64
    seed: int = 0
    greedy: bool = False
    fallback_dcm: int = 0
    fallback_ucm: int = 0
    train_missing: bool = False
    train_config: str = "experiments/configs/mfsg_default.toml"
    train_iterations: int = 0  # 0: the train config's own run.iterations
    checkpoints: dict = field(default_factory=dict)

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
        if not self.checkpoints.get("mfsg"):
            raise ConfigError("e5.checkpoints.mfsg is invalid: allowed the path of the full MFSG players")


def ablated_train_config(path: str, change: tuple, iterations: int):
    """The training config of ``path`` with one ablation field changed (``change``: table, sub-table, key, value)."""
    from mfsg.learn.config import load_train_config, train_config_from_dict, train_config_to_dict

    p = Path(path)
    d = train_config_to_dict(load_train_config(p if p.is_absolute() else REPO / p))
    table, sub, key, value = change
    target = d[table] if sub is None else d[table].setdefault(sub, {})
    target[key] = value
    cfg = train_config_from_dict(d)
    if iterations:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, iterations=iterations))
    return cfg


def train_ablation(cfg: Config, name: str, out: Path) -> str:
    """Train ablation ``name`` into ``out`` (Stackelberg PPO); returns its final/ folder."""
    from mfsg.learn.train import Trainer

    tcfg = ablated_train_config(cfg.train_config, ABLATIONS[name][1], cfg.train_iterations)
    Trainer(tcfg, out).run(progress=False)
    return str(out / "final")


def scenario_rows(cfg: Config, ev: Evaluator, names: list[str], env: EnvConfig, n: int) -> list[dict]:
    """The rows of one N, one per ablation: an independent unit of the evaluation."""
    sc = scenario(env, n, cfg.p_arrival)
    rows = []
    for name in names:
        progress(f"e5: {name} N={n}")
        r = ev.evaluate(ABLATIONS[name][0], sc, episodes=cfg.episodes, seed=cfg.seed, greedy=cfg.greedy)
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


def run(cfg: Config, res: Results) -> tuple[dict, dict]:
    paths = dict(cfg.checkpoints)
    units = [Unit(name, train_ablation, (cfg, name, res.out / "runs" / ABLATIONS[name][0].checkpoint))
             for name in cfg.ablations if ABLATIONS[name][1] is not None
             and not paths.get(ABLATIONS[name][0].checkpoint) and cfg.train_missing]
    trained = current().map(units, f"{NAME} training")  # independent trainings: units of the executor
    paths |= {ABLATIONS[name][0].checkpoint: path for name, path in trained.items()}
    ev = Evaluator(paths, "e5.checkpoints", freeform=FreeformConfig(cfg.fallback_dcm, cfg.fallback_ucm))
    methods = [ABLATIONS[n][0] for n in cfg.ablations]
    env = EnvConfig()
    names = [m.name for m in ev.usable(methods, env)]
    units = [Unit(f"N={n}", scenario_rows, (cfg, ev, names, env, n)) for n in cfg.n_ue]
    rows = [r for part in current().map(units, NAME).values() for r in part]
    res.table("e5", rows)
    _plot(res, rows, names)
    full = {r["n_ue"]: r["throughput"] for r in rows if r["ablation"] == "full"}
    drops = {name: {str(r["n_ue"]): -relative_gain(r["throughput"], full[r["n_ue"]]) for r in rows
                    if r["ablation"] == name} for name in names if name != "full"}
    summary = {"ablations": names,
               "unavailable": {n: f"checkpoints.{ABLATIONS[n][0].checkpoint} not set" for n in cfg.ablations
                               if n not in names},
               "trained_here": trained,
               "throughput_drop_vs_full": drops,
               "mean_drop_vs_full": {k: float(np.mean(list(v.values()))) for k, v in drops.items()},
               "paper": PAPER,
               "ours_sie_drop": {k: drops.get("no-sie", {}).get(k) for k in PAPER["sie_drop"]}}
    return summary, {"seed": cfg.seed}
