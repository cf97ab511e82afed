"""Equilibrium solvers for the checks of model §8.

- :func:`solve_follower`: the symmetric follower equilibrium r(x) (g_F(x, y) = 0) by damped
  Newton on g_F, falling back to gradient play (y ← y + η g_F) when Newton stalls;
- :func:`solve_stackelberg`: a differential Stackelberg equilibrium: gradient ascent on
  V(x) = J_L(x, r(x)) along the total derivative DJ_L (follower re-solved at every step), then
  damped Newton on the stacked conditions G(z) = [DJ_L; g_F] = 0;
- :func:`solve_nash`: the simultaneous-play point ∇_x J_L = 0, g_F = 0 (for comparison).

All solves are dense (``torch.func.jacfwd`` Jacobians): they serve the small verification
games; the matrix-free path is for checks at a given point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jacfwd

from mfsg.config import check_int, check_nonneg
from mfsg.game.base import Game

__all__ = [
    "SolverConfig",
    "Solution",
    "newton",
    "solve_follower",
    "solve_stackelberg",
    "solve_nash",
    "leader_value",
    "total_gradient",
    "DEFAULT_SOLVER",
    "stacked_jacobian",
]

Field = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SolverConfig:
    """Tolerances and budgets of the equilibrium solvers."""

    tol: float = 1e-10  # ‖residual‖ at which a solve stops
    max_newton: int = 60
    max_backtrack: int = 30
    sufficient_decrease: float = 1e-4  # Armijo constant on the residual norm
    gradient_step: float = 0.5  # gradient-play step when Newton cannot decrease the residual
    max_ascent: int = 300  # leader ascent steps before Newton polishing
    ascent_switch: float = 1e-3  # ‖DJ_L‖ below which ascent hands over to Newton

    def __post_init__(self) -> None:
        check_nonneg("solver.tol", self.tol)
        check_int("solver.max_newton", self.max_newton, 1)
        check_int("solver.max_backtrack", self.max_backtrack, 1)
        check_nonneg("solver.sufficient_decrease", self.sufficient_decrease)
        check_nonneg("solver.gradient_step", self.gradient_step)
        check_int("solver.max_ascent", self.max_ascent, 0)
        check_nonneg("solver.ascent_switch", self.ascent_switch)


DEFAULT_SOLVER = SolverConfig()


@dataclass
class Solution:
    """A solver's answer: the point, its residual norm and whether ``tol`` was reached."""

    x: torch.Tensor
    y: torch.Tensor
    residual: float
    iterations: int
    converged: bool


def newton(
    F: Field,
    z0: torch.Tensor,
    cfg: SolverConfig = DEFAULT_SOLVER,
    fallback: Field | None = None,
    jac: Callable[[torch.Tensor], torch.Tensor] | None = None,
):
    """Damped Newton on F(z) = 0 with backtracking on ‖F‖; ``fallback(z)`` gives a step when it stalls.

    ``jac(z)`` gives ∂F/∂z (default: ``torch.func.jacfwd(F)``). Returns (z, ‖F(z)‖, iterations).
    """
    z = z0.detach().clone()
    f = F(z)
    norm = float(f.norm())
    it = 0
    for it in range(1, cfg.max_newton + 1):
        if norm <= cfg.tol:
            return z, norm, it - 1
        J = jac(z) if jac is not None else jacfwd(F)(z)
        try:
            step = -torch.linalg.solve(J, f)
        except RuntimeError:  # singular Jacobian
            step = None
        accepted = False
        if step is not None and bool(torch.isfinite(step).all()):
            s = 1.0
            for _ in range(cfg.max_backtrack):
                f_new = F(z + s * step)
                if float(f_new.norm()) <= (1 - cfg.sufficient_decrease * s) * norm:
                    z, f, norm, accepted = z + s * step, f_new, float(f_new.norm()), True
                    break
                s *= 0.5
        if not accepted:
            if fallback is None:
                break
            z = z + fallback(z)
            f = F(z)
            norm = float(f.norm())
    return z, norm, it


def solve_follower(
    game: Game, x: torch.Tensor, y0: torch.Tensor, probs=None, cfg: SolverConfig = DEFAULT_SOLVER
) -> Solution:
    """r(x): the symmetric follower equilibrium g_F(x, y) = 0 from ``y0``."""
    w = game.probs(probs)
    F = lambda y: game.follower_gradient(x, y, w)  # noqa: E731
    y, res, it = newton(F, y0, cfg, fallback=lambda y: cfg.gradient_step * F(y))
    return Solution(x.detach(), y, res, it, res <= cfg.tol)


def total_gradient(game: Game, x, y, probs=None) -> torch.Tensor:
    """DJ_L(x, y) = ∇_x J_L − C_Fᵀ H_F⁻ᵀ ∇_y J_L (dense; differentiable by torch.func)."""
    w = game.probs(probs)
    gF = lambda xx, yy: game.follower_gradient(xx, yy, w)  # noqa: E731
    H, C = jacfwd(gF, argnums=1)(x, y), jacfwd(gF, argnums=0)(x, y)
    return game.leader_gradient_x(x, y, w) - C.T @ torch.linalg.solve(H.T, game.leader_gradient_y(x, y, w))


def leader_value(game: Game, x, y0, probs=None, cfg: SolverConfig = DEFAULT_SOLVER) -> tuple[float, torch.Tensor]:
    """V(x) = J_L(x, r(x)) with r(x) solved from ``y0``; returns (V, r(x))."""
    sol = solve_follower(game, x, y0, probs, cfg)
    return float(game.expected_leader(x, sol.y, probs)), sol.y


def _leader_ascent(game, x, y, probs, cfg):
    value, y = leader_value(game, x, y, probs, cfg)
    eta = 1.0
    for _ in range(cfg.max_ascent):
        d = total_gradient(game, x, y, probs)
        if float(d.norm()) <= cfg.ascent_switch:
            break
        for _ in range(cfg.max_backtrack):
            x_new = x + eta * d
            v_new, y_new = leader_value(game, x_new, y, probs, cfg)
            if v_new >= value + cfg.sufficient_decrease * eta * float(d @ d):
                x, y, value, eta = x_new, y_new, v_new, eta * 2.0
                break
            eta *= 0.5
        else:
            break
    return x, y


def solve_stackelberg(game: Game, x0, y0, probs=None, cfg: SolverConfig = DEFAULT_SOLVER) -> Solution:
    """A differential Stackelberg equilibrium (model §8 Def. 2) from (x0, y0)."""
    x, y = _leader_ascent(game, x0.detach(), y0.detach(), probs, cfg)
    dx = game.dim_x

    def G(z):
        return torch.cat(
            [total_gradient(game, z[:dx], z[dx:], probs), game.follower_gradient(z[:dx], z[dx:], game.probs(probs))]
        )

    z, res, it = newton(G, torch.cat([x, y]), cfg, jac=stacked_jacobian(game, probs))
    return Solution(z[:dx], z[dx:], res, it, res <= cfg.tol)


def stacked_jacobian(game: Game, probs=None) -> Callable[[torch.Tensor], torch.Tensor]:
    """z ↦ ∂[DJ_L; g_F]/∂z = J_τ at τ = 1 with the Stackelberg leader update (dense)."""
    from mfsg.verify.derivatives import Dense

    dx = game.dim_x
    return lambda z: torch.as_tensor(Dense(game, z[:dx], z[dx:], probs).jacobian_tau(1.0))


def solve_nash(game: Game, x0, y0, probs=None, cfg: SolverConfig = DEFAULT_SOLVER) -> Solution:
    """The simultaneous-play (Nash) point: ∇_x J_L = 0 and g_F = 0, by Newton."""
    dx, w = game.dim_x, game.probs(probs)

    def G(z):
        return torch.cat([game.leader_gradient_x(z[:dx], z[dx:], w), game.follower_gradient(z[:dx], z[dx:], w)])

    z, res, it = newton(G, torch.cat([x0, y0]).detach(), cfg)
    return Solution(z[:dx], z[dx:], res, it, res <= cfg.tol)
