"""The equilibrium verification suite (model §8): which games, which points, which tolerances.

``run_suite(quick)`` returns one :class:`~mfsg.verify.report.CheckResult` per (game, check);
``mfsg verify`` prints them and fails on any failure. Each case builds its game, finds its
point with the solvers of :mod:`mfsg.verify.solvers` from a seeded start, and runs the checks
of :func:`mfsg.verify.check_equilibrium` plus the case's own cross-checks (closed forms,
sympy vs autograd, exact vs Monte Carlo, dense vs matrix-free, SSE vs Nash).
Quick mode runs every case in a cheaper form (fewer games, episodes and finite-difference directions,
no existence scans): ``tests/verification`` runs each case that way under pytest.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mfsg.config import ChurnConfig, EnvConfig, UtilityConfig
from mfsg.game.base import ChurnDist, Regularization
from mfsg.game.bimatrix import SoftBimatrixGame, nash_support_enumeration, random_bimatrix, stackelberg_lp
from mfsg.game.closed_form import random_quadratic, scalar_tau_game
from mfsg.game.exact import ExactMacGame, monte_carlo_utilities
from mfsg.game.exact_players import ExactPlayersGame
from mfsg.game.mac_stage import MacStageGame
from mfsg.game.policy_game import PolicyGame, PolicyGameConfig, checkpoint_game
from mfsg.game.statistics import critical_value, z_max
from mfsg.game.tabular_player import TabularPlayer
from mfsg.learn import device as devices
from mfsg.verify import conditions, existence, robustness
from mfsg.verify.derivatives import Dense, MatrixFree
from mfsg.verify.equilibrium import Tolerances, check_equilibrium
from mfsg.verify.parameters import ParameterDerivatives
from mfsg.verify.policy_checks import policy_checks
from mfsg.verify.report import CheckResult, check
from mfsg.verify.solvers import SolverConfig, solve_follower, solve_nash, solve_stackelberg

__all__ = ["SuiteTolerances", "CASES", "run_suite"]


@dataclass(frozen=True)
class SuiteTolerances:
    """Thresholds of the cross-checks (the equilibrium checks use :class:`Tolerances`)."""

    equilibrium: Tolerances = field(default_factory=Tolerances)
    known_point: float = 1e-8  # ‖z* − closed form‖
    agreement: float = 1e-7  # dense vs matrix-free, sympy vs autograd, exact T=1 vs stage game
    mc_sigmas: float = 4.0  # |exact − Monte Carlo| ≤ this many standard errors
    min_gap: float = 1e-3  # quantities that must differ (Stackelberg vs Nash, g_F vs welfare gradient)
    sse_slack: float = 1e-9  # SSE value ≥ every NE value − slack
    churn_ift: float = 1e-5
    # ‖J_FD − J‖_F / ‖J‖_F of the seed-averaged finite-difference Jacobian (sampled actions: see policy_game_case)
    fd_jacobian_rel: float = 0.25
    fd_eps: float = 0.1  # the finite-difference step in the tabular players' logits (scale ~1)


TOL = SuiteTolerances()
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------------------- cases
def quadratic_case(quick: bool, say: Progress) -> list[CheckResult]:
    """N symmetric followers, P_N uniform on {2, 3, 4}; Stackelberg ≠ Nash; closed forms known."""
    name = "quadratic_N2-4"
    base, shifted = ChurnDist.uniform(2, 4), ChurnDist.uniform(3, 5)
    game = random_quadratic(2, 3, base.mixture(shifted, 0.0), seed=7, externality=0.4)
    x0, y0 = game.initial_point(0)
    sol = solve_stackelberg(game, x0, y0)
    xs, ys = game.stackelberg_point()
    xn, yn = game.nash_point()
    nash = solve_nash(game, x0, y0)
    rows = [
        check(
            name,
            "known_stackelberg_point",
            float((torch.cat([sol.x, sol.y]) - torch.cat([xs, ys])).norm()),
            TOL.known_point,
            detail="solver vs closed form",
        ),
        check(
            name,
            "known_nash_point",
            float((torch.cat([nash.x, nash.y]) - torch.cat([xn, yn])).norm()),
            TOL.known_point,
            detail="solver vs closed form",
        ),
        check(
            name,
            "stackelberg_ne_nash",
            float((torch.cat([xs, ys]) - torch.cat([xn, yn])).norm()),
            TOL.min_gap,
            ">",
            detail="||z_S - z_N||",
        ),
        check(
            name,
            "leader_gains_from_commitment",
            float(game.expected_leader(xs, ys) - game.expected_leader(xn, yn)),
            0.0,
            ">=",
            detail="J_L(S) - J_L(N)",
        ),
        conditions.gradient_kinds_differ(name, game, xs, ys, None, TOL.min_gap),
    ]
    for path in ("dense", "matrix_free"):
        say(f"{name}: {path} checks")
        rows += check_equilibrium(
            name,
            game,
            sol.x,
            sol.y,
            path=path,
            tau=4.0,
            eta_leader=0.05,
            tol=TOL.equilibrium,
            tau_scan=path == "dense" or not quick,
        )
    say(f"{name}: churn robustness")
    rows += robustness.churn_robustness(
        name, game, sol.x, sol.y, base, shifted, tau=4.0, cfg=robustness.RobustnessConfig(ift_tol=TOL.churn_ift)
    )
    if not quick:
        say(f"{name}: existence")
        rows += existence.existence_checks(name, game, None, existence.ExistenceConfig(radius=3.0))
    return rows


def scalar_tau_case(quick: bool, say: Progress) -> list[CheckResult]:
    """A scalar game whose critical ratio τ* = 0.5 is known in closed form."""
    game, tau_star = scalar_tau_game()
    sol = solve_stackelberg(game, *game.initial_point(0))
    rows = check_equilibrium("scalar_tau", game, sol.x, sol.y, tau=4.0, eta_leader=0.2, known_tau=tau_star)
    below = Dense(game, sol.x, sol.y)
    rows.append(
        check(
            "scalar_tau",
            "unstable_below_tau_star",
            float(below.eig_jacobian_tau(0.5 * tau_star, 1).real.max()),
            0.0,
            ">",
            path="dense",
            detail="J_tau not Hurwitz at tau*/2",
        )
    )
    return rows


def bimatrix_case(quick: bool, say: Progress) -> list[CheckResult]:
    """Random bimatrix games: exact SSE (LP) vs all Nash equilibria; a soft (entropy) version checked."""
    n_games = 10 if quick else 100
    worst, n_ne = float("inf"), 0
    for seed in range(n_games):
        A, B = random_bimatrix(3, 3, seed)
        sse = stackelberg_lp(A, B)
        eqs = nash_support_enumeration(A, B)
        n_ne += len(eqs)
        worst = min(worst, min(sse.leader_value - float(x @ A @ y) for x, y in eqs))
    rows = [
        check(
            "bimatrix_3x3",
            "sse_value_ge_nash",
            worst,
            -TOL.sse_slack,
            ">=",
            detail=f"min over {n_games} games, {n_ne} NE: V_SSE - V_NE",
        )
    ]
    A, B = random_bimatrix(3, 3, seed=3)
    game = SoftBimatrixGame(A, B, entropy_leader=1.0, entropy_follower=1.0)
    sol = solve_stackelberg(game, *game.initial_point(0))
    rows += check_equilibrium("soft_bimatrix_3x3", game, sol.x, sol.y, tau=4.0, eta_leader=0.1)
    return rows


def _stage_config(n_rbg: int) -> EnvConfig:
    return EnvConfig(n_rbg=n_rbg, buffer=2, horizon=1, p_arrival=0.6, ucm_vocab=1, churn=ChurnConfig(kind="fixed", n=2))


def mac_stage_case(quick: bool, say: Progress) -> list[CheckResult]:
    """The analytic one-TTI MAC game (sympy) with K = 2 RBGs and P_N uniform on {2, 3}."""
    name = "mac_stage_K2"
    base, shifted = ChurnDist.uniform(2, 3), ChurnDist.uniform(3, 4)
    game = MacStageGame(_stage_config(2), base.mixture(shifted, 0.0), reg=Regularization(0.05, 0.05))
    x, y = game.initial_point(1)
    rows = [_sympy_vs_autograd(name, game, x, y, n=3)]
    say(f"{name}: solve")
    sol = solve_stackelberg(game, x, y, cfg=SolverConfig(max_ascent=400, ascent_switch=1e-5))
    rows += check_equilibrium(name, game, sol.x, sol.y, tau=4.0, eta_leader=0.5, tol=TOL.equilibrium)
    if not quick:
        say(f"{name}: churn robustness")
        rows += robustness.churn_robustness(
            name, game, sol.x, sol.y, base, shifted, tau=4.0, cfg=robustness.RobustnessConfig(ift_tol=TOL.churn_ift)
        )
        say(f"{name}: existence")
        rows += existence.existence_checks(name, game, None, existence.ExistenceConfig(n_samples=6, radius=3.0))
    return rows


def _sympy_vs_autograd(name: str, game: MacStageGame, x, y, n: int) -> CheckResult:
    """Values and first derivatives of the sympy derivation against the torch game's autograd."""
    z = -y
    fl, ff = game.sympy_derivatives(n)
    sym = np.array(fl(*x.tolist(), *y.tolist()) + ff(*x.tolist(), *y.tolist(), *z.tolist()))
    jl, gl = torch.func.grad_and_value(lambda xx, yy: game.leader_utility(xx, yy, n), argnums=(0, 1))(x, y)[::-1]
    jf, gf = torch.func.grad_and_value(lambda xx, yy: game.follower_utility(xx, yy, z, n), argnums=(0, 1))(x, y)[::-1]
    auto = np.concatenate([[float(jl)], torch.cat(gl).numpy(), [float(jf)], torch.cat(gf).numpy()])
    err = float(np.abs(sym - auto).max())
    return check(name, "sympy_vs_autograd", err, TOL.agreement, detail=f"values and gradients, N={n}")


def exact_vs_stage_case(quick: bool, say: Progress) -> list[CheckResult]:
    """T = 1: the exact enumeration of model §2 equals the analytic stage game (same policies)."""
    cfg = _stage_config(1)
    exact = ExactMacGame(cfg, ChurnDist.fixed(2))
    stage = MacStageGame(cfg, ChurnDist.fixed(2))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(stage.dim_x, generator=g, dtype=torch.float64)
    y = torch.randn(stage.dim_y, generator=g, dtype=torch.float64)
    z = torch.randn(stage.dim_y, generator=g, dtype=torch.float64)
    # T = 1: one leader row (the initial observation) whose logits are the stage game's x
    xe, ye, ze = x, stage.exact_follower_params(exact, y), stage.exact_follower_params(exact, z)
    err = max(
        abs(float(exact.leader_utility(xe, ye, 2) - stage.leader_utility(x, y, 2))),
        abs(float(exact.follower_utility(xe, ye, ze, 2) - stage.follower_utility(x, y, z, 2))),
    )
    return [
        check(
            "exact_vs_stage_K1_T1",
            "utilities_agree",
            err,
            TOL.agreement,
            detail="ReferenceEnv enumeration vs sympy model",
        )
    ]


def exact_mac_case(quick: bool, say: Progress) -> list[CheckResult]:
    """Exact expected utilities of model §2 (K = 1, B = 1, T = 2, N = 2), tabular softmax policies;
    churn: a follower leaves (P_N moves from N = 2 towards N = 1)."""
    name = "exact_mac_K1B1T2N2"
    cfg = EnvConfig(
        n_rbg=1,
        buffer=1,
        horizon=2,
        p_arrival=0.5,
        ucm_vocab=1,
        churn=ChurnConfig(kind="fixed", n=2),
        utility=UtilityConfig(),
    )
    say(f"{name}: enumerate")
    base, shifted = ChurnDist.fixed(2), ChurnDist.fixed(1)
    game = ExactMacGame(cfg, shifted.mixture(base, 1.0), reg=Regularization(0.02, 0.05))
    x, y = game.initial_point(3)
    episodes = 10_000 if quick else 100_000
    mc = monte_carlo_utilities(game, 10 * x, 10 * y, 2, episodes=episodes, seed=0)
    gap = abs(float(game.leader_utility(10 * x, 10 * y, 2)) - mc["leader"]) / mc["leader_se"]
    rows = [check(name, "exact_vs_monte_carlo", gap, TOL.mc_sigmas,
                  detail=f"|J_L - MC| / SE, {episodes} BatchedEnv episodes")]
    say(f"{name}: solve")
    sol = solve_stackelberg(game, x, y, cfg=SolverConfig(max_ascent=5, ascent_switch=1e-2))
    say(f"{name}: checks")
    exact_tol = dataclasses.replace(TOL.equilibrium, fd=conditions.FDConfig(max_dirs=4))  # 4 random directions
    rows += check_equilibrium(name, game, sol.x, sol.y, tau=4.0, eta_leader=1.0, tol=exact_tol, tau_scan=not quick)
    if quick:
        return rows
    say(f"{name}: churn robustness")
    rows += robustness.churn_robustness(
        name,
        game,
        sol.x,
        sol.y,
        base,
        shifted,
        tau=4.0,
        cfg=robustness.RobustnessConfig(ift_tol=TOL.churn_ift, continuation_steps=2),
    )
    return rows


def agreement_case(quick: bool, say: Progress) -> list[CheckResult]:
    """Dense vs matrix-free on a 200-parameter non-quadratic game."""
    name = "quartic_200"
    game = random_quadratic(100, 100, ChurnDist.uniform(2, 4), seed=11, quartic=0.2)
    x, y = game.initial_point(0)
    y = solve_follower(game, x, y).y
    d, m = Dense(game, x, y), MatrixFree(game, x, y)
    u = torch.randn(game.dim_x, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    diffs = {
        "DJ_L": float((d.leader_total_gradient() - m.leader_total_gradient()).abs().max()),
        "Dr u": float((d.response_apply(u) - m.response_apply(u)).abs().max()),
        "eig J_tau": float(
            np.abs(np.sort_complex(d.eig_jacobian_tau(4.0, 6)) - np.sort_complex(m.eig_jacobian_tau(4.0, 6))).max()
        ),
        "eig H_F": float(np.abs(np.sort_complex(d.eig_follower(6)) - np.sort_complex(m.eig_follower(6))).max()),
    }
    worst = max(diffs, key=diffs.get)
    return [
        check(
            name,
            "dense_vs_matrix_free",
            diffs[worst],
            TOL.agreement,
            path="both",
            detail=f"max abs diff (worst: {worst}) over DJ_L, Dr u, top-6 eig J_tau, H_F",
        )
    ]


POLICY_CHECKPOINT_ENV = "MFSG_POLICY_CHECKPOINT"  # a run's final/ folder: its policies are checked too


def policy_game_case(quick: bool, say: Progress) -> list[CheckResult]:
    """Stochastic rollout estimates (model §8, trained policies) validated on tabular players of an exact
    game: estimates and finite-difference blocks vs exact values within error bars, the checks at the
    (regularized) Nash point, and the detection of a non-equilibrium point. With ``$MFSG_POLICY_CHECKPOINT``
    set, the checks of that run's players follow (they fail where the policies are not at equilibrium)."""
    name = "policy_tabular_K1N2"
    game = ExactMacGame(_stage_config(1), ChurnDist.fixed(2), reg=Regularization(0.2, 0.05))
    x0, y0 = game.initial_point(1)
    nash = solve_nash(game, x0, y0)
    pcfg = PolicyGameConfig(episodes=1000 if quick else 4000, repeats=4 if quick else 8, fd_eps=TOL.fd_eps)

    def policy(x, y, label):
        players = TabularPlayer("leader", game, x), TabularPlayer("follower", game, y)
        return PolicyGame(*players, game.config_for(2), leader_subset=("theta",), follower_subset=("theta",),
                          cfg=pcfg, reg=game.reg, name=f"{name}@{label}")

    xr, yr = 5 * x0, 5 * y0  # a point away from equilibrium
    say(f"{name}: estimates vs exact")
    est = policy(xr, yr, "random").estimate()
    exact = {"J_L": game.expected_leader(xr, yr), "J_F": game.follower_welfare(xr, yr),
             "grad_x_L": game.leader_gradient_x(xr, yr), "grad_y_L": game.leader_gradient_y(xr, yr),
             "g_F": game.follower_gradient(xr, yr), "g_welfare": game.follower_welfare_gradient(xr, yr)}
    z = {q: z_max(getattr(est, q).mean - v.numpy(), getattr(est, q).se) for q, v in exact.items()}
    n_coords = sum(v.numel() for v in exact.values())
    crit = critical_value(pcfg.confidence, pcfg.repeats - 1, n_coords)
    rows = [check(name, "estimates_vs_exact", max(z.values()), crit, path="stochastic",
                  detail=f"max |est - exact|/se over J_L, J_F and 4 gradients (worst: {max(z, key=z.get)})")]
    say(f"{name}: finite-difference blocks at the Nash point")
    pg = policy(nash.x, nash.y, "nash")
    blocks = pg.blocks()
    J = Dense(game, nash.x, nash.y, update_rule="gradient").jacobian_tau(1.0)  # [[A, B], [C_F, H_F]]
    dx = game.dim_x
    exact_blocks = {"A": J[:dx, :dx], "B": J[:dx, dx:], "C": J[dx:, :dx], "H": J[dx:, dx:]}
    # Entry-wise z-scores do not apply here: with common random numbers a step in the logits changes a sampled
    # action only rarely, and then by O(1/fd_eps), so a few seeds' spread misses those rare jumps (heavy tails).
    # The check is on the whole Jacobian instead, relative to its size, as its spectrum sees it.
    J_fd = blocks.jacobian_tau(1.0)
    rel = float(np.linalg.norm(J_fd - J) / np.linalg.norm(J))
    per_seed = [float(np.linalg.norm(blocks.jacobian_tau(1.0, np.array([r])) - J) / np.linalg.norm(J))
                for r in range(pcfg.repeats)]
    worst = max(exact_blocks, key=lambda k: float(np.abs(getattr(blocks, k).mean(0) - exact_blocks[k]).max()))
    rows.append(check(name, "fd_blocks_vs_exact", rel, TOL.fd_jacobian_rel, path="stochastic",
                      detail=f"||J_FD - J||_F / ||J||_F of [[A, B], [C_F, H_F]] (fd_eps={pcfg.fd_eps:g}, mean of "
                      f"{pcfg.repeats} seeds; one seed: {min(per_seed):.3f}..{max(per_seed):.3f}; largest entry error "
                      f"in {worst})"))
    scale = (float(np.linalg.norm(exact["grad_x_L"])), float(np.linalg.norm(exact["g_F"])))  # at the random point
    rows += policy_checks(pg, tau=4.0, blocks=blocks, scale=scale)
    off = policy_checks(policy(xr, yr, "random"), tau=4.0, scale=scale)[0]
    rows.append(check(name, "detects_non_equilibrium", float(off.failed), 0.5, ">", path="stochastic",
                      detail=f"follower stationarity fails at a random point ({off.verdict}: {off.detail})"))
    path = os.environ.get(POLICY_CHECKPOINT_ENV)
    if path:
        say(f"policy checkpoint {path}")
        run_game, tau = checkpoint_game(path, device=devices.current())  # mfsg verify --device
        rows += policy_checks(run_game, tau=tau)
    return rows


def _unpaired(ev: np.ndarray) -> np.ndarray:
    """Eigenvalues sorted with |Im| (a top-k cut may keep either member of a conjugate pair)."""
    return np.sort_complex(ev.real + 1j * np.abs(ev.imag))


def exact_players_case(quick: bool, say: Progress) -> list[CheckResult]:
    """The exact parameter path (autograd over every player parameter, as for the trained language players)
    against the dense derivatives of the same exact game: tabular players make the two games identical."""
    name = "exact_players_K1T2"
    cfg = EnvConfig(n_rbg=1, buffer=2, horizon=2, p_arrival=0.6, ucm_vocab=1, tbler=0.05,
                    churn=ChurnConfig(kind="fixed", n=2))
    tab = ExactMacGame(cfg, ChurnDist.uniform(1, 2))
    g = torch.Generator().manual_seed(3)
    x, y = (torch.randn(d, generator=g, dtype=torch.float64) for d in (tab.dim_x, tab.dim_y))
    game = ExactPlayersGame(TabularPlayer("leader", tab, x), TabularPlayer("follower", tab, y), cfg, tab.churn)
    p, d = ParameterDerivatives(game), Dense(tab, x, y, update_rule="gradient")
    u = torch.randn(tab.dim_x + tab.dim_y, generator=g, dtype=torch.float64).numpy()
    diffs = {
        "J_L": abs(game.values()[0] - float(tab.expected_leader(x, y))),
        "g_F": float((p.follower_gradient() - d.follower_gradient()).abs().max()),
        "J_tau u": float(np.abs(p.jacobian_tau(4.0).matvec(u) - d.jacobian_tau(4.0) @ u).max()),
        "eig H_F": float(np.abs(_unpaired(p.eig_follower(3)) - _unpaired(d.eig_follower(3))).max()),
    }
    worst = max(diffs, key=diffs.get)
    return [check(name, "parameter_path_vs_dense", diffs[worst], TOL.agreement, path="exact_autograd",
                  detail=f"max abs diff (worst: {worst}) over J_L, g_F, J_tau u, top-3 eig H_F")]


CASES: dict[str, tuple[Callable[[bool, Progress], list[CheckResult]], bool]] = {
    # name: (case, runs in quick mode)
    "quadratic": (quadratic_case, True),
    "scalar_tau": (scalar_tau_case, True),
    "bimatrix": (bimatrix_case, True),
    "mac_stage": (mac_stage_case, True),
    "exact_vs_stage": (exact_vs_stage_case, True),
    "agreement": (agreement_case, True),
    "exact_mac": (exact_mac_case, False),
    "exact_players": (exact_players_case, True),
    "policy_game": (policy_game_case, True),
}


def run_suite(
    quick: bool = False, only: list[str] | None = None, say: Progress = _quiet
) -> tuple[list[CheckResult], dict]:
    """Run the cases (all, or ``only``); returns the rows and the seconds each case took."""
    rows, seconds = [], {}
    for name, (case, in_quick) in CASES.items():
        if (only and name not in only) or (quick and not in_quick and not only):
            continue
        t0 = time.perf_counter()
        say(f"case {name}")
        rows += case(quick, say)
        seconds[name] = time.perf_counter() - t0
    return rows, seconds
