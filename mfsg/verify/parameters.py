"""The exact derivative path over every parameter of two trained players (model §8).

:class:`ParameterDerivatives` implements :class:`~mfsg.verify.derivatives.Derivatives` for an
:class:`~mfsg.game.exact_players.ExactPlayersGame`: x and y are the flattened parameters of the
leader's and the follower's policies (all of them, e.g. ~85k each for the default language
players), and every product is exact reverse-mode autograd through the players' scores:

- g_F = ∇_{y_n} J_n at y_n = y_−n = y: the follower's log π table enters the utility twice, as the
  deviating follower's (``own``) and as the others'; g_F is the gradient through ``own`` only;
  the welfare gradient is the gradient through both;
- (C_Fᵀw, H_Fᵀw) is one vjp of g_F; C_F u + H_F v is the vjp of that linear map (double-vjp trick);
- the leader's Hessian products are vjps of ∇J_L (symmetric Hessian); the Stackelberg update uses
  the Lagrangian L_w = J_L − wᵀ g_F with w = H_F⁻ᵀ ∇_y J_L held fixed (as :class:`MatrixFree`).

H_F⁻¹ is applied with GMRES and spectra come from ARPACK (:class:`KrylovOperators`), so no matrix
of size (dx + dy)² is ever formed.
"""

from __future__ import annotations

import numpy as np
import torch

from mfsg.game.base import DTYPE
from mfsg.verify.derivatives import DEFAULT_OPTIONS, KrylovOperators, SolverOptions, _check_update

__all__ = ["ParameterDerivatives"]


def _flat(grads, params) -> torch.Tensor:
    return torch.cat([torch.zeros(p.numel(), dtype=DTYPE) if g is None else g.reshape(-1).to(DTYPE)
                      for g, p in zip(grads, params, strict=True)])


def _split(v: torch.Tensor, params) -> list[torch.Tensor]:
    out, i = [], 0
    for p in params:
        out.append(v[i : i + p.numel()].view_as(p).to(p.dtype))
        i += p.numel()
    return out


class ParameterDerivatives(KrylovOperators):
    """Exact autograd derivatives of an :class:`~mfsg.game.exact_players.ExactPlayersGame` at the players'
    current parameters (``probs``: P_N, default the game's).

    The deviating follower has its own copy of the parameters (``params_own``), so every product of
    the gradient-play dynamics is a second-order autograd product (a vjp of a gradient):
    H_F = H_oo + H_ot with H_ot v = ∇_own(∇_oth J_n · v), C_F u = ∇_own(∇_x J_n · u), and A u + B v
    the x-part of the symmetric ∇²J_L·(u, v). Only the Stackelberg update's Lagrangian needs third order.
    """

    path = "exact_autograd"

    def __init__(self, game, probs=None, update_rule: str = "gradient", options: SolverOptions = DEFAULT_OPTIONS):
        _check_update(update_rule)
        self.game, self.update_rule, self.opts = game, update_rule, options
        self.px, self.py, self.po = list(game.params_x), list(game.params_y), list(game.params_own)
        self.dx, self.dy = game.dim_x, game.dim_y
        self.w_probs = game.probs(probs)
        self._w = None
        self._lag = None
        lp_l, lp_f = game.tables()
        self.J_L, self.J_F = game.utilities(lp_l, game.own_table(), lp_f, self.w_probs)
        self._gL = self._grads(self.J_L, self.px + self.py)  # (∇_x J_L, ∇_y J_L), y = the others' copy
        g = self._grads(self.J_F, self.px + self.po + self.py)
        nx, no = len(self.px), len(self.po)
        self._gFx, self._gF, self._gFt = g[:nx], g[nx : nx + no], g[nx + no :]  # ∇_x J_n, ∇_own J_n = g_F, ∇_oth J_n

    @staticmethod
    def _grads(out, params) -> list[torch.Tensor]:
        gs = torch.autograd.grad(out, params, create_graph=True, allow_unused=True)
        return [torch.zeros_like(p, requires_grad=True) if g is None else g for g, p in zip(gs, params, strict=True)]

    def _vjp(self, outs: list[torch.Tensor], params, vs: list[torch.Tensor], keep_graph: bool = False) -> torch.Tensor:
        """Σ_i (∂outs_i/∂params)ᵀ vs_i, flattened (outs and vs: lists of per-parameter tensors)."""
        pairs = [(o, v) for o, v in zip(outs, vs, strict=True) if o.requires_grad]
        if not pairs:
            return torch.zeros(sum(p.numel() for p in params), dtype=DTYPE)
        o, v = zip(*pairs, strict=True)
        return _flat(torch.autograd.grad(list(o), params, grad_outputs=list(v), retain_graph=True,
                                         create_graph=keep_graph, allow_unused=True), params)

    # -- the primitives of KrylovOperators ------------------------------------------
    def follower_gradient(self) -> torch.Tensor:
        return _flat(self._gF, self.po).detach()

    def follower_welfare_gradient(self) -> torch.Tensor:
        """∇_y of the followers' average utility: the deviating follower and the others move together."""
        return (_flat(self._gF, self.po) + _flat(self._gFt, self.py)).detach()

    def gLx(self) -> torch.Tensor:
        return _flat(self._gL[: len(self.px)], self.px).detach()

    def gLy(self) -> torch.Tensor:
        return _flat(self._gL[len(self.px) :], self.py).detach()

    def F_mv(self, u, v):
        """C_F u + H_F v = ∇_own(∇_x J_n·u + ∇_own J_n·v + ∇_oth J_n·v)."""
        us, vs = _split(u.to(DTYPE), self.px), _split(v.to(DTYPE), self.py)
        return self._vjp(self._gFx + self._gF + self._gFt, self.po, us + vs + vs)

    def FT_mv(self, w):
        """(C_Fᵀ w, H_Fᵀ w): one vjp of g_F = ∇_own J_n (H_Fᵀ = H_ooᵀ + H_otᵀ: own and others parts)."""
        g = self._vjp(self._gF, self.px + self.po + self.py, _split(w.to(DTYPE), self.po))
        return g[: self.dx], g[self.dx : self.dx + self.dy] + g[self.dx + self.dy :]

    def leader_hvp(self, u, v):
        vs = _split(torch.cat([u, v]).to(DTYPE), self.px + self.py)
        return self._vjp(self._gL, self.px, vs)

    def lagrangian_hvp(self, w, u, v):
        """∇²L_w·(u, v) of L_w(x, y) = J_L − wᵀ g_F (y moves the others' and the deviating copy together)."""
        if self._lag is None:
            lag = self.J_L - sum((g * wi).sum() for g, wi in zip(self._gF, _split(w.detach(), self.po), strict=True))
            self._lag = self._grads(lag, self.px + self.po + self.py)
        vs = _split(v.to(DTYPE), self.py)
        outs = [g for g in self._lag]
        h = self._vjp(outs, self.px + self.po + self.py, _split(u.to(DTYPE), self.px) + vs + vs)
        return h[: self.dx], h[self.dx : self.dx + self.dy] + h[self.dx + self.dy :]

    # -- extras for the checks -----------------------------------------------------
    def utilities(self) -> tuple[float, float]:
        return float(self.J_L), float(self.J_F)

    def unused_directions(self) -> tuple[int, int]:
        """Parameters of x and y whose every second derivative vanishes here (they move no π entry on
        the instance, e.g. embeddings of tokens no prompt contains): structural zero eigenvalues."""
        gen = torch.Generator().manual_seed(0)
        lp_l, lp_f = self.game.tables()
        out = []
        for lp, params, mask in ((lp_l, self.px, self.game.leader_mask), (lp_f, self.py, self.game.follower_mask)):
            probe = torch.randn(lp.shape, generator=gen, dtype=DTYPE)
            g = _flat(torch.autograd.grad((lp.masked_fill(~mask, 0) * probe).sum(), params, allow_unused=True), params)
            out.append(int((g == 0).sum()))
        return out[0], out[1]

    def as_array(self, v: torch.Tensor) -> np.ndarray:
        return v.detach().numpy().astype(np.float64)
