"""model §8 checks of trained players on the exact game of a small instance (the exact path).

The game is :class:`~mfsg.game.exact_players.ExactPlayersGame`; the derivatives are
:class:`~mfsg.verify.parameters.ParameterDerivatives` (exact autograd over every policy parameter of
both players, matrix-free). Every tolerance is relative to the scale of its quantity:

- a gradient is compared with its norm at a seeded *random point* (every policy tensor re-drawn
  around its mean with its own standard deviation, as a fresh initialization would be);
- an eigenvalue is compared with the scale of its operator (‖A v‖/‖v‖, the largest over a few seeded
  random v: a lower bound of ‖A‖, one product each): a sign is decided only beyond ``rel_tol`` × that
  scale, a value within it is inconclusive (singular within precision), and an unconverged Krylov
  solve is inconclusive with its reason.

Rows: exact vs Monte Carlo utilities (per number of followers), follower and leader stationarity,
g_F vs the welfare gradient, the follower's second-order condition (H_F), the leader's (the Schur
complement S, needs H_F⁻¹), J_τ Hurwitz at the run's τ, τ* (model §8 Lemma 3: no τ stabilizes when
H_F has an eigenvalue with positive real part) and the discrete-time spectral radius ρ(I + η_L J_τ)
at the run's leader learning rate.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import scipy.stats
import torch

from mfsg.config import check_int, check_nonneg, check_prob
from mfsg.game.exact_players import ExactPlayersGame
from mfsg.seeds import derive
from mfsg.verify.derivatives import SolveError, SolverOptions, top_eigenvalues
from mfsg.verify.parameters import ParameterDerivatives
from mfsg.verify.report import CheckResult, check, inconclusive, ratio_check

__all__ = ["TrainedCheckConfig", "random_point", "trained_checks"]

# Krylov budget for the language players (each product is a second-order autograd pass over ~170k parameters):
# eigenvalues to 1e-6 relative accuracy with a 30-vector basis and at most 30 restarts; GMRES at most 2 x 30
# products (an H_F with a large null space does not converge: the solve is then reported unconverged).
EXACT_OPTIONS = SolverOptions(gmres_rtol=1e-8, gmres_restart=30, gmres_maxiter=2, eigs_tol=1e-6, eigs_maxiter=30,
                              eigs_ncv=30)


@dataclass(frozen=True)
class TrainedCheckConfig:
    """Relative tolerance, Monte Carlo budget (episodes and the confidence of its interval), eigenvalues kept,
    seed of the random reference point and of the episodes."""

    rel_tol: float = 1e-3
    mc_episodes: int = 4000
    confidence: float = 0.999
    k: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        check_nonneg("trained.rel_tol", self.rel_tol)
        check_int("trained.mc_episodes", self.mc_episodes, 2)
        check_prob("trained.confidence", self.confidence, open_low=True, open_high=True)
        check_int("trained.k", self.k, 1)
        check_int("trained.seed", self.seed, 0)


@contextlib.contextmanager
def random_point(game: ExactPlayersGame, seed: int):
    """The players moved to a seeded random point: each policy tensor re-drawn as mean + std · N(0, 1) of its
    own entries (a scalar or constant tensor keeps its value plus a unit normal step)."""
    gen = torch.Generator().manual_seed(derive(seed, "random_point"))

    def draw(params):
        parts = []
        for p in params:
            d = p.detach().reshape(-1)
            std = float(d.std()) if d.numel() > 1 and float(d.std()) > 0 else 1.0
            parts.append(float(d.mean()) + std * torch.randn(d.numel(), generator=gen, dtype=d.dtype))
        return torch.cat(parts)

    with game.at(draw(game.params_x), draw(game.params_y)):
        yield


def _sign_row(name, check_name, lam: float, scale: float, rel_tol: float, detail: str, **extra) -> CheckResult:
    """max Re λ < 0 decided relative to the spectral scale: pass below −rel·scale, fail above +rel·scale."""
    tol = rel_tol * scale
    if not np.isfinite(lam) or not scale > 0:
        return inconclusive(name, check_name, f"{detail}; degenerate: max Re λ={lam:.3g}, scale {scale:.3g}",
                            path="exact_autograd", value=lam, tolerance=-tol, op="<", **extra)
    if lam < -tol:
        return check(name, check_name, lam, -tol, "<", path="exact_autograd", detail=detail, scale=scale, **extra)
    if lam > tol:
        return check(name, check_name, lam, -tol, "<", path="exact_autograd", detail=detail + "; positive: not stable",
                     scale=scale, **extra)
    return inconclusive(name, check_name, f"{detail}; |max Re λ| within {rel_tol:g} x scale {scale:.3g}: singular "
                        "within precision, sign undecided", path="exact_autograd", value=lam, tolerance=-tol, op="<",
                        scale=scale, **extra)


SCALE_PROBES = 3  # random vectors behind an operator's scale


def _spectrum(op, k: int, opts: SolverOptions) -> tuple[np.ndarray, float]:
    """(top-k eigenvalues by real part, the operator's scale max_v ‖A v‖/‖v‖ over seeded random v)."""
    top = top_eigenvalues(op, k, "LR", opts)
    rng = np.random.default_rng(0)
    vs = [rng.standard_normal(op.shape[1]) for _ in range(SCALE_PROBES)]
    return top, max(float(np.linalg.norm(op.matvec(v)) / np.linalg.norm(v)) for v in vs)


def trained_checks(game: ExactPlayersGame, tau: float, eta_leader: float, cfg: TrainedCheckConfig = TrainedCheckConfig(),
                   opts: SolverOptions = EXACT_OPTIONS, say=lambda _msg: None) -> tuple[list[CheckResult], dict]:
    """Every row of the module docstring, and the figures behind them (spectra, scales, Monte Carlo)."""
    name, rel = game.name, cfg.rel_tol
    rows: list[CheckResult] = []
    facts: dict = {"instance": game.describe(), "dim_x": game.dim_x, "dim_y": game.dim_y, "tau": tau,
                   "eta_leader": eta_leader}
    jl, jf = game.values()
    facts.update(J_L=jl, J_F=jf)
    z = float(scipy.stats.norm.ppf(0.5 + cfg.confidence / 2))
    for n in game.churn.support:
        say(f"{name}: Monte Carlo, N={n}")
        ex_l, ex_f = (float(v) for v in _fixed_n_values(game, n))
        mc = game.monte_carlo(n, cfg.mc_episodes, derive(cfg.seed, "monte_carlo", n))
        gap = max(abs(ex_l - mc["leader"]) / max(mc["leader_se"], 1e-300) if mc["leader_se"] > 0 else np.inf,
                  abs(ex_f - mc["follower"]) / mc["follower_se"] if mc["follower_se"] > 0 else np.inf)
        facts[f"monte_carlo_N{n}"] = {"exact_leader": ex_l, "exact_follower": ex_f, **mc}
        rows.append(check(name, f"exact_vs_monte_carlo_N{n}", gap, z, path="exact_autograd",
                          detail=f"max |exact - MC|/SE over J_L, J_F; J_L {ex_l:.5g} vs {mc['leader']:.5g}±"
                          f"{mc['leader_se']:.2g}, J_F {ex_f:.5g} vs {mc['follower']:.5g}±{mc['follower_se']:.2g}, "
                          f"{cfg.mc_episodes} BatchedEnv episodes"))
    say(f"{name}: gradients at a random point (scales)")
    with random_point(game, cfg.seed):
        r = ParameterDerivatives(game, options=opts)
        s_f, s_l = float(r.follower_gradient().norm()), float(r.gLx().norm())
        del r
    facts.update(scale_g_F=s_f, scale_grad_x_L=s_l)
    say(f"{name}: derivatives at the trained point ({game.dim_x} + {game.dim_y} parameters)")
    d = ParameterDerivatives(game, options=opts)
    gF, gW, gx = d.follower_gradient(), d.follower_welfare_gradient(), d.gLx()
    facts.update(norm_g_F=float(gF.norm()), norm_g_welfare=float(gW.norm()), norm_grad_x_L=float(gx.norm()))
    facts["unused_parameters"] = d.unused_directions()
    rows.append(ratio_check(name, "follower_stationarity", float(gF.norm()), s_f, rel, path="exact_autograd",
                            detail=f"||g_F|| / ||g_F at a random point|| ({float(gF.norm()):.3g} / {s_f:.3g})"))
    rows.append(ratio_check(name, "leader_stationarity", float(gx.norm()), s_l, rel, path="exact_autograd",
                            detail=f"||grad_x J_L|| / ||grad_x J_L at a random point|| ({float(gx.norm()):.3g} / "
                            f"{s_l:.3g}); gradient play, as PPO"))
    gap = float((gF - gW).norm())
    if gap > 0 and float(gF.norm()) > 0:
        rows.append(check(name, "g_F_vs_welfare_gradient", gap / float(gF.norm()), rel, ">", path="exact_autograd",
                          detail=f"||g_F - g_W|| / ||g_F||; ||g_W||={float(gW.norm()):.3g}"))
    else:
        rows.append(ratio_check(name, "g_F_vs_welfare_gradient", gap, float(gF.norm()), rel, path="exact_autograd",
                                detail="||g_F - g_W|| / ||g_F||"))
    say(f"{name}: spectrum of H_F")
    try:
        ev_h, sc_h = _spectrum(d.follower_hessian(), cfg.k, opts)
        facts.update(eig_H_F=[complex(e) for e in ev_h], scale_H_F=sc_h)
        soc_f = _sign_row(name, "follower_soc", float(ev_h.real.max()), sc_h, rel,
                          f"max Re eig H_F; top {_c(ev_h)}; {facts['unused_parameters'][1]} follower parameters move "
                          "no pi entry (zero eigenvalues)")
    except SolveError as err:
        soc_f = inconclusive(name, "follower_soc", f"unconverged eigen-solve: {err}", path="exact_autograd")
    rows.append(soc_f)
    say(f"{name}: Schur complement (Stackelberg update, GMRES with H_F)")
    ds = ParameterDerivatives(game, update_rule="stackelberg", options=opts)
    try:
        dj = float(ds.leader_total_gradient().norm())
        facts["norm_DJ_L"] = dj
        rows.append(ratio_check(name, "leader_total_stationarity", dj, s_l, rel, path="exact_autograd",
                                detail="||DJ_L|| / ||grad_x J_L at a random point|| (Stackelberg total derivative)"))
        ev_s, sc_s = _spectrum(ds.schur(), cfg.k, opts)
        facts.update(eig_schur=[complex(e) for e in ev_s], scale_schur=sc_s)
        rows.append(_sign_row(name, "leader_soc", float(ev_s.real.max()), sc_s, rel, f"max Re eig S; top {_c(ev_s)}"))
    except SolveError as err:
        rows.append(inconclusive(name, "leader_soc", f"singular or unconverged solve with H_F: {err}",
                                 path="exact_autograd"))
    del ds
    say(f"{name}: spectrum of J_tau, tau={tau:g}")
    try:
        ev_j, sc_j = _spectrum(d.jacobian_tau(tau), cfg.k, opts)
        facts.update(eig_J_tau=[complex(e) for e in ev_j], scale_J_tau=sc_j)
        hw = _sign_row(name, "hurwitz", float(ev_j.real.max()), sc_j, rel,
                       f"max Re eig J_tau (tau={tau:g}, gradient play); top {_c(ev_j)}")
        rows.append(hw)
        rho_low = float(np.abs(1 + eta_leader * ev_j).max())
        facts["rho_lower_bound"] = rho_low
        if rho_low > 1:
            rows.append(check(name, "discrete_time", rho_low, 1.0, "<", path="exact_autograd",
                              detail=f"rho(I + eta J_tau) >= max over the top eigenvalues |1 + eta lambda|, "
                              f"eta_L={eta_leader:g}"))
        else:
            rows.append(inconclusive(name, "discrete_time", f"top eigenvalues give |1 + eta lambda| <= {rho_low:.8g}; "
                                     "the rest of the spectrum is not bounded here", path="exact_autograd",
                                     value=rho_low, tolerance=1.0, op="<"))
    except SolveError as err:
        hw = inconclusive(name, "hurwitz", f"unconverged eigen-solve: {err}", path="exact_autograd")
        rows.append(hw)
    if soc_f.failed:
        rows.append(CheckResult(name, "tau_critical", float("inf"), tau, "<", "fail", "exact_autograd",
                                "tau* = inf: H_F has an eigenvalue with positive real part, so tau * spec(H_F) "
                                "leaves the left half-plane as tau grows (model §8 Lemma 3)"))
    elif soc_f.passed and hw.passed:
        rows.append(check(name, "tau_critical", 0.0, tau, "<", path="exact_autograd",
                          detail="J_tau Hurwitz at the run's tau with H_F stable: tau* <= tau (not scanned)"))
    else:
        rows.append(inconclusive(name, "tau_critical", f"tau* undecided: follower_soc {soc_f.verdict}, hurwitz "
                                 f"{hw.verdict}", path="exact_autograd", tolerance=tau, op="<"))
    return rows, facts


def _fixed_n_values(game: ExactPlayersGame, n: int) -> tuple[float, float]:
    w = torch.tensor([1.0 if m == n else 0.0 for m in game.churn.support], dtype=torch.float64)
    return game.values(w)


def _c(ev) -> str:
    return ", ".join(f"{complex(e).real:.3g}{complex(e).imag:+.2g}j" if abs(complex(e).imag) > 0 else
                     f"{complex(e).real:.3g}" for e in ev)
