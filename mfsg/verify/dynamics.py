"""Local convergence of the Stackelberg learning dynamics (model §8 Def. 3, Thm. 2;
Fiez et al. Thm. 4–5): J_τ Hurwitz, the critical timescale ratio τ*, and the discrete-time
spectral radius ρ(I + η_L J_τ) for the learning rates actually used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfsg.config import ConfigError, check_int, check_nonneg
from mfsg.verify.report import CheckResult, check

__all__ = ["TauScanConfig", "TauScan", "max_real", "scan_critical_tau", "hurwitz", "critical_tau", "discrete_time"]


@dataclass(frozen=True)
class TauScanConfig:
    """Log-spaced scan of τ in [tau_min, tau_max], then bisection to relative precision ``rel_tol``.

    ``stability_margin``: J_τ counts as Hurwitz when max Re λ < −margin (guards rounding).
    ``probe``: the check re-tests stability at τ*(1 + probe) and instability at τ*(1 − probe).
    """

    tau_min: float = 1e-3
    tau_max: float = 1e3
    n_grid: int = 25
    rel_tol: float = 1e-6
    stability_margin: float = 1e-10
    probe: float = 1e-3

    def __post_init__(self) -> None:
        check_nonneg("tau_scan.tau_min", self.tau_min)
        if not self.tau_max > self.tau_min > 0:
            raise ConfigError(f"tau_scan.tau_max={self.tau_max!r} is invalid: allowed > tau_min={self.tau_min!r} > 0")
        check_int("tau_scan.n_grid", self.n_grid, 2)
        check_nonneg("tau_scan.rel_tol", self.rel_tol)
        check_nonneg("tau_scan.stability_margin", self.stability_margin)
        check_nonneg("tau_scan.probe", self.probe)


@dataclass
class TauScan:
    """τ* (0.0 if stable on the whole grid, inf if unstable at tau_max) and the evidence."""

    tau_star: float
    grid: np.ndarray
    max_real: np.ndarray  # max Re λ(J_τ) on the grid
    consistent: bool  # stable above τ* on the grid and at τ*(1 + probe), unstable at τ*(1 − probe)


def max_real(d, tau: float) -> float:
    """max Re λ(J_τ)."""
    return float(d.eig_jacobian_tau(tau, k=1).real.max())


def scan_critical_tau(d, cfg: TauScanConfig = TauScanConfig()) -> TauScan:
    """Find τ* such that J_τ is Hurwitz for τ > τ* (on the scanned range) by scan and bisection."""
    grid = np.geomspace(cfg.tau_min, cfg.tau_max, cfg.n_grid)
    mr = np.array([max_real(d, t) for t in grid])
    stable = mr < -cfg.stability_margin
    if not stable[-1]:
        return TauScan(float("inf"), grid, mr, False)
    unstable_idx = np.flatnonzero(~stable)
    if unstable_idx.size == 0:
        return TauScan(0.0, grid, mr, True)
    i = int(unstable_idx.max())
    lo, hi = grid[i], grid[i + 1]
    while hi / lo - 1 > cfg.rel_tol:
        mid = np.sqrt(lo * hi)
        if max_real(d, mid) < -cfg.stability_margin:
            hi = mid
        else:
            lo = mid
    tau_star = float(hi)
    above_ok = bool(stable[i + 1 :].all()) and max_real(d, tau_star * (1 + cfg.probe)) < -cfg.stability_margin
    below_ok = max_real(d, tau_star * (1 - cfg.probe)) >= -cfg.stability_margin
    return TauScan(tau_star, grid, mr, above_ok and below_ok)


def hurwitz(game_name: str, d, tau: float, margin: float = 0.0) -> CheckResult:
    """max Re λ(J_τ) < −margin at the timescale ratio τ used."""
    return check(
        game_name, "hurwitz", max_real(d, tau), 0.0 - margin, "<", path=d.path, detail=f"max Re eig J_tau, tau={tau:g}"
    )


def critical_tau(
    game_name: str,
    d,
    tau_used: float,
    cfg: TauScanConfig = TauScanConfig(),
    known: float | None = None,
    known_tol: float = 1e-4,
) -> list[CheckResult]:
    """τ* by scan/bisection, checked for consistency and below the τ used; against ``known`` if given."""
    scan = scan_critical_tau(d, cfg)
    detail = (
        "stable on the whole grid"
        if scan.tau_star == 0.0
        else ("scan consistent" if scan.consistent else "INCONSISTENT")
    )
    rows = [
        check(
            game_name,
            "tau_critical",
            scan.tau_star if scan.consistent else float("inf"),
            tau_used,
            "<",
            path=d.path,
            detail=f"tau* < tau_used; {detail}",
        )
    ]
    if known is not None:
        err = abs(scan.tau_star - known) / max(known, 1.0)
        rows.append(check(game_name, "tau_critical_known", err, known_tol, path=d.path, detail=f"known tau*={known:g}"))
    return rows


def discrete_time(game_name: str, d, tau: float, eta_leader: float) -> CheckResult:
    """ρ(I + η_L J_τ) < 1 (discrete-time local convergence for the learning rates used)."""
    rho = d.spectral_radius(tau, eta_leader)
    return check(
        game_name, "discrete_time", rho, 1.0, "<", path=d.path, detail=f"rho(I+eta J_tau), eta_L={eta_leader:g}"
    )
