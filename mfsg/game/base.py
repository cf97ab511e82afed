"""The game interface of model §8: leader and follower utilities as differentiable torch
functions of flat parameter vectors, with the number of followers n as an input.

A :class:`Game` implements two functions, both at a *symmetric* follower profile:

- ``leader_utility(x, y, n)``: J_L(x, y) when all n followers play y;
- ``follower_utility(x, y_own, y_others, n)``: J_n(x, y_n, y_−n) of a follower playing
  ``y_own`` while the n − 1 others play ``y_others``, averaged over which follower deviates
  (so games whose followers are not exchangeable are averaged as model §8 says).

Everything else is derived here: expectations over the churn distribution P_N (a probability
vector over ``churn.support``, optionally a differentiable tensor so that the robustness check
can differentiate through it), the individual follower gradient g_F (what shared-policy PPO
follows) and, kept apart from it, the gradient of the followers' *average* utility.

A trained policy can be plugged in as a game (model §8, last paragraph): its utilities may be
differentiable estimates on a fixed batch, and :class:`SubsetGame` restricts any game to a
chosen subset of its parameters, so that every check of :mod:`mfsg.verify` (dense or
matrix-free) runs on that subset.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch.func import grad

from mfsg.config import ConfigError, check_int, check_nonneg, check_prob

DTYPE = torch.float64
# Probabilities must sum to one up to this rounding slack.
_PROB_SUM_SLACK = 1e-9

__all__ = ["DTYPE", "ChurnDist", "Regularization", "NO_REGULARIZATION", "Game", "SubsetGame"]


@dataclass(frozen=True)
class ChurnDist:
    """P_N: a distribution over the number of followers (model §3, §8)."""

    support: tuple[int, ...]
    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "support", tuple(self.support))
        object.__setattr__(self, "probs", tuple(float(p) for p in self.probs))
        if not self.support or len(self.support) != len(self.probs):
            raise ConfigError(
                f"churn.probs={list(self.probs)!r} is invalid: "
                f"allowed one probability per support value {list(self.support)}"
            )
        for i, n in enumerate(self.support):
            check_int(f"churn.support[{i}]", n, 1)
        if len(set(self.support)) != len(self.support):
            raise ConfigError(f"churn.support={list(self.support)!r} is invalid: allowed distinct numbers of followers")
        for i, p in enumerate(self.probs):
            check_prob(f"churn.probs[{i}]", p)
        if abs(sum(self.probs) - 1.0) > _PROB_SUM_SLACK:
            raise ConfigError(f"churn.probs={list(self.probs)!r} is invalid: allowed probabilities summing to 1")

    @staticmethod
    def fixed(n: int) -> ChurnDist:
        return ChurnDist((n,), (1.0,))

    @staticmethod
    def uniform(n_min: int, n_max: int) -> ChurnDist:
        """``per_episode(n_min, n_max)`` of model §3: N uniform at reset."""
        check_int("churn.n_max", n_max, n_min)
        k = n_max - n_min + 1
        return ChurnDist(tuple(range(n_min, n_max + 1)), (1.0 / k,) * k)

    def tensor(self) -> torch.Tensor:
        return torch.tensor(self.probs, dtype=DTYPE)

    def mixture(self, other: ChurnDist, p: float) -> ChurnDist:
        """(1 − p)·self + p·other on the union of the supports."""
        check_prob("churn.mixture_weight", p)
        support = tuple(sorted(set(self.support) | set(other.support)))
        a, b = dict(zip(self.support, self.probs, strict=True)), dict(zip(other.support, other.probs, strict=True))
        return ChurnDist(support, tuple((1 - p) * a.get(n, 0.0) + p * b.get(n, 0.0) for n in support))

    def on_support(self, support: tuple[int, ...]) -> torch.Tensor:
        """This distribution as a probability vector over a larger ``support``."""
        d = dict(zip(self.support, self.probs, strict=True))
        missing = set(self.support) - set(support)
        if missing:
            raise ConfigError(
                f"churn.support={list(support)!r} is invalid: allowed a superset of {sorted(self.support)}"
            )
        return torch.tensor([d.get(n, 0.0) for n in support], dtype=DTYPE)


@dataclass(frozen=True)
class Regularization:
    """Optional L2 terms −μ/2‖θ‖² on each player's expected utility (weight decay).

    They make a player's problem strictly concave far from the origin, so that interior
    equilibria exist in games whose raw optimum is at infinite logits (tabular softmax).
    Zero (the default) leaves the model §4 utilities unchanged.
    """

    leader: float = 0.0
    follower: float = 0.0

    def __post_init__(self) -> None:
        check_nonneg("regularization.leader", self.leader)
        check_nonneg("regularization.follower", self.follower)


NO_REGULARIZATION = Regularization()


class Game(ABC):
    """A leader–(symmetric) multi-follower game on flat parameter vectors (model §8).

    Subclasses set ``name``, ``dim_x``, ``dim_y``, ``churn`` (:class:`ChurnDist`),
    optionally ``reg`` and ``bound`` (the compact set [−bound, bound]^d of model §8 Thm. 1),
    and implement :meth:`leader_utility` and :meth:`follower_utility`.
    """

    name: str = "game"
    dim_x: int
    dim_y: int
    churn: ChurnDist
    reg: Regularization = NO_REGULARIZATION
    bound: float = 10.0

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def leader_utility(self, x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
        """J_L(x, y) with n followers all playing y (a 0-dim tensor)."""

    @abstractmethod
    def follower_utility(self, x: torch.Tensor, y_own: torch.Tensor, y_others: torch.Tensor, n: int) -> torch.Tensor:
        """J_n(x, y_n = y_own, y_−n = y_others) averaged over the deviating follower (0-dim)."""

    def initial_point(self, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded starting point for the solvers (small random parameters)."""
        g = torch.Generator().manual_seed(seed)
        return (
            0.1 * torch.randn(self.dim_x, generator=g, dtype=DTYPE),
            0.1 * torch.randn(self.dim_y, generator=g, dtype=DTYPE),
        )

    # ------------------------------------------------------------------ P_N expectations
    def probs(self, probs: torch.Tensor | ChurnDist | None = None) -> torch.Tensor:
        """The P_N weight vector over ``churn.support`` (default: the game's own P_N)."""
        if probs is None:
            return self.churn.tensor()
        if isinstance(probs, ChurnDist):
            return probs.on_support(self.churn.support)
        return probs

    def expected_leader(self, x, y, probs=None) -> torch.Tensor:
        """E_{N~P_N} J_L(x, y, N) − μ_L/2 ‖x‖²."""
        w = self.probs(probs)
        total = sum(w[i] * self.leader_utility(x, y, n) for i, n in enumerate(self.churn.support))
        return total - 0.5 * self.reg.leader * (x * x).sum()

    def expected_follower(self, x, y_own, y_others, probs=None) -> torch.Tensor:
        """E_{N~P_N} J_N(x, y_own, y_others) − μ_F/2 ‖y_own‖²."""
        w = self.probs(probs)
        total = sum(w[i] * self.follower_utility(x, y_own, y_others, n) for i, n in enumerate(self.churn.support))
        return total - 0.5 * self.reg.follower * (y_own * y_own).sum()

    def follower_welfare(self, x, y, probs=None) -> torch.Tensor:
        """The followers' average utility at the symmetric profile (y_own = y_others = y)."""
        return self.expected_follower(x, y, y, probs)

    # ------------------------------------------------------------------ gradients
    def follower_gradient(self, x, y, probs=None) -> torch.Tensor:
        """g_F(x, y) = ∇_{y_n} J_n(x, y_n, y_−n) at y_n = y_−n = y (model §8): what PPO follows."""
        return grad(lambda yo: self.expected_follower(x, yo, y, probs))(y)

    def follower_welfare_gradient(self, x, y, probs=None) -> torch.Tensor:
        """∇_y of the followers' average utility: includes the effect of y on the other followers."""
        return grad(lambda yy: self.follower_welfare(x, yy, probs))(y)

    def leader_gradient_x(self, x, y, probs=None) -> torch.Tensor:
        """∇_x J_L (partial: the follower's response held fixed)."""
        return grad(lambda xx: self.expected_leader(xx, y, probs))(x)

    def leader_gradient_y(self, x, y, probs=None) -> torch.Tensor:
        """∇_y J_L (all followers' shared parameters moved together)."""
        return grad(lambda yy: self.expected_leader(x, yy, probs))(y)

    def describe(self) -> str:
        return (
            f"{self.name} (dim_x={self.dim_x}, dim_y={self.dim_y}, "
            f"N~{dict(zip(self.churn.support, self.churn.probs, strict=True))})"
        )


class SubsetGame(Game):
    """A game restricted to a parameter subset: the other entries stay at ``x_full``/``y_full``.

    This is how a large policy game is verified on a chosen subset of its parameters
    (model §8, last paragraph): gradients, Hessian-vector products and spectra are those of the
    restricted utilities.
    """

    def __init__(self, game: Game, x_full: torch.Tensor, y_full: torch.Tensor, x_idx, y_idx):
        self.base = game
        self.x_full, self.y_full = x_full.detach().to(DTYPE), y_full.detach().to(DTYPE)
        self.x_idx = torch.as_tensor(x_idx, dtype=torch.long)
        self.y_idx = torch.as_tensor(y_idx, dtype=torch.long)
        self.name = f"{game.name}[subset]"
        self.dim_x, self.dim_y = len(self.x_idx), len(self.y_idx)
        self.churn, self.reg, self.bound = game.churn, Regularization(), game.bound
        self._reg_base = game.reg

    def _embed(self, full: torch.Tensor, idx: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        return full.index_put((idx,), part)

    def leader_utility(self, x, y, n):
        return self.base.leader_utility(
            self._embed(self.x_full, self.x_idx, x), self._embed(self.y_full, self.y_idx, y), n
        )

    def follower_utility(self, x, y_own, y_others, n):
        xf = self._embed(self.x_full, self.x_idx, x)
        return self.base.follower_utility(
            xf, self._embed(self.y_full, self.y_idx, y_own), self._embed(self.y_full, self.y_idx, y_others), n
        )

    def expected_leader(self, x, y, probs=None):
        xf = self._embed(self.x_full, self.x_idx, x)
        return self.base.expected_leader(xf, self._embed(self.y_full, self.y_idx, y), probs)

    def expected_follower(self, x, y_own, y_others, probs=None):
        xf = self._embed(self.x_full, self.x_idx, x)
        yo, yt = self._embed(self.y_full, self.y_idx, y_own), self._embed(self.y_full, self.y_idx, y_others)
        return self.base.expected_follower(xf, yo, yt, probs)

    def initial_point(self, seed: int = 0):
        return self.x_full[self.x_idx].clone(), self.y_full[self.y_idx].clone()
