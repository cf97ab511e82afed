"""Bimatrix leader–follower games: the exact strong Stackelberg solution by linear programming
(Conitzer & Sandholm 2006, as OpenSpiel's ``stackelberg_lp``), Nash equilibria by support
enumeration, and a smooth (entropy-regularized, softmax) version as a :class:`~mfsg.game.base.Game`.

Leader payoff A[i, j], follower payoff B[i, j] (leader row i, follower column j).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linprog

from mfsg.config import ConfigError, check_int, check_nonneg
from mfsg.game.base import DTYPE, ChurnDist, Game

__all__ = ["StackelbergSolution", "stackelberg_lp", "nash_support_enumeration", "random_bimatrix", "SoftBimatrixGame"]

# Feasibility slack of the LP and of the Nash best-response tests.
_FEAS_TOL = 1e-9


@dataclass(frozen=True)
class StackelbergSolution:
    leader: np.ndarray  # mixed strategy over rows
    follower: int  # pure best response (ties broken in the leader's favour)
    leader_value: float
    follower_value: float


def stackelberg_lp(A: np.ndarray, B: np.ndarray) -> StackelbergSolution:
    """Strong Stackelberg equilibrium with the row player committing to a mixed strategy.

    One LP per follower pure strategy t: maximize sᵀA[:, t] over the simplex subject to
    sᵀB[:, t] ≥ sᵀB[:, t'] for all t' (t is a best response); keep the best feasible t.
    """
    A, B = np.asarray(A, float), np.asarray(B, float)
    if A.shape != B.shape or A.ndim != 2:
        raise ConfigError(f"bimatrix shapes {A.shape} and {B.shape} are invalid: allowed two equal 2-D shapes")
    m, n = A.shape
    best = None
    for t in range(n):
        others = [u for u in range(n) if u != t]
        A_ub = (B[:, others] - B[:, [t]]).T if others else None
        b_ub = np.zeros(len(others)) if others else None
        res = linprog(
            -A[:, t], A_ub=A_ub, b_ub=b_ub, A_eq=np.ones((1, m)), b_eq=[1.0], bounds=[(0, None)] * m, method="highs"
        )
        if res.status != 0:
            continue
        s = np.clip(res.x, 0, None)
        s = s / s.sum()
        value = float(s @ A[:, t])
        if best is None or value > best.leader_value:
            best = StackelbergSolution(s, t, value, float(s @ B[:, t]))
    assert best is not None, "some follower strategy is always a best response"
    return best


def nash_support_enumeration(A: np.ndarray, B: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """All Nash equilibria of a nondegenerate bimatrix game (supports of equal size)."""
    A, B = np.asarray(A, float), np.asarray(B, float)
    m, n = A.shape
    out = []
    for k in range(1, min(m, n) + 1):
        for rows in itertools.combinations(range(m), k):
            for cols in itertools.combinations(range(n), k):
                q = _indifferent(A[np.ix_(rows, cols)])  # column mix making the rows indifferent
                p = _indifferent(B[np.ix_(rows, cols)].T)  # row mix making the columns indifferent
                if p is None or q is None:
                    continue
                x, y = np.zeros(m), np.zeros(n)
                x[list(rows)], y[list(cols)] = p, q
                if (A @ y).max() <= (A @ y)[rows[0]] + _FEAS_TOL and (x @ B).max() <= (x @ B)[cols[0]] + _FEAS_TOL:
                    out.append((x, y))
    return out


def _indifferent(M: np.ndarray) -> np.ndarray | None:
    """A probability vector q with M q constant, or None (no such positive q)."""
    k = M.shape[0]
    lhs = np.block([[M, -np.ones((k, 1))], [np.ones((1, k)), np.zeros((1, 1))]])
    rhs = np.concatenate([np.zeros(k), [1.0]])
    try:
        sol = np.linalg.solve(lhs, rhs)
    except np.linalg.LinAlgError:
        return None
    q = sol[:k]
    return q if (q >= -_FEAS_TOL).all() else None


def random_bimatrix(m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Payoffs with i.i.d. standard normal entries (nondegenerate with probability one)."""
    check_int("bimatrix.m", m, 1)
    check_int("bimatrix.n", n, 1)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, n)), rng.standard_normal((m, n))


class SoftBimatrixGame(Game):
    """Mixed strategies through softmax logits (first logit fixed at 0), entropy-regularized:

    J_L = σ(x)ᵀ A σ(ȳ) + λ_L H(σ(x)),  J_F = σ(x)ᵀ B σ(y_own) + λ_F H(σ(y_own)),

    with σ(ȳ) the followers' mean mixed strategy. Entropy (a quantal-response game) makes
    equilibria interior and the follower's problem strictly concave in its own mixed strategy.
    """

    def __init__(
        self,
        A,
        B,
        *,
        entropy_leader: float = 0.1,
        entropy_follower: float = 0.3,
        churn: ChurnDist | None = None,
        name: str = "soft_bimatrix",
        bound: float = 8.0,
    ):
        check_nonneg("bimatrix.entropy_leader", entropy_leader)
        check_nonneg("bimatrix.entropy_follower", entropy_follower)
        self.A, self.B = torch.as_tensor(A, dtype=DTYPE), torch.as_tensor(B, dtype=DTYPE)
        m, n = self.A.shape
        self.dim_x, self.dim_y = m - 1, n - 1
        self.lam_l, self.lam_f = entropy_leader, entropy_follower
        self.churn, self.name, self.bound = churn or ChurnDist.fixed(1), name, bound

    @staticmethod
    def mixed(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(torch.cat([torch.zeros(1, dtype=logits.dtype), logits]), dim=0)

    @staticmethod
    def _entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * torch.log(p)).sum()

    def leader_utility(self, x, y, n):
        px, py = self.mixed(x), self.mixed(y)
        return px @ self.A @ py + self.lam_l * self._entropy(px)

    def follower_utility(self, x, y_own, y_others, n):
        px, po = self.mixed(x), self.mixed(y_own)
        return px @ self.B @ po + self.lam_f * self._entropy(po)
