"""First and second derivatives of a game at a point, two ways (model §8; Fiez et al. 2019).

Notation (all at a point z = (x, y), P_N given by ``probs``):

- g_F = ∇_{y_n} J_n (individual follower gradient), H_F = ∂g_F/∂y, C_F = ∂g_F/∂x;
- the leader update ĝ_L: ``"stackelberg"`` = ∇_x J_L + Drᵀ ∇_y J_L with the implicit response
  Jacobian Dr = −H_F⁻¹ C_F evaluated at (x, y) (Fiez et al. Eq. 4), or ``"gradient"`` = ∇_x J_L
  (simultaneous gradient play, the τ = 1 ablation of model §6);
- J_τ = [[A, B], [τ C_F, τ H_F]] with A = ∂ĝ_L/∂x, B = ∂ĝ_L/∂y (model §8 Thm. 2);
- S = A − B H_F⁻¹ C_F, the Schur complement of J_τ (independent of τ), which on the response
  curve y = r(x) is the second total derivative of x ↦ J_L(x, r(x)).

:class:`Dense` forms every matrix with ``torch.func`` (jacfwd over the gradient fields; ĝ_L is
differentiated through ``torch.linalg.solve``). :class:`MatrixFree` never forms a matrix:
products with H_F, C_F and their transposes are ``jvp``/``vjp`` of g_F wrapped as
``scipy.sparse.linalg.LinearOperator`` (as in fiezt/Stackelberg-Code), H_F⁻¹ is applied with
GMRES, and ∂ĝ_L·(u, v) uses the Lagrangian L_w = J_L − wᵀ g_F with w = H_F⁻ᵀ ∇_y J_L held
fixed:  ∂ĝ_L·(u, v) = d∇_x L_w − C_Fᵀ H_F⁻ᵀ d∇_y L_w  (one GMRES solve per product).
The written interface of every path is :class:`Derivatives` (a ``Protocol``): the checks of
:mod:`mfsg.verify.conditions` and :mod:`mfsg.verify.dynamics` use only its members, so they run
on :class:`Dense`, :class:`MatrixFree` and on the exact parameter path of
:mod:`mfsg.verify.parameters` (autograd over every parameter of two trained players) alike.
``update_rule`` names the leader update ĝ_L; the method :meth:`~Derivatives.leader_update`
returns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch.func import grad, jacfwd, jvp, vjp

from mfsg.config import ConfigError
from mfsg.game.base import DTYPE, Game

__all__ = [
    "LEADER_UPDATES",
    "SolveError",
    "SolverOptions",
    "Derivatives",
    "KrylovOperators",
    "Dense",
    "MatrixFree",
    "derivatives",
    "top_eigenvalues",
]

LEADER_UPDATES = ("stackelberg", "gradient")


class SolveError(RuntimeError):
    """An iterative linear solve (GMRES) or eigen-solve (ARPACK) did not converge."""


@dataclass(frozen=True)
class SolverOptions:
    """Tolerances of the matrix-free linear algebra."""

    gmres_rtol: float = 1e-10
    gmres_restart: int = 60
    gmres_maxiter: int = 40
    eigs_tol: float = 1e-8
    eigs_maxiter: int = 5000
    eigs_ncv: int | None = None  # ARPACK Lanczos/Arnoldi basis size (None: scipy's default 2k + 1)
    dense_below: int = 16  # operators this small are formed densely before eigs (ARPACK needs n > k + 1)


DEFAULT_OPTIONS = SolverOptions()


def _check_update(kind: str) -> None:
    if kind not in LEADER_UPDATES:
        raise ConfigError(f"update_rule={kind!r} is invalid: allowed one of {', '.join(LEADER_UPDATES)}")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(-1), dtype=DTYPE)


def _operator(n_out: int, n_in: int, matvec, rmatvec=None) -> sla.LinearOperator:
    mv = lambda v: _np(matvec(_t(v)))  # noqa: E731
    rmv = (lambda v: _np(rmatvec(_t(v)))) if rmatvec is not None else None  # noqa: E731
    return sla.LinearOperator((n_out, n_in), matvec=mv, rmatvec=rmv, dtype=np.float64)


def operator_to_dense(op: sla.LinearOperator) -> np.ndarray:
    """Form an operator's matrix column by column (small operators only)."""
    return np.column_stack([op.matvec(e) for e in np.eye(op.shape[1])])


def top_eigenvalues(op, k: int, which: str = "LR", opts: SolverOptions = DEFAULT_OPTIONS) -> np.ndarray:
    """The k eigenvalues of a square operator extreme in ``which`` (ARPACK ``eigs``; dense when small)."""
    n = op.shape[0]
    if isinstance(op, np.ndarray) or n <= max(opts.dense_below, k + 2):
        M = op if isinstance(op, np.ndarray) else operator_to_dense(op)
        ev = np.linalg.eigvals(M)
    else:
        try:
            ncv = min(n - 1, opts.eigs_ncv) if opts.eigs_ncv else None
            ev = sla.eigs(
                op,
                k=k,
                which=which,
                tol=opts.eigs_tol,
                maxiter=opts.eigs_maxiter,
                ncv=ncv,
                return_eigenvectors=False,
                rng=np.random.default_rng(0),
            )
        except sla.ArpackNoConvergence as err:
            raise SolveError(f"eigs did not converge for {k} eigenvalues ({which})") from err
    key = {"LR": lambda e: -e.real, "SR": lambda e: e.real, "LM": lambda e: -abs(e)}[which]
    return np.array(sorted(ev, key=key)[:k])


@runtime_checkable
class Derivatives(Protocol):
    """What every derivative path provides at one point z = (x, y) (model §8 Def. 2, Thm. 2).

    Vectors are float64 torch tensors; ``jacobian_tau``, ``schur`` and ``follower_hessian`` are a
    dense array or a ``scipy.sparse.linalg.LinearOperator``. Solves that do not converge raise
    :class:`SolveError` (the checks report them as inconclusive)."""

    path: str
    update_rule: str  # "stackelberg" or "gradient": which ĝ_L the leader follows
    dx: int
    dy: int

    def follower_gradient(self) -> torch.Tensor:
        """g_F."""

    def leader_gradient(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(∇_x J_L, ∇_y J_L)."""

    def leader_total_gradient(self) -> torch.Tensor:
        """DJ_L = ∇_x J_L + Drᵀ ∇_y J_L."""

    def leader_update(self) -> torch.Tensor:
        """ĝ_L of ``update_rule``."""

    def response_apply(self, u: torch.Tensor) -> torch.Tensor:
        """Dr·u = −H_F⁻¹ C_F u."""

    def follower_hessian(self): ...

    def jacobian_tau(self, tau: float): ...

    def schur(self): ...

    def eig_follower(self, k: int = 6) -> np.ndarray: ...

    def eig_jacobian_tau(self, tau: float, k: int = 6) -> np.ndarray: ...

    def eig_schur(self, k: int = 6) -> np.ndarray: ...

    def spectral_radius(self, tau: float, eta_leader: float) -> float: ...


class _Common:
    """Gradient fields of a :class:`~mfsg.game.base.Game` shared by the dense and matrix-free paths."""

    def __init__(self, game: Game, x: torch.Tensor, y: torch.Tensor, probs=None, update_rule: str = "stackelberg"):
        _check_update(update_rule)
        self.game, self.x, self.y, self.update_rule = game, x.detach(), y.detach(), update_rule
        self.probs_arg = probs
        self.w = game.probs(probs)
        self.dx, self.dy = game.dim_x, game.dim_y

    def gF(self, x, y):
        return self.game.follower_gradient(x, y, self.w)

    def gLx(self, x, y):
        return self.game.leader_gradient_x(x, y, self.w)

    def gLy(self, x, y):
        return self.game.leader_gradient_y(x, y, self.w)

    def follower_gradient(self) -> torch.Tensor:
        return self.gF(self.x, self.y)

    def leader_gradient(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(∇_x J_L, ∇_y J_L)."""
        return self.gLx(self.x, self.y), self.gLy(self.x, self.y)


class Dense(_Common):
    """Every derivative as a dense matrix (``torch.func``), for small games.

    A and B come from the Hessian of the Lagrangian L_w = J_L − wᵀ g_F (w = H_F⁻ᵀ ∇_y J_L fixed):
    A = L_xx − C_Fᵀ H_F⁻ᵀ L_yx, B = L_xy − C_Fᵀ H_F⁻ᵀ L_yy. :meth:`blocks_by_autodiff`
    differentiates ĝ_L through ``torch.linalg.solve`` instead (an independent reference, slower).
    """

    path = "dense"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.H = jacfwd(self.gF, argnums=1)(self.x, self.y)
        self.C = jacfwd(self.gF, argnums=0)(self.x, self.y)
        self._A = self._B = None

    def leader_update_fn(self, x, y):
        """ĝ_L(x, y) formed with dense solves (differentiable by torch.func)."""
        gx = self.gLx(x, y)
        if self.update_rule == "gradient":
            return gx
        H = jacfwd(self.gF, argnums=1)(x, y)
        C = jacfwd(self.gF, argnums=0)(x, y)
        return gx - C.T @ torch.linalg.solve(H.T, self.gLy(x, y))

    def blocks_by_autodiff(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) = Jacobians of :meth:`leader_update_fn` (third-order nested autodiff)."""
        return (
            jacfwd(self.leader_update_fn, argnums=0)(self.x, self.y),
            jacfwd(self.leader_update_fn, argnums=1)(self.x, self.y),
        )

    def leader_total_gradient(self) -> torch.Tensor:
        """DJ_L = ∇_x J_L + Drᵀ ∇_y J_L at (x, y) (always the Stackelberg form)."""
        gx, gy = self.leader_gradient()
        return gx - self.C.T @ torch.linalg.solve(self.H.T, gy)

    def leader_update(self) -> torch.Tensor:
        if self.update_rule == "gradient":
            return self.gLx(self.x, self.y)
        return self.leader_total_gradient()

    def _blocks(self):
        if self._A is None:
            if self.update_rule == "gradient":
                hess = jacfwd(self.gLx, argnums=(0, 1))(self.x, self.y)
                self._A, self._B = hess
            else:
                w = torch.linalg.solve(self.H.T, self.gLy(self.x, self.y))
                lag = lambda xx, yy: self.game.expected_leader(xx, yy, self.w) - w @ self.gF(xx, yy)  # noqa: E731
                (Lxx, Lxy), (Lyx, Lyy) = jacfwd(grad(lag, argnums=(0, 1)), argnums=(0, 1))(self.x, self.y)
                proj = torch.linalg.solve(self.H.T, torch.cat([Lyx, Lyy], dim=1))  # H_F⁻ᵀ [L_yx, L_yy]
                self._A = Lxx - self.C.T @ proj[:, : self.dx]
                self._B = Lxy - self.C.T @ proj[:, self.dx :]
        return self._A, self._B

    def response_jacobian(self) -> torch.Tensor:
        """Dr = −H_F⁻¹ C_F (IFT, model §8 Lemma 2)."""
        return -torch.linalg.solve(self.H, self.C)

    def response_apply(self, u: torch.Tensor) -> torch.Tensor:
        return self.response_jacobian() @ u

    def jacobian_tau(self, tau: float) -> np.ndarray:
        A, B = self._blocks()
        return _np(torch.cat([torch.cat([A, B], 1), torch.cat([tau * self.C, tau * self.H], 1)], 0))

    def schur(self) -> np.ndarray:
        """S = A − B H_F⁻¹ C_F."""
        A, B = self._blocks()
        return _np(A - B @ torch.linalg.solve(self.H, self.C))

    def follower_hessian(self) -> np.ndarray:
        return _np(self.H)

    def eig_follower(self, k: int = 6) -> np.ndarray:
        return top_eigenvalues(self.follower_hessian(), k)

    def eig_jacobian_tau(self, tau: float, k: int = 6) -> np.ndarray:
        return top_eigenvalues(self.jacobian_tau(tau), k)

    def eig_schur(self, k: int = 6) -> np.ndarray:
        S = self.schur()
        return top_eigenvalues(0.5 * (S + S.T), k)

    def spectral_radius(self, tau: float, eta_leader: float) -> float:
        J = self.jacobian_tau(tau)
        return float(np.abs(np.linalg.eigvals(np.eye(J.shape[0]) + eta_leader * J)).max())


class KrylovOperators:
    """Every derivative as a ``LinearOperator`` built from a few products (fiezt/Stackelberg-Code style).

    A subclass provides, at its point, ``dx``, ``dy``, ``update_rule``, ``opts`` and the products
    ``F_mv(u, v) = C_F u + H_F v``, ``FT_mv(w) = (C_Fᵀ w, H_Fᵀ w)``, ``gLx()``, ``gLy()``,
    ``follower_gradient()``, ``leader_hvp(u, v)`` (the x-part of ∇²J_L·(u, v), for gradient play)
    and ``lagrangian_hvp(w, u, v)`` (∇²L_w·(u, v) of L_w = J_L − wᵀ g_F with w held fixed). H_F⁻¹ is
    applied with GMRES; eigenvalues come from ARPACK.
    """

    path = "matrix_free"
    update_rule: str
    opts: SolverOptions
    dx: int
    dy: int

    # -- products with H_F, C_F and transposes -----------------------------------
    def H_mv(self, v):
        return self.F_mv(torch.zeros(self.dx, dtype=DTYPE), v)

    def C_mv(self, u):
        return self.F_mv(u, torch.zeros(self.dy, dtype=DTYPE))

    def HT_mv(self, w):
        return self.FT_mv(w)[1]

    def CT_mv(self, w):
        return self.FT_mv(w)[0]

    def _gmres(self, matvec, b: torch.Tensor) -> torch.Tensor:
        n = b.numel()
        if float(b.norm()) == 0.0:
            return torch.zeros_like(b)
        op = _operator(n, n, matvec)
        sol, info = sla.gmres(
            op,
            _np(b),
            rtol=self.opts.gmres_rtol,
            atol=0.0,
            restart=min(n, self.opts.gmres_restart),
            maxiter=self.opts.gmres_maxiter,
        )
        if info != 0:
            raise SolveError(f"gmres did not reach rtol={self.opts.gmres_rtol} for a system of size {n} (info={info})")
        return _t(sol)

    def solve_H(self, b):
        return self._gmres(self.H_mv, b)

    def solve_HT(self, b):
        return self._gmres(self.HT_mv, b)

    # -- leader quantities ----------------------------------------------------------
    def leader_gradient(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gLx(), self.gLy()

    def _multiplier(self) -> torch.Tensor:
        if getattr(self, "_w", None) is None:
            self._w = self.solve_HT(self.gLy())
        return self._w

    def leader_total_gradient(self) -> torch.Tensor:
        """DJ_L = ∇_x J_L − C_Fᵀ H_F⁻ᵀ ∇_y J_L, one GMRES solve (Fiez et al.'s leader gradient)."""
        return self.gLx() - self.CT_mv(self._multiplier())

    def leader_update(self) -> torch.Tensor:
        if self.update_rule == "gradient":
            return self.gLx()
        return self.leader_total_gradient()

    def dleader(self, u, v):
        """∂ĝ_L/∂x · u + ∂ĝ_L/∂y · v."""
        if self.update_rule == "gradient":
            return self.leader_hvp(u, v)
        dLx, dLy = self.lagrangian_hvp(self._multiplier(), u, v)
        return dLx - self.CT_mv(self.solve_HT(dLy))

    def response_apply(self, u):
        """Dr·u = −H_F⁻¹ C_F u."""
        return -self.solve_H(self.C_mv(u))

    # -- operators ---------------------------------------------------------------------
    def follower_hessian(self) -> sla.LinearOperator:
        return _operator(self.dy, self.dy, self.H_mv, self.HT_mv)

    def jacobian_tau(self, tau: float) -> sla.LinearOperator:
        dx = self.dx

        def mv(z):
            u, v = z[:dx], z[dx:]
            return torch.cat([self.dleader(u, v), tau * self.F_mv(u, v)])

        return _operator(dx + self.dy, dx + self.dy, mv)

    def schur(self) -> sla.LinearOperator:
        return _operator(self.dx, self.dx, lambda u: self.dleader(u, self.response_apply(u)))

    def eig_follower(self, k: int = 6) -> np.ndarray:
        return top_eigenvalues(self.follower_hessian(), k, opts=self.opts)

    def eig_jacobian_tau(self, tau: float, k: int = 6) -> np.ndarray:
        return top_eigenvalues(self.jacobian_tau(tau), k, opts=self.opts)

    def eig_schur(self, k: int = 6) -> np.ndarray:
        return top_eigenvalues(self.schur(), k, opts=self.opts)

    def spectral_radius(self, tau: float, eta_leader: float) -> float:
        J = self.jacobian_tau(tau)
        op = sla.LinearOperator(J.shape, matvec=lambda v: v + eta_leader * J.matvec(v), dtype=np.float64)
        return float(np.abs(top_eigenvalues(op, 1, which="LM", opts=self.opts)).max())


class MatrixFree(_Common, KrylovOperators):
    """Every derivative of a :class:`~mfsg.game.base.Game` as a ``LinearOperator`` of ``torch.func``
    Jacobian/Hessian-vector products."""

    path = "matrix_free"

    def __init__(self, *args, options: SolverOptions = DEFAULT_OPTIONS, **kwargs):
        super().__init__(*args, **kwargs)
        self.opts = options
        _, self._vjp_F = vjp(self.gF, self.x, self.y)
        # forward products by the double-vjp trick: w ↦ (C_Fᵀw, H_Fᵀw) is linear, its vjp is (u, v) ↦ C_F u + H_F v
        _, self._jvp_F = vjp(self._vjp_F, torch.zeros_like(self.y))
        self._w = None
        self._vjp_L = None

    def F_mv(self, u, v):
        """C_F u + H_F v."""
        return self._jvp_F((u, v))[0]

    def FT_mv(self, w):
        return self._vjp_F(w)

    def gLx(self, x=None, y=None):
        return self.game.leader_gradient_x(self.x if x is None else x, self.y if y is None else y, self.w)

    def gLy(self, x=None, y=None):
        return self.game.leader_gradient_y(self.x if x is None else x, self.y if y is None else y, self.w)

    def leader_hvp(self, u, v):
        return jvp(self.gLx, (self.x, self.y), (u, v))[1]

    def lagrangian_hvp(self, w, u, v):
        if self._vjp_L is None:
            lag = lambda xx, yy: self.game.expected_leader(xx, yy, self.w) - w @ self.gF(xx, yy)  # noqa: E731
            _, self._vjp_L = vjp(grad(lag, argnums=(0, 1)), self.x, self.y)
        return self._vjp_L((u, v))  # ∇²L_w is symmetric: its vjp is its jvp


def derivatives(
    game: Game,
    x,
    y,
    probs=None,
    *,
    path: str = "dense",
    update_rule: str = "stackelberg",
    options: SolverOptions = DEFAULT_OPTIONS,
) -> Derivatives:
    """The :class:`Dense` or :class:`MatrixFree` derivatives of ``game`` at (x, y)."""
    if path == "dense":
        return Dense(game, x, y, probs, update_rule)
    if path == "matrix_free":
        return MatrixFree(game, x, y, probs, update_rule, options=options)
    raise ConfigError(f"path={path!r} is invalid: allowed dense, matrix_free")
