"""All model §8 checks of one candidate equilibrium, on one computation path."""

from __future__ import annotations

from dataclasses import dataclass, field

from mfsg.config import ConfigError, check_nonneg
from mfsg.game.base import Game
from mfsg.verify import conditions, dynamics
from mfsg.verify.derivatives import DEFAULT_OPTIONS, SolveError, SolverOptions, derivatives
from mfsg.verify.report import CheckResult, inconclusive
from mfsg.verify.solvers import DEFAULT_SOLVER, SolverConfig

__all__ = ["Tolerances", "check_equilibrium"]


@dataclass(frozen=True)
class Tolerances:
    """Pass thresholds of the equilibrium checks (absolute, or relative where a check says so)."""

    stationarity: float = 1e-8
    ift: float = 1e-5
    schur_fd: float = 1e-4
    soc_margin: float = 0.0
    tau_scan: dynamics.TauScanConfig = field(default_factory=dynamics.TauScanConfig)
    fd: conditions.FDConfig = field(default_factory=conditions.FDConfig)

    def __post_init__(self) -> None:
        for name in ("stationarity", "ift", "schur_fd", "soc_margin"):
            check_nonneg(f"tolerances.{name}", getattr(self, name))


def check_equilibrium(
    name: str,
    game: Game,
    x,
    y,
    probs=None,
    *,
    path: str = "dense",
    tau: float = 4.0,
    eta_leader: float = 0.05,
    tol: Tolerances = Tolerances(),
    known_tau: float | None = None,
    solver: SolverConfig = DEFAULT_SOLVER,
    options: SolverOptions = DEFAULT_OPTIONS,
    fd_checks: bool = True,
    tau_scan: bool = True,
) -> list[CheckResult]:
    """Stationarity, second-order conditions, IFT response, Schur/FD, J_τ Hurwitz, τ*, ρ(I + ηJ_τ)."""
    if tau <= 0 or eta_leader <= 0:
        raise ConfigError(f"tau={tau!r}, eta_leader={eta_leader!r} are invalid: allowed positive numbers")
    try:
        d = derivatives(game, x, y, probs, path=path, options=options)
        rows = [
            conditions.follower_stationarity(name, d, tol.stationarity),
            conditions.leader_stationarity(name, d, tol.stationarity),
            conditions.follower_second_order(name, d, tol.soc_margin),
            conditions.leader_second_order(name, d, tol.soc_margin),
        ]
        if fd_checks:
            rows.append(conditions.ift_response(name, game, d, tol.ift, tol.fd, solver))
            rows.append(conditions.schur_vs_total_hessian(name, game, d, tol.schur_fd, tol.fd, solver))
        rows.append(dynamics.hurwitz(name, d, tau, tol.soc_margin))
        if tau_scan:
            rows += dynamics.critical_tau(name, d, tau, tol.tau_scan, known=known_tau)
        rows.append(dynamics.discrete_time(name, d, tau, eta_leader))
    except SolveError as err:
        return [inconclusive(name, "equilibrium_checks", f"unconverged solve: {err}", path=path)]
    return rows
