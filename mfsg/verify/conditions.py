"""First- and second-order conditions of a differential Stackelberg equilibrium (model §8 Def. 2;
Fiez, Chasnov & Ratliff arXiv 1906.01217 Def. 4, Prop. 1).

Each function takes the derivatives at the candidate point (:mod:`mfsg.verify.derivatives`,
dense or matrix-free) and returns a :class:`~mfsg.verify.report.CheckResult`. The finite-difference
checks re-solve the follower equilibrium with :func:`~mfsg.verify.solvers.solve_follower`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mfsg.config import check_int, check_nonneg
from mfsg.game.base import DTYPE, Game
from mfsg.verify.report import CheckResult, check
from mfsg.verify.solvers import DEFAULT_SOLVER, SolverConfig, solve_follower, total_gradient

__all__ = [
    "FDConfig",
    "follower_stationarity",
    "leader_stationarity",
    "follower_second_order",
    "leader_second_order",
    "ift_response",
    "schur_vs_total_hessian",
    "gradient_kinds_differ",
    "fd_directions",
]


@dataclass(frozen=True)
class FDConfig:
    """Central finite differences: step ``h`` and at most ``max_dirs`` directions (basis, else random)."""

    h: float = 1e-4
    max_dirs: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        check_nonneg("fd.h", self.h)
        check_int("fd.max_dirs", self.max_dirs, 1)


def fd_directions(dim: int, cfg: FDConfig) -> torch.Tensor:
    """[dim, m] unit directions: the basis if dim ≤ max_dirs, else seeded random orthonormal ones."""
    if dim <= cfg.max_dirs:
        return torch.eye(dim, dtype=DTYPE)
    g = torch.Generator().manual_seed(cfg.seed)
    q, _ = torch.linalg.qr(torch.randn(dim, cfg.max_dirs, generator=g, dtype=DTYPE))
    return q


def _rel(err: float, ref: float) -> float:
    return err / max(ref, 1.0)


def follower_stationarity(game_name: str, d, tol: float) -> CheckResult:
    """‖g_F(x*, y*)‖ ≤ tol."""
    return check(
        game_name, "follower_stationarity", float(d.follower_gradient().norm()), tol, path=d.path, detail="||g_F||"
    )


def leader_stationarity(game_name: str, d, tol: float) -> CheckResult:
    """‖DJ_L‖ = ‖∇_x J_L + Drᵀ ∇_y J_L‖ ≤ tol."""
    return check(
        game_name, "leader_stationarity", float(d.leader_total_gradient().norm()), tol, path=d.path, detail="||DJ_L||"
    )


def follower_second_order(game_name: str, d, margin: float = 0.0) -> CheckResult:
    """max Re λ(H_F) < −margin: the followers' equilibrium is a strict local (differential) Nash one."""
    ev = d.eig_follower(k=1)
    return check(
        game_name, "follower_soc", float(ev.real.max()), 0.0 - margin, "<", path=d.path, detail="max Re eig H_F"
    )


def leader_second_order(game_name: str, d, margin: float = 0.0) -> CheckResult:
    """max Re λ(S) < −margin, S = A − B H_F⁻¹ C_F = d²/dx² J_L(x, r(x)) (Schur complement of J_τ)."""
    ev = d.eig_schur(k=1)
    return check(
        game_name, "leader_soc", float(ev.real.max()), 0.0 - margin, "<", path=d.path, detail="max Re eig Schur(J_tau)"
    )


def ift_response(
    game_name: str, game: Game, d, tol: float, fd: FDConfig = FDConfig(), solver: SolverConfig = DEFAULT_SOLVER
) -> CheckResult:
    """Dr = −H_F⁻¹ ∂g_F/∂x (IFT) against central differences of the re-solved r(x ± h u)."""
    x, y, probs = d.x, d.y, d.w
    U = fd_directions(game.dim_x, fd)
    errs, refs = [], []
    for j in range(U.shape[1]):
        u = U[:, j]
        plus = solve_follower(game, x + fd.h * u, y, probs, solver).y
        minus = solve_follower(game, x - fd.h * u, y, probs, solver).y
        pred = d.response_apply(u)
        errs.append(float((pred - (plus - minus) / (2 * fd.h)).norm()))
        refs.append(float(pred.norm()))
    return check(
        game_name, "ift_response", _rel(max(errs), max(refs)), tol, path=d.path, detail=f"Dr vs FD, {U.shape[1]} dirs"
    )


def schur_vs_total_hessian(
    game_name: str, game: Game, d, tol: float, fd: FDConfig = FDConfig(), solver: SolverConfig = DEFAULT_SOLVER
) -> CheckResult:
    """The Schur complement equals the finite-difference Jacobian of x ↦ DJ_L(x, r(x))."""
    x, y, probs = d.x, d.y, d.w
    U = fd_directions(game.dim_x, fd)
    S = d.schur()
    errs, refs = [], []
    for j in range(U.shape[1]):
        u = U[:, j]
        grads = []
        for s in (1.0, -1.0):
            xs = x + s * fd.h * u
            grads.append(total_gradient(game, xs, solve_follower(game, xs, y, probs, solver).y, probs))
        fd_col = ((grads[0] - grads[1]) / (2 * fd.h)).numpy()
        pred = S @ u.numpy() if isinstance(S, np.ndarray) else S.matvec(u.numpy())
        errs.append(float(np.linalg.norm(pred - fd_col)))
        refs.append(float(np.linalg.norm(pred)))
    return check(
        game_name,
        "schur_vs_fd_hessian",
        _rel(max(errs), max(refs)),
        tol,
        path=d.path,
        detail="Schur vs FD of DJ_L(x,r(x))",
    )


def gradient_kinds_differ(game_name: str, game: Game, x, y, probs, min_gap: float) -> CheckResult:
    """‖g_F − ∇_y(followers' average utility)‖ > min_gap: the two gradients are kept apart (model §8)."""
    gap = float((game.follower_gradient(x, y, probs) - game.follower_welfare_gradient(x, y, probs)).norm())
    return check(game_name, "g_F_vs_welfare_gradient", gap, min_gap, ">", detail="||g_F - grad avg utility||")
