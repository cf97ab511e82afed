"""E6: equilibrium verification of the trained policies (model §8, last paragraph): stationarity
residuals, the J_τ spectrum in the complex plane, the critical ratio τ*, the implicit-function
(IFT) check of the follower response and robustness under churn.

Per checkpoint, on a chosen parameter subset, :class:`mfsg.game.policy_game.PolicyGame` gives
stochastic estimates with error bars (R seeds) and finite-difference blocks A, B, C, H:

- residuals and verdicts: :func:`mfsg.game.policy_game.policy_checks` (gradient-play leader, as PPO);
- spectrum: the eigenvalues of J_τ = [[A, B], [τC, τH]] at the run's τ, from the seed-mean blocks
  and from each seed's blocks (the scatter shows the estimation noise);
- τ*: :func:`mfsg.verify.dynamics.scan_critical_tau` on the seed-mean J_τ;
- IFT: Dr = −H⁻¹C (model §8 Lemma 2) predicts how the follower must move to keep g_F fixed when the
  leader moves along u (the top right singular vector of C). With common random numbers,
  ‖Δg_F along (u, Dr·u)‖ / ‖Δg_F along (u, 0)‖ should be ≪ 1; the row passes below ``ift_tol``;
- churn (model §8 Corollary): P_N shifted by ``churn_shift`` followers. Utilities are linear in the
  mixture P_N(p) = (1 − p)·base + p·target, so ∂G/∂p = G_target − G_base for G = [∇_x J_L; g_F], and
  the IFT predicts dz*/dp = −(∂G/∂z)⁻¹ ∂G/∂p with ∂G/∂z = [[A, B], [C, H]]. Re-solving a stochastic
  policy game is out of reach, so the prediction is reported, not cross-checked; with
  ``churn_blocks`` the J_τ spectrum is re-estimated under the target and its Hurwitz check reported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from mfsg.config import ChurnConfig, ConfigError, check_int, check_nonneg, check_prob
from mfsg.experiments.common import Results, check_bool, check_checkpoints, checkpoint_path, new_figure, progress
from mfsg.game.base import DTYPE
from mfsg.game.policy_game import PolicyGame, PolicyGameConfig, checkpoint_game, policy_checks
from mfsg.learn import device as devices
from mfsg.verify.dynamics import TauScanConfig, scan_critical_tau

NAME = "e6"
CHECKPOINT_KEYS = ("mfsg", "mappo", "llm_pl")
HURWITZ_MARGIN = 0.0


@dataclass(frozen=True)
class Config:
    """Checkpoints, parameter subsets per checkpoint (absent: the default subset), estimator budget."""

    checkpoints: dict = field(default_factory=dict)
    leader_subset: dict = field(default_factory=dict)
    follower_subset: dict = field(default_factory=dict)
    episodes: int = 256
    repeats: int = 8
    fd_eps: float = 0.01
    confidence: float = 0.95
    seed: int = 0
    tau: float = 0.0  # 0: the run's own ppo.tau
    tau_min: float = 1e-3
    tau_max: float = 1e3
    tau_grid: int = 25
    ift_tol: float = 0.5
    churn_shift: int = 1
    churn_blocks: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoints", check_checkpoints("e6.checkpoints", self.checkpoints, CHECKPOINT_KEYS))
        for name in ("leader_subset", "follower_subset"):
            object.__setattr__(self, name, _subsets(f"e6.{name}", getattr(self, name)))
        self.game_config()
        check_nonneg("e6.tau", self.tau)
        TauScanConfig(tau_min=self.tau_min, tau_max=self.tau_max, n_grid=self.tau_grid)
        check_nonneg("e6.ift_tol", self.ift_tol)
        check_int("e6.churn_shift", self.churn_shift, -8, 8)
        check_bool("e6.churn_blocks", self.churn_blocks)
        check_prob("e6.confidence", self.confidence, open_low=True, open_high=True)
        if not any(self.checkpoints.values()):
            raise ConfigError("e6.checkpoints is invalid: allowed at least one checkpoint path")

    def game_config(self) -> PolicyGameConfig:
        return PolicyGameConfig(episodes=self.episodes, repeats=self.repeats, fd_eps=self.fd_eps, seed=self.seed,
                                confidence=self.confidence)


def _subsets(field_name: str, table) -> dict[str, tuple[str, ...]]:
    """``key = ["param spec", ...]`` per checkpoint key (see :func:`mfsg.game.policy_game.parse_subset`)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{field_name}={table!r} is invalid: allowed a table of checkpoint = [parameter specs]")
    for k, v in table.items():
        if k not in CHECKPOINT_KEYS:
            raise ConfigError(f"{field_name}.{k} is not a known checkpoint: allowed {', '.join(CHECKPOINT_KEYS)}")
        if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{field_name}.{k}={v!r} is invalid: allowed a non-empty list of parameter specs")
    return {k: tuple(v) for k, v in table.items()}


class _MeanJacobian:
    """The seed-mean J_τ of finite-difference blocks, with the interface the τ* scan expects."""

    path = "stochastic"

    def __init__(self, blocks):
        self.blocks = blocks

    def eig_jacobian_tau(self, tau: float, k: int = 6) -> np.ndarray:
        ev = np.linalg.eigvals(self.blocks.jacobian_tau(tau))
        return ev[np.argsort(-ev.real)][:k]


def _tau_reading(tau_star: float, cfg: Config) -> str:
    if tau_star == float("inf"):
        return f"inf: J_tau is not Hurwitz at tau_max={cfg.tau_max:g} (no timescale ratio stabilizes this point)"
    if tau_star == 0.0:
        return f"0: J_tau is Hurwitz on the whole grid [{cfg.tau_min:g}, {cfg.tau_max:g}]"
    return f"J_tau is Hurwitz for tau > {tau_star:.4g} on the scanned range"


def shifted_churn(c: ChurnConfig, shift: int) -> ChurnConfig:
    """P_N with ``shift`` more followers (a follower joins the distribution when shift = 1)."""
    if c.kind == "fixed":
        return dataclasses.replace(c, n=max(1, c.n + shift))
    return dataclasses.replace(c, n_min=max(1, c.n_min + shift), n_max=max(1, c.n_max + shift))


def ift_check(game: PolicyGame, blocks, eps: float) -> dict:
    """Δg_F along (u, Dr·u) vs along (u, 0), u the top right singular vector of C; per-seed CRN."""
    A, B, C, H = (m.mean(axis=0) for m in (blocks.A, blocks.B, blocks.C, blocks.H))
    cond = float(np.linalg.cond(H))
    Dr = -np.linalg.solve(H, C)
    u = np.linalg.svd(C)[2][0]
    x0, y0 = game.x0, game.y0
    ut, vt = torch.as_tensor(u, dtype=DTYPE), torch.as_tensor(Dr @ u, dtype=DTYPE)
    moved, fixed = [], []
    for r in range(game.cfg.repeats):
        s = game.seed_of(r)
        plus, minus = game.sample(x0 + eps * ut, y0 + eps * vt, s), game.sample(x0 - eps * ut, y0 - eps * vt, s)
        moved.append((plus["g_F"] - minus["g_F"]) / (2 * eps))
        fixed.append(blocks.C[r] @ u)
    moved, fixed = np.array(moved), np.array(fixed)
    ratio = float(np.linalg.norm(moved.mean(0)) / max(np.linalg.norm(fixed.mean(0)), 1e-300))
    return {"cond_H": cond, "ratio": ratio, "dg_F_response": float(np.linalg.norm(moved.mean(0))),
            "dg_F_leader_only": float(np.linalg.norm(fixed.mean(0))), "Dr_norm": float(np.linalg.norm(Dr, 2))}


def _check_rows(key: str, results) -> list[dict]:
    return [{"checkpoint": key, "game": c.game, "check": c.check, "value": c.value, "tolerance": c.tolerance,
             "op": c.op, "verdict": c.verdict, "detail": c.detail} for c in results]


def _eig_rows(key: str, tau: float, blocks, where: str) -> list[dict]:
    rows = [{"checkpoint": key, "churn": where, "tau": tau, "seed": "mean", "re": complex(z).real, "im": complex(z).imag}
            for z in np.linalg.eigvals(blocks.jacobian_tau(tau))]
    for r in range(blocks.repeats):
        rows += [{"checkpoint": key, "churn": where, "tau": tau, "seed": r, "re": complex(z).real,
                  "im": complex(z).imag} for z in np.linalg.eigvals(blocks.jacobian_tau(tau, [r]))]
    return rows


def verify_checkpoint(key: str, path: str, cfg: Config) -> dict:
    """Every E6 quantity of one checkpoint."""
    game, run_tau = checkpoint_game(checkpoint_path(f"e6.checkpoints.{key}", path), cfg.game_config(),
                                    leader_subset=cfg.leader_subset.get(key), follower_subset=cfg.follower_subset.get(key),
                                    name=f"policy[{path}]",  # the path as configured: no machine path in results
                                    device=devices.current())
    tau = cfg.tau or run_tau
    progress(f"e6: {key}: finite-difference blocks ({game.dim_x}+{game.dim_y} coordinates, {cfg.repeats} seeds)")
    blocks = game.blocks()
    checks = policy_checks(game, tau, blocks=blocks)
    scan = scan_critical_tau(_MeanJacobian(blocks), TauScanConfig(cfg.tau_min, cfg.tau_max, cfg.tau_grid))
    progress(f"e6: {key}: IFT check")
    ift = ift_check(game, blocks, cfg.fd_eps)
    out = {"tau": tau, "dim_x": game.dim_x, "dim_y": game.dim_y, "checks": _check_rows(key, checks),
           "eig": _eig_rows(key, tau, blocks, "base"), "tau_star": scan.tau_star, "tau_scan_consistent": scan.consistent,
           "tau_star_reading": _tau_reading(scan.tau_star, cfg),
           "tau_grid": scan.grid.tolist(), "tau_max_real": scan.max_real.tolist(), "ift": ift,
           "J_L": float(blocks.at.J_L.mean), "J_F": float(blocks.at.J_F.mean),
           "seeds": [game.seed_of(r) for r in range(cfg.repeats)]}
    out["checks"].append({"checkpoint": key, "game": game.name, "check": "ift_response", "value": ift["ratio"],
                          "tolerance": cfg.ift_tol, "op": "<", "verdict": "pass" if ift["ratio"] < cfg.ift_tol else "fail",
                          "detail": f"|dg_F along (u, Dr u)| / |dg_F along (u, 0)|; cond(H_F)={ift['cond_H']:.3g}"})
    # churn: a follower joins (or leaves) the distribution P_N
    target_env = dataclasses.replace(game.env_cfg, churn=shifted_churn(game.env_cfg.churn, cfg.churn_shift))
    tgame = PolicyGame(game.leader, game.follower, target_env, leader_subset=cfg.leader_subset.get(key),
                       follower_subset=cfg.follower_subset.get(key), cfg=cfg.game_config(), name=f"{game.name}@churn")
    G = lambda est: np.concatenate([est.grad_x_L.mean, est.g_F.mean])  # noqa: E731
    progress(f"e6: {key}: churn shift {cfg.churn_shift}")
    tblocks_at = None
    if cfg.churn_blocks:
        tblocks = tgame.blocks()
        tblocks_at = tblocks.at
        out["eig"] += _eig_rows(key, tau, tblocks, "target")
        max_re_t = float(np.linalg.eigvals(tblocks.jacobian_tau(tau)).real.max())
        out["checks"].append({"checkpoint": key, "game": tgame.name, "check": "hurwitz_under_churn",
                              "value": max_re_t, "tolerance": HURWITZ_MARGIN, "op": "<",
                              "verdict": "pass" if max_re_t < HURWITZ_MARGIN else "fail",
                              "detail": f"max Re eig J_tau (seed-mean), P_N shifted by {cfg.churn_shift}"})
    est_t = tblocks_at if tblocks_at is not None else tgame.estimate()
    dG = G(est_t) - G(blocks.at)
    dGdz = blocks.jacobian_tau(1.0)
    dz = -np.linalg.solve(dGdz, dG)
    out["churn"] = {"shift": cfg.churn_shift, "target_churn": dataclasses.asdict(target_env.churn),
                    "dG_dp_norm": float(np.linalg.norm(dG)), "dz_dp_norm": float(np.linalg.norm(dz)),
                    "dz_dp": dz.tolist(), "cond_dG_dz": float(np.linalg.cond(dGdz)),
                    "J_L_target": float(est_t.J_L.mean), "J_F_target": float(est_t.J_F.mean)}
    return out


def _plot(res: Results, per: dict[str, dict]) -> None:
    fig, ax = new_figure(1, len(per), width=4.8)
    for a, (key, d) in zip(ax[0], per.items(), strict=True):
        for where, marker in (("base", "o"), ("target", "^")):
            seeds = [e for e in d["eig"] if e["churn"] == where and e["seed"] != "mean"]
            mean = [e for e in d["eig"] if e["churn"] == where and e["seed"] == "mean"]
            if seeds:
                a.scatter([e["re"] for e in seeds], [e["im"] for e in seeds], s=8, alpha=0.25, marker=marker)
                a.scatter([e["re"] for e in mean], [e["im"] for e in mean], s=40, marker=marker,
                          label=f"{where} P_N (seed mean)")
        a.axvline(0.0, color="k", lw=0.8)
        a.set(xlabel="Re λ", ylabel="Im λ", title=f"{key}: J_τ, τ = {d['tau']:g}")
        a.legend(fontsize="small")
    res.figure(fig, "jtau_spectrum")
    fig, ax = new_figure()
    for key, d in per.items():
        ax[0, 0].semilogx(d["tau_grid"], d["tau_max_real"], marker=".", label=f"{key} (τ* = {d['tau_star']:.3g})")
    ax[0, 0].axhline(0.0, color="k", lw=0.8)
    ax[0, 0].set(xlabel="timescale ratio τ", ylabel="max Re λ(J_τ)")
    ax[0, 0].legend(fontsize="small")
    res.figure(fig, "tau_scan")


def run(cfg: Config, res: Results) -> tuple[dict, dict]:
    for k, v in cfg.checkpoints.items():
        if v:
            checkpoint_path(f"e6.checkpoints.{k}", v)
    per = {k: verify_checkpoint(k, v, cfg) for k, v in cfg.checkpoints.items() if v}
    res.table("e6_checks", [r for d in per.values() for r in d["checks"]])
    res.table("e6_eigenvalues", [r for d in per.values() for r in d["eig"]])
    res.table("e6_tau_scan", [{"checkpoint": k, "tau": t, "max_real": m} for k, d in per.items()
                              for t, m in zip(d["tau_grid"], d["tau_max_real"], strict=True)])
    _plot(res, per)
    summary = {"checkpoints": {k: {kk: v for kk, v in d.items() if kk not in ("eig", "tau_grid", "tau_max_real")}
                               for k, d in per.items()},
               "skipped": [k for k, v in cfg.checkpoints.items() if not v],
               "paper": {"source": "MFSG paper abstract and theorem names (papers/002_*.txt)",
                         "claim": "existence of an expected Stackelberg equilibrium and local convergence of the "
                                  "learning dynamics (Thm. 1, Thm. 2)"}}
    return summary, {"seed": cfg.seed, "rollout_seeds": {k: d["seeds"] for k, d in per.items()}}
