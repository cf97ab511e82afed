"""Robustness of the equilibrium under churn (model §8 Corollary).

P_N moves along the mixture P_N(p) = (1 − p)·base + p·target (e.g. ``target`` = base shifted by
one follower: a follower joins the distribution). With G(z, p) = [DJ_L; g_F] the stacked
stationarity conditions at z = (x, y), the implicit function theorem predicts
dz*/dp = −(∂G/∂z)⁻¹ ∂G/∂p; the check compares it with central differences of re-solved
equilibria, then follows the equilibrium to p = 1 by continuation and checks that J_τ is
still Hurwitz there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import jacfwd

from mfsg.config import check_int, check_nonneg
from mfsg.game.base import DTYPE, ChurnDist, Game
from mfsg.verify.derivatives import Dense
from mfsg.verify.dynamics import max_real
from mfsg.verify.report import CheckResult, check, inconclusive
from mfsg.verify.solvers import DEFAULT_SOLVER, SolverConfig, newton, stacked_jacobian, total_gradient

__all__ = ["RobustnessConfig", "stacked_conditions", "equilibrium_shift", "churn_robustness"]


@dataclass(frozen=True)
class RobustnessConfig:
    h: float = 1e-4  # finite-difference step in p
    continuation_steps: int = 4  # Newton re-solves from p = 0 to p = 1
    ift_tol: float = 1e-5

    def __post_init__(self) -> None:
        check_nonneg("robustness.h", self.h)
        check_int("robustness.continuation_steps", self.continuation_steps, 1)
        check_nonneg("robustness.ift_tol", self.ift_tol)


def _mixture(game: Game, base: ChurnDist, target: ChurnDist, p) -> torch.Tensor:
    return (1 - p) * base.on_support(game.churn.support) + p * target.on_support(game.churn.support)


def stacked_conditions(game: Game, base: ChurnDist, target: ChurnDist):
    """G(z, p) = [DJ_L(x, y; P_N(p)); g_F(x, y; P_N(p))] as a function of (z, p)."""
    dx = game.dim_x

    def G(z, p):
        w = _mixture(game, base, target, p)
        x, y = z[:dx], z[dx:]
        return torch.cat([total_gradient(game, x, y, w), game.follower_gradient(x, y, w)])

    return G


def equilibrium_shift(game: Game, x, y, base: ChurnDist, target: ChurnDist) -> torch.Tensor:
    """dz*/dp = −(∂G/∂z)⁻¹ ∂G/∂p at p = 0 (∂G/∂z = J_τ at τ = 1, :class:`Dense`)."""
    G = stacked_conditions(game, base, target)
    z, p = torch.cat([x, y]).detach(), torch.tensor(0.0, dtype=DTYPE)
    dGdz = torch.as_tensor(Dense(game, x, y, _mixture(game, base, target, 0.0)).jacobian_tau(1.0))
    return -torch.linalg.solve(dGdz, jacfwd(G, argnums=1)(z, p))


def churn_robustness(
    game_name: str,
    game: Game,
    x,
    y,
    base: ChurnDist,
    target: ChurnDist,
    tau: float,
    cfg: RobustnessConfig = RobustnessConfig(),
    solver: SolverConfig = DEFAULT_SOLVER,
) -> list[CheckResult]:
    """IFT prediction vs re-solving, and J_τ Hurwitz at the equilibrium of ``target``."""
    G = stacked_conditions(game, base, target)
    z0 = torch.cat([x, y]).detach()

    def solve_at(p: float, z: torch.Tensor):
        w = _mixture(game, base, target, p)
        return newton(lambda zz: G(zz, torch.tensor(p, dtype=DTYPE)), z, solver, jac=stacked_jacobian(game, w))

    pred = equilibrium_shift(game, x, y, base, target)
    (zp, rp, _), (zm, rm, _) = solve_at(cfg.h, z0), solve_at(-cfg.h, z0)
    if max(rp, rm) > solver.tol:
        why = f"unconverged solve: re-solve did not converge (residual {max(rp, rm):.2e})"
        return [inconclusive(game_name, "churn_ift", why, path="dense")]
    fd = (zp - zm) / (2 * cfg.h)
    err = float((pred - fd).norm()) / max(float(pred.norm()), 1.0)
    rows = [
        check(
            game_name,
            "churn_ift",
            err,
            cfg.ift_tol,
            path="dense",
            detail=f"dz*/dp IFT vs re-solve, |dz*/dp|={float(pred.norm()):.3g}",
        )
    ]
    z, res, step = z0, 0.0, 1.0 / cfg.continuation_steps
    for k in range(1, cfg.continuation_steps + 1):
        z, res, _ = solve_at(k * step, z + step * pred)  # predictor (IFT tangent at p = 0), Newton corrector
    if res > solver.tol:
        rows.append(
            inconclusive(game_name, "churn_hurwitz", f"unconverged solve: continuation to p=1 did not converge ({res:.2e})",
                         path="dense")
        )
        return rows
    dx = game.dim_x
    d = Dense(game, z[:dx], z[dx:], _mixture(game, base, target, 1.0))
    moved = float((z - z0).norm())
    rows.append(
        check(
            game_name,
            "churn_hurwitz",
            max_real(d, tau),
            0.0,
            "<",
            path="dense",
            detail=f"max Re eig J_tau at shifted P_N, |dz*|={moved:.3g}",
        )
    )
    return rows
