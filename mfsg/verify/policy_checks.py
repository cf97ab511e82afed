"""model §8 check rows of a :class:`~mfsg.game.policy_game.PolicyGame` (the estimator path of the full-size
game): equivalence tests on the estimates' error bars.

- stationarity (g_F, and ∇_x J_L or DJ_L): an equivalence test of "the gradient is 0". The tolerance is
  relative to the gradient's scale: ``rel_tol`` × ‖gradient‖ at a seeded random point of the subset
  (the players' subset moved by a standard normal step, :func:`reference_scale`). Every coordinate's
  Bonferroni-corrected Student-t interval inside ±tol: pass; one outside: fail; otherwise
  inconclusive, with the episodes per estimate that would decide;
- the follower's second-order condition and J_τ Hurwitz: the jackknife interval of the top eigenvalue
  (of sym(H_F), of the real parts of J_τ) below 0: pass, above 0: fail, straddling: inconclusive;
- g_F vs the welfare gradient: significantly apart passes; not distinguishable is inconclusive.
"""

from __future__ import annotations

import numpy as np
import torch

from mfsg.config import ConfigError, check_nonneg
from mfsg.game.policy_game import Blocks, PolicyEstimates, PolicyGame
from mfsg.game.statistics import SeedEstimate, critical_value, jackknife, z_max
from mfsg.seeds import derive
from mfsg.verify.derivatives import LEADER_UPDATES, top_eigenvalues
from mfsg.verify.report import CheckResult, check, equivalence_check, inconclusive, interval_check

__all__ = ["REL_TOL", "reference_scale", "policy_checks"]

REL_TOL = 0.05  # stationarity: |gradient| within 5 % of its norm at a random point


def reference_scale(game: PolicyGame) -> tuple[float, float]:
    """(‖∇_x J_L‖, ‖g_F‖) at a seeded random point: the subset moved by a standard normal step."""
    gen = torch.Generator().manual_seed(derive(game.cfg.seed, "reference_point"))
    x = game.x0 + torch.randn(game.dim_x, generator=gen, dtype=game.x0.dtype)
    y = game.y0 + torch.randn(game.dim_y, generator=gen, dtype=game.y0.dtype)
    est = game.estimate(x, y)
    return float(np.linalg.norm(est.grad_x_L.mean)), float(np.linalg.norm(est.g_F.mean))


def _stationarity(name: str, check_name: str, label: str, mean, se, repeats: int, conf: float, scale: float,
                  rel_tol: float, episodes: int, **extra) -> CheckResult:
    mean, se = np.atleast_1d(mean), np.atleast_1d(se)
    tol = rel_tol * scale
    if not scale > 0:
        return inconclusive(name, check_name, f"degenerate: ||{label}|| at the random reference point is {scale:.3g}",
                            path="stochastic", **extra)
    hw = critical_value(conf, repeats - 1, len(mean)) * se
    return equivalence_check(name, check_name, mean, hw, tol, episodes=episodes,
                             detail=f"max_i |{label}_i| + CI half-width vs tol = {rel_tol:g} x {scale:.3g} "
                             f"(||{label}|| at a random point); ||{label}||={np.linalg.norm(mean):.3g}",
                             norm=float(np.linalg.norm(mean)), estimate=mean.tolist(), se=se.tolist(), **extra)


def policy_checks(game: PolicyGame, tau: float, *, update_rule: str = "gradient", k: int = 3,
                  blocks: Blocks | None = None, scale: tuple[float, float] | None = None,
                  rel_tol: float = REL_TOL) -> list[CheckResult]:
    """model §8 conditions at the players' point from stochastic estimates with error bars (see the module).

    ``scale`` = (‖∇_x J_L‖, ‖g_F‖) at a random point (default: :func:`reference_scale`).
    ``update_rule="stackelberg"`` tests DJ_L = ∇_x J_L − Cᵀ H⁻ᵀ ∇_y J_L (jackknife errors)."""
    if update_rule not in LEADER_UPDATES:
        raise ConfigError(f"update_rule={update_rule!r} is invalid: allowed one of {', '.join(LEADER_UPDATES)}")
    check_nonneg("rel_tol", rel_tol)
    b = blocks if blocks is not None else game.blocks()
    est: PolicyEstimates = b.at
    R, conf, name, episodes = b.repeats, game.cfg.confidence, game.name, game.cfg.episodes
    sx, sy = scale if scale is not None else reference_scale(game)
    utilities = {"J_L": float(est.J_L.mean), "J_L_se": float(est.J_L.se), "J_F": float(est.J_F.mean),
                 "J_F_se": float(est.J_F.se)}
    rows = [_stationarity(name, "follower_stationarity", "g_F", est.g_F.mean, est.g_F.se, R, conf, sy, rel_tol,
                          episodes, **utilities)]
    if update_rule == "gradient":
        rows.append(_stationarity(name, "leader_stationarity", "grad_x J_L", est.grad_x_L.mean, est.grad_x_L.se, R,
                                  conf, sx, rel_tol, episodes))
    else:
        def total(gx, gy, C, H):
            return gx - C.T @ np.linalg.solve(H.T, gy)

        try:
            m, se = jackknife(total, [est.grad_x_L.samples, est.grad_y_L.samples, b.C, b.H])
            rows.append(_stationarity(name, "leader_stationarity", "DJ_L", m, se, R, conf, sx, rel_tol, episodes))
        except np.linalg.LinAlgError as err:
            rows.append(inconclusive(name, "leader_stationarity", f"singular solve: H_F ({err})", path="stochastic"))
    crit = critical_value(conf, R - 1)
    k_f = min(k, game.dim_y)
    ev, ev_se = jackknife(lambda H: np.linalg.eigvalsh(0.5 * (H + H.T))[::-1][:k_f], [b.H])
    rows.append(interval_check(name, "follower_soc", ev[0], crit * ev_se[0], 0.0, "<", path="stochastic",
                               detail="max eig sym(H_F), jackknife CI; top " + _pm(ev, ev_se),
                               eig=ev.tolist(), eig_se=ev_se.tolist()))

    def jtau_top(A, B, C, H):
        return np.sort(top_eigenvalues(np.block([[A, B], [tau * C, tau * H]]), game.dim_x + game.dim_y).real)[::-1][:k]

    jt, jt_se = jackknife(jtau_top, [b.A, b.B, b.C, b.H])
    rows.append(interval_check(name, "hurwitz", jt[0], crit * jt_se[0], 0.0, "<", path="stochastic",
                               detail=f"max Re eig J_tau (tau={tau:g}, gradient play), jackknife CI; top "
                               + _pm(jt, jt_se), eig_real=jt.tolist(), eig_real_se=jt_se.tolist()))
    diff = SeedEstimate.of(est.g_F.samples - est.g_welfare.samples)
    z = z_max(diff.mean, diff.se)
    crit_d = critical_value(conf, R - 1, game.dim_y)
    detail = f"max|g_F - g_W|_i/se_i; ||g_F - g_W||={np.linalg.norm(diff.mean):.3g}±{np.linalg.norm(diff.se):.2g}"
    if z > crit_d:
        rows.append(check(name, "g_F_vs_welfare_gradient", z, crit_d, ">", path="stochastic",
                          detail=detail + "; significantly apart", norm=float(np.linalg.norm(diff.mean))))
    else:
        rows.append(inconclusive(name, "g_F_vs_welfare_gradient", detail + "; not distinguishable at these error bars",
                                 path="stochastic", value=z, tolerance=crit_d, op=">"))
    return rows


def _pm(values, ses) -> str:
    return ", ".join(f"{v:.3g}±{e:.2g}" for v, e in zip(values, ses, strict=True))
