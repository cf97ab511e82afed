"""Quadratic leader–N-follower games with closed-form equilibria (model §8, test games).

Follower i (own parameters y_i, mean field ȳ = (y_i + (n − 1) y_−i)/n):

    J_i = −½ y_iᵀ Q y_i + y_iᵀ (P x + c) + y_iᵀ E ȳ − κ/4 Σ y_i⁴

Leader (at the followers' mean field ȳ; ``n·h`` rewards the total of n followers):

    J_L = −½ xᵀ R x + aᵀ x + xᵀ S ȳ + n hᵀ ȳ − ½ ȳᵀ W ȳ − κ/4 Σ x⁴

With κ = 0 everything is linear-quadratic: the individual gradient is
g_F = −M y + P x + c with M = Q − E − E[1/N] Eᵀ, so the response is r(x) = M⁻¹(P x + c),
whereas the gradient of the followers' average utility is −(Q − E − Eᵀ) y + P x + c: the two
differ whenever E ≠ 0 and N > 1 (the externality a follower ignores). The Stackelberg point
maximizes V(x) = J_L(x, r(x)); the Nash point solves ∇_x J_L = 0 and g_F = 0 jointly; they
differ whenever the leader's utility depends on ȳ. κ > 0 adds a quartic term (non-zero third
derivatives) for benchmarks; closed forms are then unavailable.

:class:`LowRankQuadraticGame` stores each matrix as diagonal + low rank, so the same game
scales to 10⁵ parameters for the matrix-free benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mfsg.config import ConfigError, check_int, check_nonneg
from mfsg.game.base import DTYPE, NO_REGULARIZATION, ChurnDist, Game, Regularization

__all__ = ["QuadraticParams", "QuadraticGame", "LowRankQuadraticGame", "random_quadratic", "scalar_tau_game"]

# Scale of the random entries of the coupling matrices of random instances.
_COUPLING_SCALE = 0.5
# Margin added to the smallest eigenvalue that makes the random games' second-order conditions strict.
_CURVATURE_MARGIN = 1.0


@dataclass(frozen=True)
class QuadraticParams:
    """Dense coefficient matrices of a :class:`QuadraticGame` (shapes: x ∈ R^dx, y ∈ R^dy)."""

    Q: torch.Tensor  # [dy, dy] symmetric
    P: torch.Tensor  # [dy, dx]
    c: torch.Tensor  # [dy]
    E: torch.Tensor  # [dy, dy]
    R: torch.Tensor  # [dx, dx] symmetric
    a: torch.Tensor  # [dx]
    S: torch.Tensor  # [dx, dy]
    h: torch.Tensor  # [dy]
    W: torch.Tensor  # [dy, dy] symmetric

    def __post_init__(self) -> None:
        dy, dx = self.P.shape
        shapes = dict(Q=(dy, dy), c=(dy,), E=(dy, dy), R=(dx, dx), a=(dx,), S=(dx, dy), h=(dy,), W=(dy, dy))
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ConfigError(f"quadratic.{name} has shape {tuple(getattr(self, name).shape)}: allowed {shape}")


class QuadraticGame(Game):
    """The quadratic game of the module docstring with dense matrices."""

    def __init__(
        self,
        params: QuadraticParams,
        churn: ChurnDist,
        *,
        quartic: float = 0.0,
        reg: Regularization = NO_REGULARIZATION,
        name: str = "quadratic",
        bound: float = 10.0,
    ):
        check_nonneg("quadratic.quartic", quartic)
        self.p = params
        self.dim_y, self.dim_x = params.P.shape
        self.churn, self.quartic, self.reg, self.name, self.bound = churn, quartic, reg, name, bound

    # matrix-vector products (overridden by the low-rank game)
    def _mv(self, name: str, v: torch.Tensor) -> torch.Tensor:
        return getattr(self.p, name) @ v

    def _mtv(self, name: str, v: torch.Tensor) -> torch.Tensor:
        return getattr(self.p, name).T @ v

    def _vec(self, name: str) -> torch.Tensor:
        return getattr(self.p, name)

    def leader_utility(self, x, y, n):
        quad = -0.5 * x @ self._mv("R", x) + self._vec("a") @ x + x @ self._mv("S", y)
        follow = n * self._vec("h") @ y - 0.5 * y @ self._mv("W", y)
        return quad + follow - 0.25 * self.quartic * (x**4).sum()

    def follower_utility(self, x, y_own, y_others, n):
        ybar = (y_own + (n - 1) * y_others) / n
        lin = self._mv("P", x) + self._vec("c")
        own = -0.5 * y_own @ self._mv("Q", y_own) + y_own @ lin + y_own @ self._mv("E", ybar)
        return own - 0.25 * self.quartic * (y_own**4).sum()

    # ------------------------------------------------------------------ closed forms (quartic = 0)
    def _closed_form_ok(self) -> None:
        if self.quartic != 0.0 or self.reg != Regularization():
            raise ConfigError(
                f"quadratic.quartic={self.quartic!r} is invalid for closed forms: allowed 0 and no regularization"
            )

    def _moments(self, probs: ChurnDist | None) -> tuple[float, float]:
        d = probs or self.churn
        m_inv = sum(p / n for n, p in zip(d.support, d.probs, strict=True))
        m_n = sum(p * n for n, p in zip(d.support, d.probs, strict=True))
        return m_inv, m_n

    def response_matrices(self, probs: ChurnDist | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, k0) with r(x) = K x + k0, K = M⁻¹P, k0 = M⁻¹c, M = Q − E − E[1/N]Eᵀ."""
        self._closed_form_ok()
        p = self.p
        m_inv, _ = self._moments(probs)
        M = p.Q - p.E - m_inv * p.E.T
        return torch.linalg.solve(M, p.P), torch.linalg.solve(M, p.c)

    def stackelberg_point(self, probs: ChurnDist | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """argmax_x J_L(x, r(x)) and r(x*) in closed form."""
        p = self.p
        K, k0 = self.response_matrices(probs)
        _, m_n = self._moments(probs)
        h = m_n * p.h
        lhs = p.R - p.S @ K - K.T @ p.S.T + K.T @ p.W @ K
        rhs = p.a + p.S @ k0 + K.T @ h - K.T @ p.W @ k0
        x = torch.linalg.solve(lhs, rhs)
        return x, K @ x + k0

    def leader_total_hessian(self, probs: ChurnDist | None = None) -> torch.Tensor:
        """d²/dx² J_L(x, r(x)) (constant for quadratic games)."""
        p = self.p
        K, _ = self.response_matrices(probs)
        return -(p.R - p.S @ K - K.T @ p.S.T + K.T @ p.W @ K)

    def nash_point(self, probs: ChurnDist | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Simultaneous-play equilibrium: ∇_x J_L = 0 and g_F = 0."""
        self._closed_form_ok()
        p = self.p
        m_inv, _ = self._moments(probs)
        M = p.Q - p.E - m_inv * p.E.T
        top = torch.cat([p.R, -p.S], dim=1)
        bot = torch.cat([-p.P, M], dim=1)
        z = torch.linalg.solve(torch.cat([top, bot]), torch.cat([p.a, p.c]))
        return z[: self.dim_x], z[self.dim_x :]


def random_quadratic(
    dim_x: int,
    dim_y: int,
    churn: ChurnDist,
    seed: int,
    *,
    externality: float = 0.3,
    quartic: float = 0.0,
    name: str = "quadratic",
) -> QuadraticGame:
    """A random quadratic game whose follower and leader second-order conditions hold strictly.

    Q is a well-conditioned SPD matrix, E a small externality (spectral norm ``externality``),
    and R is chosen so that the leader's total Hessian is negative definite by a margin.
    """
    check_int("quadratic.dim_x", dim_x, 1)
    check_int("quadratic.dim_y", dim_y, 1)
    check_nonneg("quadratic.externality", externality)
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: _COUPLING_SCALE * torch.randn(*s, generator=g, dtype=DTYPE) / max(s[-1], 1) ** 0.5  # noqa: E731
    A = rnd(dim_y, dim_y)
    Q = A @ A.T + (1.0 + externality * 2) * torch.eye(dim_y, dtype=DTYPE) * _CURVATURE_MARGIN
    E = torch.randn(dim_y, dim_y, generator=g, dtype=DTYPE)
    E = externality * E / torch.linalg.matrix_norm(E, ord=2)
    B = rnd(dim_y, dim_y)
    W = B @ B.T
    P, S = rnd(dim_y, dim_x), rnd(dim_x, dim_y)
    c, a, h = rnd(dim_y), rnd(dim_x), rnd(dim_y)
    eye_x = torch.eye(dim_x, dtype=DTYPE)
    base = QuadraticParams(Q=Q, P=P, c=c, E=E, R=eye_x, a=a, S=S, h=h, W=W)
    K, _ = QuadraticGame(base, churn).response_matrices()
    coupling = S @ K + K.T @ S.T - K.T @ W @ K
    R = (torch.linalg.eigvalsh(0.5 * (coupling + coupling.T)).max().clamp(min=0) + _CURVATURE_MARGIN) * eye_x
    params = QuadraticParams(Q=Q, P=P, c=c, E=E, R=R, a=a, S=S, h=h, W=W)
    return QuadraticGame(params, churn, quartic=quartic, name=name)


def scalar_tau_game(r: float = 0.5, s: float = 1.0, w: float = 3.0) -> tuple[QuadraticGame, float]:
    """A scalar game (dx = dy = 1, one follower, Q = P = 1) whose critical ratio τ* is known.

    With the total-derivative leader update, J_τ = [[a, b], [τ, −τ]] with a = s − r and
    b = s − w; the Schur complement a + b = 2s − r − w < 0 is the leader's total second
    derivative. J_τ is Hurwitz iff a − τ < 0 and τ(−a − b) > 0, so τ* = max(0, a). Returns the
    game and τ*.
    """
    one = lambda v: torch.tensor([[v]], dtype=DTYPE)  # noqa: E731
    vec = lambda v: torch.tensor([v], dtype=DTYPE)  # noqa: E731
    params = QuadraticParams(
        Q=one(1.0), P=one(1.0), c=vec(0.2), E=one(0.0), R=one(r), a=vec(0.3), S=one(s), h=vec(0.1), W=one(w)
    )
    if 2 * s - r - w >= 0:
        raise ConfigError(f"scalar_tau_game(r={r}, s={s}, w={w}) is invalid: allowed 2s − r − w < 0 (a maximum)")
    return QuadraticGame(params, ChurnDist.fixed(1), name="scalar_tau"), max(0.0, s - r)


class LowRankQuadraticGame(QuadraticGame):
    """The quadratic game with dx = dy = d and each matrix diagonal + rank-k (for 10⁵ parameters).

    Matrices are stored as (diag [d], U [d, k], V [d, k]) meaning diag(diag) + U Vᵀ, so every
    product costs O(d k).
    """

    def __init__(
        self, d: int, rank: int, churn: ChurnDist, seed: int, *, quartic: float = 0.0, name: str = "lowrank_quadratic"
    ):
        check_int("lowrank.d", d, 1)
        check_int("lowrank.rank", rank, 1, d)
        check_nonneg("lowrank.quartic", quartic)
        g = torch.Generator().manual_seed(seed)
        u = lambda: _COUPLING_SCALE * torch.randn(d, rank, generator=g, dtype=DTYPE) / (d**0.5)  # noqa: E731
        # curvatures lo + (hi − lo)·U^{1/4}: few soft directions, so the extreme eigenvalues are separated
        spread = lambda lo, hi: lo + (hi - lo) * torch.rand(d, generator=g, dtype=DTYPE) ** 0.25  # noqa: E731
        ones = torch.ones(d, dtype=DTYPE)
        sym = lambda dg: (dg, *(lambda U: (U, U))(u()))  # noqa: E731
        self.mats = {
            "Q": sym(spread(1.5, 4.0)),
            "P": (0.5 * ones, u(), u()),
            "E": (0.2 * ones, u(), u()),
            "R": sym(spread(1.0, 5.0)),
            "S": (0.5 * ones, u(), u()),
            "W": sym(1.0 * ones),
        }
        self.vecs = {k: _COUPLING_SCALE * torch.randn(d, generator=g, dtype=DTYPE) for k in ("a", "c", "h")}
        self.dim_x = self.dim_y = d
        self.churn, self.quartic, self.reg, self.name, self.bound = churn, quartic, Regularization(), name, 10.0
        self.p = None

    def _mv(self, name, v):
        dg, U, V = self.mats[name]
        return dg * v + U @ (V.T @ v)

    def _mtv(self, name, v):
        dg, U, V = self.mats[name]
        return dg * v + V @ (U.T @ v)

    def _vec(self, name):
        return self.vecs[name]

    def dense(self) -> QuadraticGame:
        """The same game with dense matrices (small d only): gives the closed forms."""
        full = {k: torch.diag(dg) + U @ V.T for k, (dg, U, V) in self.mats.items()}
        params = QuadraticParams(**full, **self.vecs)
        return QuadraticGame(params, self.churn, quartic=self.quartic, name=self.name)
