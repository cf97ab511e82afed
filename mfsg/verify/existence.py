"""Numerical evidence for existence of an expected Stackelberg equilibrium on compact parameter
sets (model §8 Thm. 1, Lemma 1: continuous utilities on compact sets attain their maxima).

On the box X × Y = [−b, b]^dx × [−b, b]^dy (b = ``game.bound`` unless given):

1. *best responses attained*: for sampled leader parameters x, projected follower play reaches a
   symmetric equilibrium in Y: the projected-gradient residual ‖y − Π_Y(y + g_F)‖ vanishes;
2. *leader value continuous*: along random segments through X, V(x) = J_L(x, r(x)) has a finite
   Lipschitz estimate L̂ = max |ΔV|/‖Δx‖ over adjacent grid points, and refining the steepest
   cell does not make it grow (a jump of size δ would make L̂ ≈ δ/h grow like 1/h, by the
   refinement factor at every level);
3. *maximizer found*: projected ascent on V along DJ_L from the best sample ends at a point that
   beats every sample and satisfies the box KKT condition ‖x − Π_X(x + DJ_L)‖ ≈ 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mfsg.config import check_int, check_nonneg
from mfsg.game.base import DTYPE, Game
from mfsg.verify.report import CheckResult, check
from mfsg.verify.solvers import DEFAULT_SOLVER, SolverConfig, solve_follower, total_gradient

__all__ = ["ExistenceConfig", "projected_follower", "leader_value_in_box", "existence_checks"]


@dataclass(frozen=True)
class ExistenceConfig:
    n_samples: int = 12
    n_segments: int = 3
    segment_points: int = 12
    refine: int = 4  # the steepest cell is split into this many cells per level
    levels: int = 2
    refine_slack: float = 0.5  # L̂ after refinement ≤ (1 + slack) L̂ of the coarse grid
    radius: float | None = None  # box half-width; None = game.bound
    follower_steps: int = 2000
    follower_step: float = 0.5
    ascent_steps: int = 400
    residual_tol: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("existence.n_samples", self.n_samples, 1)
        check_int("existence.n_segments", self.n_segments, 1)
        check_int("existence.segment_points", self.segment_points, 2)
        check_int("existence.refine", self.refine, 2)
        check_int("existence.levels", self.levels, 1)
        check_nonneg("existence.refine_slack", self.refine_slack)
        check_int("existence.follower_steps", self.follower_steps, 1)
        check_nonneg("existence.follower_step", self.follower_step)
        check_int("existence.ascent_steps", self.ascent_steps, 0)
        check_nonneg("existence.residual_tol", self.residual_tol)


def _proj(v: torch.Tensor, b: float) -> torch.Tensor:
    return v.clamp(-b, b)


def projected_follower(
    game: Game,
    x,
    y0,
    b: float,
    probs=None,
    cfg: ExistenceConfig = ExistenceConfig(),
    solver: SolverConfig = DEFAULT_SOLVER,
) -> tuple[torch.Tensor, float]:
    """A symmetric follower equilibrium in [−b, b]^dy and its projected-gradient residual."""
    w = game.probs(probs)
    sol = solve_follower(game, x, _proj(y0, b), w, solver)
    y = sol.y
    residual = lambda yy: float((yy - _proj(yy + game.follower_gradient(x, yy, w), b)).norm())  # noqa: E731
    if sol.converged and bool((y.abs() <= b).all()):
        return y, residual(y)
    y = _proj(y0, b)
    for _ in range(cfg.follower_steps):
        y = _proj(y + cfg.follower_step * game.follower_gradient(x, y, w), b)
        if residual(y) <= cfg.residual_tol:
            break
    return y, residual(y)


def leader_value_in_box(
    game: Game,
    x,
    y0,
    b: float,
    probs=None,
    cfg: ExistenceConfig = ExistenceConfig(),
    solver: SolverConfig = DEFAULT_SOLVER,
) -> tuple[float, torch.Tensor, float]:
    """(V(x), r(x), follower residual) with r(x) the follower equilibrium in the box."""
    y, res = projected_follower(game, x, y0, b, probs, cfg, solver)
    return float(game.expected_leader(x, y, probs)), y, res


def _segment_growth(game, a, b, y0, box, probs, cfg, solver) -> tuple[float, float]:
    """(coarse, refined) Lipschitz estimates of V along the segment a → b (refining the steepest cell)."""
    cache: dict[float, float] = {}
    y = y0

    def value(t: float) -> float:
        nonlocal y
        if t not in cache:
            cache[t], y, _ = leader_value_in_box(game, a + t * (b - a), y, box, probs, cfg, solver)
        return cache[t]

    length = float((b - a).norm())
    ts = [i / (cfg.segment_points - 1) for i in range(cfg.segment_points)]
    slopes = [abs(value(t1) - value(t0)) / ((t1 - t0) * length) for t0, t1 in zip(ts, ts[1:], strict=False)]
    coarse = max(slopes)
    lo, hi = ts[slopes.index(coarse)], ts[slopes.index(coarse) + 1]
    fine = coarse
    for _ in range(cfg.levels):
        sub = [lo + (hi - lo) * i / cfg.refine for i in range(cfg.refine + 1)]
        cell = [abs(value(t1) - value(t0)) / ((t1 - t0) * length) for t0, t1 in zip(sub, sub[1:], strict=False)]
        fine = max(cell)
        lo, hi = sub[cell.index(fine)], sub[cell.index(fine) + 1]
    return coarse, fine


def _ascent(game, x, y, b, probs, cfg, solver):
    value, y, _ = leader_value_in_box(game, x, y, b, probs, cfg, solver)
    eta = 1.0
    kkt = lambda xx, yy: float((xx - _proj(xx + total_gradient(game, xx, yy, probs), b)).norm())  # noqa: E731
    for _ in range(cfg.ascent_steps):
        if kkt(x, y) <= cfg.residual_tol:
            break
        d = total_gradient(game, x, y, probs)
        moved = False
        for _ in range(solver.max_backtrack):
            x_new = _proj(x + eta * d, b)
            v_new, y_new, _ = leader_value_in_box(game, x_new, y, b, probs, cfg, solver)
            if v_new > value:
                x, y, value, eta, moved = x_new, y_new, v_new, eta * 2.0, True
                break
            eta *= 0.5
        if not moved:
            break
    return x, y, value, kkt(x, y)


def existence_checks(
    game_name: str,
    game: Game,
    probs=None,
    cfg: ExistenceConfig = ExistenceConfig(),
    solver: SolverConfig = DEFAULT_SOLVER,
) -> list[CheckResult]:
    """The three rows of the module docstring."""
    box = cfg.radius if cfg.radius is not None else game.bound
    gen = torch.Generator().manual_seed(cfg.seed)
    _, y0 = game.initial_point(cfg.seed)
    xs = [(2 * torch.rand(game.dim_x, generator=gen, dtype=DTYPE) - 1) * box for _ in range(cfg.n_samples)]
    vals, ys, res = [], [], []
    for x in xs:
        v, y, r = leader_value_in_box(game, x, y0, box, probs, cfg, solver)
        vals.append(v)
        ys.append(y)
        res.append(r)
    growth, worst = [], (0.0, 0.0)
    for _ in range(cfg.n_segments):
        a, b = [(2 * torch.rand(game.dim_x, generator=gen, dtype=DTYPE) - 1) * box for _ in range(2)]
        coarse, fine = _segment_growth(game, a, b, y0, box, probs, cfg, solver)
        growth.append(fine / max(coarse, 1e-300))
        worst = max(worst, (coarse, fine))
    best = max(range(len(xs)), key=lambda i: vals[i])
    _, _, v_hat, kkt = _ascent(game, xs[best], ys[best], box, probs, cfg, solver)
    return [
        check(
            game_name,
            "existence_best_response",
            max(res),
            cfg.residual_tol,
            detail=f"max projected residual, {len(xs)} x in box b={box:g}",
        ),
        check(
            game_name,
            "existence_continuity",
            max(growth),
            1 + cfg.refine_slack,
            detail=f"Lipschitz est. {worst[0]:.3g} -> {worst[1]:.3g} after {cfg.levels} x{cfg.refine} refinements, "
            f"{cfg.n_segments} segments",
        ),
        check(
            game_name,
            "existence_maximizer",
            kkt,
            cfg.residual_tol,
            detail=f"box KKT residual; V*={v_hat:.4g} >= best sample {vals[best]:.4g}: {v_hat >= vals[best]}",
        ),
    ]
