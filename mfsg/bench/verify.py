"""``mfsg bench verify``: cost of the model §8 checks on the two computation paths.

- *dense*: every dense derivative and spectrum of a 500-parameter non-quadratic game
  (H_F, C_F, the J_τ blocks through the third derivatives, eigenvalues of H_F, J_τ and the
  Schur complement, ρ(I + ηJ_τ)); target ≤ 5 s;
- *matrix-free*: the top-6 eigenvalues (largest real part) of J_τ with the Stackelberg leader
  update over ≥ 100k parameters (diagonal + low-rank quadratic game with a quartic term; every
  J_τ product runs one GMRES solve with H_F); target ≤ 60 s.

- *exact path*: the top-6 eigenvalues (largest real part) of J_τ (gradient play, as PPO) over every
  policy parameter of both trained players (``--checkpoint``, default the committed default run: about
  86k + 86k parameters) on the exact game of the instance K = 2, B = 1, T = 1, N = 2; target ≤ 60 s
  (building the game and its derivatives included).

``--quick`` shrinks the first two games (100 dense parameters, 20k matrix-free parameters) and asks the
exact path for 2 eigenvalues.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mfsg.game.base import ChurnDist
from mfsg.game.closed_form import LowRankQuadraticGame, random_quadratic
from mfsg.verify.derivatives import Dense, MatrixFree, SolverOptions
from mfsg.verify.threads import limit_threads

TAU, ETA = 4.0, 0.05
# eigenvalues to 1e-6 relative accuracy, a 40-vector Arnoldi basis, GMRES to 1e-8 inside each J_tau product
MF_OPTIONS = SolverOptions(gmres_rtol=1e-8, eigs_tol=1e-6, eigs_ncv=40)
DENSE_TARGET_S, MF_TARGET_S, EXACT_TARGET_S = 5.0, 60.0, 60.0
CHECKPOINT = "experiments/checkpoints/mfsg-default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    parser.add_argument("--dense-params", type=int, default=None, help="parameters of the dense game (default 500)")
    parser.add_argument(
        "--mf-params", type=int, default=None, help="parameters of the matrix-free game (default 100000)"
    )
    parser.add_argument("--rank", type=int, default=8, help="rank of the matrix-free game's couplings")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and BLAS threads (default 1: fastest for Krylov solvers)"
    )
    parser.add_argument("--checkpoint", default=CHECKPOINT,
                        help="trained players for the exact path ('' skips it; default the committed default run)")


def _dense(n_params: int) -> dict:
    half = n_params // 2
    game = random_quadratic(half, n_params - half, ChurnDist.uniform(2, 4), seed=0, quartic=0.2)
    x, y = game.initial_point(0)
    t0 = time.perf_counter()
    d = Dense(game, x, y)
    top_h = d.eig_follower(6)
    top_j = d.eig_jacobian_tau(TAU, 6)
    top_s = d.eig_schur(6)
    rho = d.spectral_radius(TAU, ETA)
    dj = float(d.leader_total_gradient().norm())
    seconds = time.perf_counter() - t0
    return {
        "params": n_params,
        "seconds": seconds,
        "target_s": DENSE_TARGET_S,
        "max_re_H_F": float(top_h.real.max()),
        "max_re_J_tau": float(top_j.real.max()),
        "max_re_schur": float(top_s.real.max()),
        "rho": rho,
        "norm_DJ_L": dj,
    }


def _matrix_free(n_params: int, rank: int) -> dict:
    game = LowRankQuadraticGame(n_params // 2, rank, ChurnDist.uniform(2, 4), seed=0, quartic=0.1)
    x, y = game.initial_point(0)
    t0 = time.perf_counter()
    m = MatrixFree(game, x, y, options=MF_OPTIONS)
    counter = {"n": 0}
    op = m.jacobian_tau(TAU)
    inner = op.matvec

    def counted(v):
        counter["n"] += 1
        return inner(v)

    from scipy.sparse.linalg import LinearOperator

    from mfsg.verify.derivatives import top_eigenvalues

    ev = top_eigenvalues(LinearOperator(op.shape, matvec=counted, dtype=np.float64), 6, "LR", m.opts)
    seconds = time.perf_counter() - t0
    return {
        "params": 2 * (n_params // 2),
        "seconds": seconds,
        "target_s": MF_TARGET_S,
        "matvecs": counter["n"],
        "top6_real": [float(e.real) for e in ev],
        "top6_imag": [float(e.imag) for e in ev],
    }


def _exact_players(path: str, k: int) -> dict:
    from mfsg.game.base import ChurnDist
    from mfsg.game.exact_players import ExactPlayersGame, instance_config
    from mfsg.learn.train import load_players
    from mfsg.verify.parameters import ParameterDerivatives
    from mfsg.verify.trained import EXACT_OPTIONS

    leader, follower, run_cfg = load_players(path)
    t0 = time.perf_counter()
    game = ExactPlayersGame(leader, follower, instance_config(run_cfg.env, buffer=1, horizon=1, n=2), ChurnDist.fixed(2))
    d = ParameterDerivatives(game, options=EXACT_OPTIONS)
    op = d.jacobian_tau(run_cfg.ppo.tau)
    counter = {"n": 0}

    def counted(v):
        counter["n"] += 1
        return op.matvec(v)

    from scipy.sparse.linalg import LinearOperator

    from mfsg.verify.derivatives import top_eigenvalues

    ev = top_eigenvalues(LinearOperator(op.shape, matvec=counted, dtype=np.float64), k, "LR", EXACT_OPTIONS)
    seconds = time.perf_counter() - t0
    return {"checkpoint": path, "instance": game.describe(), "params": game.dim_x + game.dim_y, "tau": run_cfg.ppo.tau,
            "seconds": seconds, "target_s": EXACT_TARGET_S, "matvecs": counter["n"],
            "top_real": [float(e.real) for e in ev], "top_imag": [float(e.imag) for e in ev]}


def measure(args: argparse.Namespace) -> dict:
    dense_n = args.dense_params or (100 if args.quick else 500)
    mf_n = args.mf_params or (20_000 if args.quick else 100_000)
    with limit_threads(args.threads):
        return {
            "target": "verify",
            "quick": bool(args.quick),
            "threads": torch.get_num_threads(),
            "dense": _dense(dense_n),
            "matrix_free": _matrix_free(mf_n, args.rank),
            **({"exact_players": _exact_players(args.checkpoint, 2 if args.quick else 6)}
               if getattr(args, "checkpoint", "") else {}),
        }


def format_result(result: dict) -> str:
    d, m = result["dense"], result["matrix_free"]
    lines = [
        f"dense check, {d['params']} params: {d['seconds']:.2f} s (target <= {d['target_s']:g} s); "
        f"max Re eig H_F {d['max_re_H_F']:.3g}, J_tau {d['max_re_J_tau']:.3g}, Schur {d['max_re_schur']:.3g}, "
        f"rho {d['rho']:.4g}",
        f"matrix-free top-6 eig J_tau, {m['params']} params: {m['seconds']:.2f} s (target <= {m['target_s']:g} s), "
        f"{m['matvecs']} J_tau products; Re = " + ", ".join(f"{v:.4g}" for v in m["top6_real"]),
        f"torch threads: {result['threads']}",
    ]
    e = result.get("exact_players")
    if e:
        lines.insert(2, f"exact path, top-{len(e['top_real'])} eig J_tau over {e['params']} player parameters "
                     f"({e['checkpoint']}, tau={e['tau']:g}): {e['seconds']:.2f} s (target <= {e['target_s']:g} s), "
                     f"{e['matvecs']} J_tau products; Re = " + ", ".join(f"{v:.4g}" for v in e["top_real"]))
    return "\n".join(lines)
