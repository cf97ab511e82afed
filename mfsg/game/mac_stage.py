"""The analytic one-TTI MAC game with N followers, derived in sympy (model §8 test games).

One TTI of model §2 at t = 0 (T = 1, so it is also the last TTI): every UE starts empty and gets
a dPDU with probability p_a (§2.2); the BS, whose observation is the fixed initial one, sends
each UE a DCM d drawn from σ(x) (leader logits x ∈ R^{D−1}, first logit fixed at 0); a
backlogged UE that received d chooses an access action (IDLE, TX k, DELETE) from σ(y_d)
(follower logits y ∈ R^{D×(K+1)}, IDLE's logit fixed at 0); an empty UE idles (§2.4). The
channel (§2.5–§2.7) and the rewards are model §4's: the follower reward and the team reward
are :func:`mfsg.env.spec.follower_reward` and :func:`mfsg.env.spec.team_reward` applied to
sympy expectations (both are linear in their counts), and the leader adds β_fair·E[Jain],
where Jain = D/N when D ≥ 1 dPDUs are decoded and 1 when none is (model §7 with x_n ∈ {0, 1}).
UCMs have no effect within one TTI and are left out.

The channel and reward expectations (:meth:`MacStageGame.expected_rewards`; the probability
that no dPDU is decoded sums the multinomial over senders per RBG) are written once and
evaluated on sympy expressions (the derivation, differentiated by ``sympy.diff``) and on torch
vectors (the fast game used by the checks); the tests check that values and derivatives agree.
"""

from __future__ import annotations

import itertools
from math import factorial

import sympy as sp
import torch

from mfsg.config import ConfigError, EnvConfig
from mfsg.env import spec
from mfsg.game.base import NO_REGULARIZATION, ChurnDist, Game, Regularization

__all__ = ["MacStageGame"]


def _softmax(logits: list) -> list:
    e = [sp.exp(v) for v in logits]
    s = sum(e)
    return [v / s for v in e]


class MacStageGame(Game):
    """Expected one-TTI utilities of model §2/§4 as a game on (x, y) (see module docstring)."""

    def __init__(
        self,
        cfg: EnvConfig,
        churn: ChurnDist,
        *,
        reg: Regularization = NO_REGULARIZATION,
        name: str = "mac_stage",
        bound: float = 6.0,
    ):
        pa = set(cfg.arrival_probs())
        if len(pa) != 1:
            raise ConfigError(
                f"p_arrival={cfg.p_arrival!r} is invalid for the stage game: allowed one value for all UEs"
            )
        self.cfg, self.churn, self.reg, self.name, self.bound = cfg, churn, reg, name, bound
        self.p_a = pa.pop()
        self.K, self.D = cfg.n_rbg, cfg.dcm_vocab
        self.A = self.K + 2  # access actions: IDLE, TX 1..K, DELETE
        self.dim_x = self.D - 1
        self.dim_y = self.D * (self.A - 1)
        self.xs = sp.symbols(f"x0:{self.dim_x}", real=True)
        self.ys = sp.symbols(f"y0:{self.dim_y}", real=True)
        self.zs = sp.symbols(f"z0:{self.dim_y}", real=True)  # the other followers' parameters
        self._terms: dict[int, tuple] = {}
        self._sympy: dict[int, tuple[sp.Expr, sp.Expr]] = {}

    # ------------------------------------------------------------------ the model
    def action_probs_sympy(self, xs, ys) -> list:
        """P(IDLE), P(TX 1..K), P(DELETE) of one UE (backlog and DCM drawn), as sympy expressions."""
        dcm = _softmax([0, *xs])
        rows = [_softmax([0, *ys[d * (self.A - 1) : (d + 1) * (self.A - 1)]]) for d in range(self.D)]
        act = [self.p_a * sum(dcm[d] * rows[d][a] for d in range(self.D)) for a in range(self.A)]
        act[spec.IDLE] += 1 - self.p_a
        return act

    def action_probs_torch(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The same probabilities as a torch vector (vectorized softmax)."""
        zero = torch.zeros(1, dtype=x.dtype)
        dcm = torch.softmax(torch.cat([zero, x]), dim=0)
        rows = torch.softmax(torch.cat([torch.zeros(self.D, 1, dtype=y.dtype), y.view(self.D, self.A - 1)], 1), dim=1)
        idle = torch.zeros(self.A, dtype=x.dtype)
        idle[spec.IDLE] = 1 - self.p_a
        return self.p_a * dcm @ rows + idle

    def _multinomial_terms(self, n: int) -> tuple[tuple[tuple[int, ...], int, int], ...]:
        """(counts per category, multinomial coefficient, RBGs with one sender) for every split of n UEs."""
        if n not in self._terms:
            out = []
            for counts in itertools.product(range(n + 1), repeat=self.K + 1):
                if sum(counts) == n:
                    coef = factorial(n)
                    for c in counts:
                        coef //= factorial(c)
                    out.append((counts, coef, sum(1 for c in counts[1:] if c == 1)))
            self._terms[n] = tuple(out)
        return self._terms[n]

    def _p_none_decoded(self, q, n: int):
        """P(no dPDU decoded): multinomial over the RBG each UE sends on (q[0] = not sending).

        A split with s RBGs holding exactly one sender decodes nothing with probability tbler^s.
        """
        terms = self._multinomial_terms(n)
        weights = [coef * self.cfg.tbler**singles for _, coef, singles in terms]
        if isinstance(q, torch.Tensor):
            counts = torch.tensor([c for c, _, _ in terms], dtype=q.dtype)
            return (torch.tensor(weights, dtype=q.dtype) * (q[None, :] ** counts).prod(dim=1)).sum()
        monomial = lambda counts: sp.Mul(*[q[i] ** c for i, c in enumerate(counts)])  # noqa: E731
        return sum(w * monomial(counts) for (counts, _, _), w in zip(terms, weights, strict=True))

    def expected_rewards(self, own, oth, n: int):
        """(E r_L, E r_n) of the TTI from the deviator's (``own``) and the others' action probabilities.

        Written once for sympy lists and torch vectors alike; ``own`` = ``oth`` for the leader's
        symmetric profile.
        """
        u, K, ok = self.cfg.utility, self.K, 1 - self.cfg.tbler
        dele = self.A - 1
        tx_own = sum(own[k] for k in range(1, K + 1))
        new_own = ok * sum(own[k] * (1 - oth[k]) ** (n - 1) for k in range(1, K + 1))
        follower = spec.follower_reward(u, new_own, own[dele], self.p_a - own[dele], tx_own, self.cfg.buffer)
        tx_oth = sum(oth[k] for k in range(1, K + 1))
        delivered = n * ok * sum(oth[k] * (1 - oth[k]) ** (n - 1) for k in range(1, K + 1))
        senders = [1 - tx_oth] + [oth[k] for k in range(1, K + 1)]
        if isinstance(oth, torch.Tensor):
            senders = torch.stack(senders)
        jain = delivered / n + self._p_none_decoded(senders, n)
        leader = spec.team_reward(u, delivered, n * oth[dele]) + u.beta_fair * jain
        return leader, follower

    def sympy_utilities(self, n: int) -> tuple[sp.Expr, sp.Expr]:
        """(J_L(x, y, n), J_F(x, y_own = y, y_others = z, n)) as sympy expressions."""
        if n not in self._sympy:
            own, oth = self.action_probs_sympy(self.xs, self.ys), self.action_probs_sympy(self.xs, self.zs)
            leader, _ = self.expected_rewards(own, own, n)
            _, follower = self.expected_rewards(own, oth, n)
            self._sympy[n] = (leader, follower)
        return self._sympy[n]

    def sympy_derivatives(self, n: int):
        """``sympy.diff`` of the utilities, compiled: f_L(*x, *y) and f_F(*x, *y, *z) each return
        [J, ∂J/∂x..., ∂J/∂y...] (derivatives with respect to the leader's and the own follower parameters)."""
        leader, follower = self.sympy_utilities(n)
        wrt = (*self.xs, *self.ys)
        fl = sp.lambdify([*wrt], [leader] + [sp.diff(leader, s) for s in wrt], modules="math", cse=True)
        ff = sp.lambdify([*wrt, *self.zs], [follower] + [sp.diff(follower, s) for s in wrt], modules="math", cse=True)
        return fl, ff

    # ------------------------------------------------------------------ Game
    def leader_utility(self, x, y, n):
        q = self.action_probs_torch(x, y)
        return self.expected_rewards(q, q, n)[0]

    def follower_utility(self, x, y_own, y_others, n):
        return self.expected_rewards(self.action_probs_torch(x, y_own), self.action_probs_torch(x, y_others), n)[1]

    def symbols(self) -> tuple[tuple, tuple, tuple]:
        """(x, y_own, y_others) sympy symbols, in the order of the flat parameter vectors."""
        return self.xs, self.ys, self.zs

    def exact_follower_params(self, exact, y: torch.Tensor) -> torch.Tensor:
        """This game's per-DCM follower logits placed on an :class:`~mfsg.game.exact.ExactMacGame`'s rows.

        With T = 1 and one UCM symbol, the exact game's follower rows are (buffer, DCM): rows with
        an empty buffer have no parameter (IDLE only), rows with a dPDU take y's logits for their
        DCM; its single leader row takes x unchanged. Used to check both models agree.
        """
        coder, rows = exact.policies.coder, exact.policies.follower
        out = torch.zeros(rows.dim, dtype=y.dtype)
        for code, r in rows.codes.items():
            if coder.follower_buffer(code) == 0:
                continue
            dcm = code % coder.D
            out[(rows.free_rows == r).nonzero().flatten()] = y[dcm * (self.A - 1) : (dcm + 1) * (self.A - 1)]
        return out
