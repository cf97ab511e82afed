"""E6: equilibrium verification of the trained players on the exact game of a small instance (model §8).

For each configured checkpoint, the players are loaded with :func:`mfsg.learn.train.load_players`
and play the exact game of the instance ``[instance]`` (the run's environment with B, T and
``fixed(N)`` churn for N in ``n``; K, U, D and the utilities stay the run's, since the players'
action sets depend on them): :class:`mfsg.game.exact_players.ExactPlayersGame`, π from the players'
candidate scores on every reachable observation. :func:`mfsg.verify.trained.trained_checks` then
checks, with exact autograd over **every** policy parameter of both players (matrix-free):

- the instance's exact utilities against BatchedEnv Monte Carlo with the same players;
- stationarity (relative to the gradient's norm at a random point), g_F vs the welfare gradient;
- the follower's and the leader's second-order conditions (H_F, the Schur complement);
- J_τ Hurwitz at the run's τ, τ*, and ρ(I + η_L J_τ) at the run's leader learning rate;
- robustness under churn (model §8 Corollary): the same checks of J_τ with P_N moved to ``churn_n``.

Verdicts are pass / fail / inconclusive (:mod:`mfsg.verify.report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mfsg.config import ConfigError, check_int, check_nonneg
from mfsg.experiments.common import Results, check_checkpoints, checkpoint_path, new_figure, progress
from mfsg.game.base import ChurnDist
from mfsg.game.exact_players import ExactPlayersGame, instance_config
from mfsg.verify.derivatives import SolveError, top_eigenvalues
from mfsg.verify.parameters import ParameterDerivatives
from mfsg.verify.report import CheckResult, counts
from mfsg.verify.trained import EXACT_OPTIONS, TrainedCheckConfig, trained_checks

NAME = "e6"
CHECKPOINT_KEYS = ("mfsg", "mfsg_ppo", "mfsg_speculative", "mappo", "llm_pl")


@dataclass(frozen=True)
class E6Config:
    """Checkpoints, the exact instance, the check budget; ``tau`` and ``eta`` 0 take the run's ``ppo.tau`` and
    ``ppo.lr_leader``; ``churn_n`` 0 skips the churn row."""

    checkpoints: dict = field(default_factory=dict)
    buffer: int = 1
    horizon: int = 1
    n: tuple = (2,)
    churn_n: int = 1
    rel_tol: float = 1e-3
    mc_episodes: int = 4000
    k: int = 6
    seed: int = 0
    tau: float = 0.0
    eta: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoints", check_checkpoints("e6.checkpoints", self.checkpoints, CHECKPOINT_KEYS))
        if not any(self.checkpoints.values()):
            raise ConfigError("e6.checkpoints is invalid: allowed at least one checkpoint path")
        if not isinstance(self.n, list | tuple) or not self.n:
            raise ConfigError(f"e6.n={self.n!r} is invalid: allowed a non-empty list of numbers of followers")
        object.__setattr__(self, "n", tuple(self.n))
        for i, n in enumerate(self.n):
            check_int(f"e6.n[{i}]", n, 1)
        check_int("e6.buffer", self.buffer, 1)
        check_int("e6.horizon", self.horizon, 1)
        check_int("e6.churn_n", self.churn_n, 0)
        check_nonneg("e6.tau", self.tau)
        check_nonneg("e6.eta", self.eta)
        self.trained()

    def trained(self) -> TrainedCheckConfig:
        return TrainedCheckConfig(rel_tol=self.rel_tol, mc_episodes=self.mc_episodes, k=self.k, seed=self.seed)


def _rows(key: str, results: list[CheckResult]) -> list[dict]:
    return [{"checkpoint": key, "game": c.game, "check": c.check, "value": c.value, "tolerance": c.tolerance,
             "op": c.op, "verdict": c.verdict, "detail": c.detail} for c in results]


def verify_checkpoint(key: str, path: str, cfg: E6Config) -> dict:
    """Every E6 quantity of one checkpoint."""
    from mfsg.learn.train import load_players  # the players' stack, loaded only when a checkpoint is checked

    leader, follower, run_cfg = load_players(checkpoint_path(f"e6.checkpoints.{key}", path))
    tau, eta = cfg.tau or run_cfg.ppo.tau, cfg.eta or run_cfg.ppo.lr_leader
    env = instance_config(run_cfg.env, buffer=cfg.buffer, horizon=cfg.horizon, n=max(cfg.n))
    churn = ChurnDist(cfg.n, (1.0 / len(cfg.n),) * len(cfg.n))
    progress(f"e6: {key}: enumerating the instance")
    game = ExactPlayersGame(leader, follower, env, churn, name=f"exact[{path}]")  # the path as configured
    rows, facts = trained_checks(game, tau, eta, cfg.trained(), say=progress)
    eig = [{"checkpoint": key, "churn": "base", "operator": op, "re": complex(z).real, "im": complex(z).imag}
           for op in ("J_tau", "H_F", "schur") for z in facts.get(f"eig_{op}", [])]
    if cfg.churn_n:
        progress(f"e6: {key}: P_N moved to N={cfg.churn_n}")
        target = ExactPlayersGame(leader, follower, instance_config(run_cfg.env, buffer=cfg.buffer,
                                  horizon=cfg.horizon, n=cfg.churn_n), ChurnDist.fixed(cfg.churn_n),
                                  name=f"exact[{path}]@N={cfg.churn_n}")
        try:
            ev = top_eigenvalues(ParameterDerivatives(target, options=EXACT_OPTIONS).jacobian_tau(tau), cfg.k, "LR",
                                 EXACT_OPTIONS)
            scale = facts.get("scale_J_tau", float(np.abs(ev).max()))
            from mfsg.verify.trained import _sign_row

            rows.append(_sign_row(target.name, "hurwitz_under_churn", float(ev.real.max()), scale, cfg.rel_tol,
                                  f"max Re eig J_tau with P_N = fixed({cfg.churn_n}), tau={tau:g}"))
            eig += [{"checkpoint": key, "churn": f"N={cfg.churn_n}", "operator": "J_tau", "re": complex(z).real,
                     "im": complex(z).imag} for z in ev]
            facts["churn"] = {"n": cfg.churn_n, "instance": target.describe(), "J_L": target.values()[0],
                              "eig_J_tau": [complex(z) for z in ev]}
        except SolveError as err:
            from mfsg.verify.report import inconclusive

            rows.append(inconclusive(target.name, "hurwitz_under_churn", f"unconverged eigen-solve: {err}",
                                     path="exact_autograd"))
    facts = {k: ([[complex(z).real, complex(z).imag] for z in v] if k.startswith("eig_") else v)
             for k, v in facts.items()}
    if "churn" in facts:
        facts["churn"]["eig_J_tau"] = [[complex(z).real, complex(z).imag] for z in facts["churn"]["eig_J_tau"]]
    return {"checks": _rows(key, rows), "eig": eig, "facts": facts, "verdicts": counts(rows)}


def _plot(res: Results, per: dict[str, dict]) -> None:
    fig, ax = new_figure(1, len(per), width=4.8)
    for a, (key, d) in zip(ax[0], per.items(), strict=True):
        for (op, churn), marker in ((("J_tau", "base"), "o"), (("H_F", "base"), "s"), (("schur", "base"), "D")):
            pts = [e for e in d["eig"] if e["operator"] == op and e["churn"] == churn]
            if pts:
                a.scatter([e["re"] for e in pts], [e["im"] for e in pts], s=30, marker=marker, label=op)
        moved = [e for e in d["eig"] if e["churn"] != "base"]
        if moved:
            a.scatter([e["re"] for e in moved], [e["im"] for e in moved], s=30, marker="^", label=f"J_tau, {moved[0]['churn']}")
        a.axvline(0.0, color="k", lw=0.8)
        a.set(xlabel="Re λ", ylabel="Im λ", title=f"{key}: top eigenvalues (exact, all parameters)")
        a.legend(fontsize="small")
    res.figure(fig, "jtau_spectrum")


def run(cfg: E6Config, res: Results) -> tuple[dict, dict]:
    for k, v in cfg.checkpoints.items():
        if v:
            checkpoint_path(f"e6.checkpoints.{k}", v)
    per = {k: verify_checkpoint(k, v, cfg) for k, v in cfg.checkpoints.items() if v}
    res.table("e6_checks", [r for d in per.values() for r in d["checks"]])
    res.table("e6_eigenvalues", [r for d in per.values() for r in d["eig"]])
    _plot(res, per)
    summary = {"checkpoints": {k: {"facts": d["facts"], "verdicts": d["verdicts"]} for k, d in per.items()},
               "instance": {"buffer": cfg.buffer, "horizon": cfg.horizon, "n": list(cfg.n), "churn_n": cfg.churn_n},
               "skipped": [k for k, v in cfg.checkpoints.items() if not v],
               "paper": {"source": "MFSG paper (arXiv 2510.10895): abstract and theorem names",
                         "claim": "existence of an expected Stackelberg equilibrium and local convergence of the "
                                  "learning dynamics (Thm. 1, Thm. 2)"}}
    return summary, {"seed": cfg.seed}
