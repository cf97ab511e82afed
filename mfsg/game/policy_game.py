"""Trained policies as a game: stochastic estimates from rollouts (model §8, last paragraph).

:class:`PolicyGame` wraps a leader and a unified follower :class:`~mfsg.learn.players.Player`
and a chosen parameter *subset* (flat vectors x of the leader, y of the follower). From whole
episodes of :func:`mfsg.learn.rollout.rollout` it estimates (all discounted as model §4):

- J_L and J_F (the followers' mean utility), with standard errors;
- ∇_x J_L and ∇_y J_L by the likelihood-ratio estimator Σ_t γ^t ∇log π(a_t|s_t)(G_t − b_t);
- g_F, the *individual* follower gradient (each UE's own return-to-go weights its own
  log-probabilities, averaged over the UEs of an episode: what shared-policy PPO follows), and,
  kept apart, the *welfare* gradient (the followers' average return weights every follower's
  log-probabilities), model §8.

Returns-to-go reuse :func:`mfsg.learn.ppo.gae` (λ = 1, zero values) with the churn breaks of
:func:`mfsg.learn.ppo.follower_continues`; the baseline b_t is the mean return-to-go at t over
the *other* episodes of the batch (leave-one-episode-out, so the estimator stays unbiased).
Every estimate is repeated over R seeds → mean and standard error. Second derivatives on the
subset are central finite differences of gradient estimates with common random numbers (the
same rollout seed at θ ± εv): an unbiased estimate of the finite difference of the exact
gradient. :func:`mfsg.verify.policy_checks.policy_checks` turns them into model §8 check rows
(equivalence tests on the error bars). Parameter subsets live in :mod:`mfsg.game.params`, error
bars in :mod:`mfsg.game.statistics`; repeat r of an estimate uses the seed
``mfsg.seeds.derive(cfg.seed, "policy_game", r)``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as sla
import torch

from mfsg.config import ConfigError, EnvConfig, check_int, check_nonneg, check_prob
from mfsg.env import BatchedEnv
from mfsg.game.base import DTYPE, NO_REGULARIZATION, Regularization
from mfsg.game.params import default_subset, get_flat, grad_flat, parse_subset, set_flat
from mfsg.game.statistics import SeedEstimate
from mfsg.learn.device import module_device, to_device
from mfsg.learn.players import Player, masked_log_probs
from mfsg.learn.ppo import follower_continues, gae
from mfsg.learn.rollout import Decisions, Rollout, rollout
from mfsg.seeds import derive

__all__ = [
    "PolicyGameConfig",
    "PolicyEstimates",
    "Blocks",
    "PolicyGame",
    "checkpoint_game",
    "returns_to_go",
    "loo_baseline",
    "ue_count",
    "QUANTITIES",
]

QUANTITIES = ("J_L", "J_F", "grad_x_L", "grad_y_L", "g_F", "g_welfare")


@dataclass(frozen=True)
class PolicyGameConfig:
    """Episodes per estimate, R repeats (seeds), the finite-difference step, the confidence level.

    ``gamma`` None uses the environment's utility γ (model §4).
    """

    episodes: int = 256
    repeats: int = 8
    fd_eps: float = 1e-2
    seed: int = 0
    confidence: float = 0.95
    gamma: float | None = None

    def __post_init__(self) -> None:
        check_int("policy_game.episodes", self.episodes, 2)  # the leave-one-out baseline needs 2
        check_int("policy_game.repeats", self.repeats, 2)  # a standard error needs 2
        check_nonneg("policy_game.fd_eps", self.fd_eps)
        if self.fd_eps == 0:
            raise ConfigError("policy_game.fd_eps=0 is invalid: allowed a positive step")
        check_int("policy_game.seed", self.seed, 0)
        check_prob("policy_game.confidence", self.confidence, open_low=True, open_high=True)
        if self.gamma is not None:
            check_prob("policy_game.gamma", self.gamma)


# --------------------------------------------------------------------------- estimates with error bars
@dataclass
class PolicyEstimates:
    J_L: SeedEstimate
    J_F: SeedEstimate
    grad_x_L: SeedEstimate
    grad_y_L: SeedEstimate
    g_F: SeedEstimate
    g_welfare: SeedEstimate


@dataclass
class Blocks:
    """Per-seed finite-difference blocks [R, ...] on the subset: A = ∂(∇_x J_L)/∂x, B = ∂(∇_x J_L)/∂y,
    C = ∂g_F/∂x, H = ∂g_F/∂y, and the gradients at the point (grad_x_L, grad_y_L, g_F)."""

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    H: np.ndarray
    at: PolicyEstimates

    @property
    def repeats(self) -> int:
        return self.A.shape[0]

    def jacobian_tau(self, tau: float, r: slice | np.ndarray | None = None) -> np.ndarray:
        """J_τ = [[A, B], [τC, τH]] (model §8 Thm. 2, gradient-play leader) averaged over seeds ``r``."""
        sel = slice(None) if r is None else r
        A, B, C, H = (m[sel].mean(axis=0) for m in (self.A, self.B, self.C, self.H))
        return np.block([[A, B], [tau * C, tau * H]])


# --------------------------------------------------------------------------- the game
class PolicyGame:
    """Trained players as a leader–follower game on a parameter subset (model §8).

    ``env_cfg`` is the environment the utilities are taken in (its churn gives P_N); ``reg``
    adds −μ/2‖·‖² on the subsets (as :class:`mfsg.game.base.Regularization` does on a Game).
    """

    def __init__(self, leader: Player, follower: Player, env_cfg: EnvConfig, *, leader_subset=None,
                 follower_subset=None, cfg: PolicyGameConfig = PolicyGameConfig(),
                 reg: Regularization = NO_REGULARIZATION, name: str = "policy_game"):
        self.leader, self.follower, self.env_cfg, self.cfg, self.reg, self.name = (
            leader, follower, env_cfg, cfg, reg, name)
        self.x_slices = parse_subset(leader, leader_subset or default_subset(leader))
        self.y_slices = parse_subset(follower, follower_subset or default_subset(follower))
        self.gamma = env_cfg.utility.gamma if cfg.gamma is None else cfg.gamma
        self.x0, self.y0 = self.point()
        self.dim_x, self.dim_y = len(self.x0), len(self.y0)

    def point(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The players' current (x, y) on the subset (float64 copies)."""
        return get_flat(self.leader, self.x_slices), get_flat(self.follower, self.y_slices)

    @contextmanager
    def at(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        """Temporarily set the subsets to (x, y); the players' parameters are restored on exit."""
        x0, y0 = self.point()
        try:
            if x is not None:
                set_flat(self.leader, self.x_slices, x)
            if y is not None:
                set_flat(self.follower, self.y_slices, y)
            yield
        finally:
            set_flat(self.leader, self.x_slices, x0)
            set_flat(self.follower, self.y_slices, y0)

    def seed_of(self, r: int) -> int:
        return derive(self.cfg.seed, "policy_game", r)

    # ------------------------------------------------------------------ one seed
    def sample(self, x=None, y=None, seed: int = 0) -> dict[str, np.ndarray]:
        """All six estimates from one batch of ``cfg.episodes`` episodes rolled out with ``seed``."""
        with self.at(x, y):
            env = BatchedEnv(self.env_cfg, self.cfg.episodes, seed=seed)
            ro = rollout(env, self.leader, self.follower, seed=seed)
            out = self._estimates(ro)
            xx, yy = self.point()
        out["J_L"] = out["J_L"] - 0.5 * self.reg.leader * float(xx @ xx)
        out["J_F"] = out["J_F"] - 0.5 * self.reg.follower * float(yy @ yy)
        out["grad_x_L"] = out["grad_x_L"] - self.reg.leader * xx.numpy()
        out["g_F"] = out["g_F"] - self.reg.follower * yy.numpy()
        out["g_welfare"] = out["g_welfare"] - self.reg.follower * yy.numpy()
        return out

    def _estimates(self, ro: Rollout) -> dict[str, np.ndarray]:
        E, T = ro.leader_reward.shape
        disc = self.gamma ** torch.arange(T, dtype=DTYPE)
        # leader: return-to-go of the leader's reward, shared by all decisions of (e, t)
        r_l = ro.leader_reward.to(DTYPE)
        G_l = returns_to_go(r_l, torch.ones(E, T, dtype=DTYPE), self.gamma)
        adv_l = disc * (G_l - loo_baseline(G_l, torch.ones(E, T, dtype=DTYPE)))
        # followers: each UE's own return-to-go, broken where its trajectory ends (model §3)
        r_f = ro.follower_reward.to(DTYPE)
        cont = follower_continues(ro.active, ro.ue_id).to(DTYPE)
        G_f = returns_to_go(r_f, cont, self.gamma)
        act = ro.active.to(DTYPE)
        n_ue = ue_count(ro.active, cont)  # [E] UE trajectories per episode
        adv_f = disc * (G_f - loo_baseline(G_f, act)[:, None, :]) / n_ue[:, None, None]
        # welfare: the followers' mean return-to-go from t, weighting every follower's decisions
        W = returns_to_go(r_f.sum(dim=1), torch.ones(E, T, dtype=DTYPE), self.gamma) / n_ue[:, None]
        adv_w = disc * (W - loo_baseline(W, torch.ones(E, T, dtype=DTYPE)))
        L, F = ro.leader, ro.follower
        lp_l, lp_f = _logp(self.leader, L), _logp(self.follower, F)
        grad_l = lambda w: grad_flat(self.leader, self.x_slices, (w * lp_l).sum() / E)  # noqa: E731
        grad_f = lambda w: grad_flat(self.follower, self.y_slices, (w * lp_f).sum() / E)  # noqa: E731
        return {
            "J_L": np.float64(G_l[:, 0].mean()),
            "J_F": np.float64((r_f * disc).sum(dim=(1, 2)).div(n_ue).mean()),
            "grad_x_L": grad_l(adv_l[L.e, L.t]).numpy(),
            "grad_y_L": grad_f(adv_l[F.e, F.t]).numpy(),
            "g_F": grad_f(adv_f[F.e, F.s, F.t]).numpy(),
            "g_welfare": grad_f(adv_w[F.e, F.t]).numpy(),
        }

    # ------------------------------------------------------------------ R seeds
    def estimate(self, x=None, y=None) -> PolicyEstimates:
        """Every estimate over ``cfg.repeats`` seeds: mean and standard error."""
        runs = [self.sample(x, y, self.seed_of(r)) for r in range(self.cfg.repeats)]
        return PolicyEstimates(**{q: SeedEstimate.of([s[q] for s in runs]) for q in QUANTITIES})

    def _fd(self, x, y, which: str, v: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
        """Central difference of the gradient estimates along v (in x or y), same seed at both ends."""
        e = self.cfg.fd_eps
        x, y = (self.x0 if x is None else x), (self.y0 if y is None else y)
        plus = self.sample(x + e * v, y, seed) if which == "x" else self.sample(x, y + e * v, seed)
        minus = self.sample(x - e * v, y, seed) if which == "x" else self.sample(x, y - e * v, seed)
        return {q: (plus[q] - minus[q]) / (2 * e) for q in ("grad_x_L", "grad_y_L", "g_F", "g_welfare")}

    def follower_hvp(self, v, x=None, y=None) -> SeedEstimate:
        """H_F·v = ∂g_F/∂y·v by central differences with common random numbers, over R seeds."""
        v = torch.as_tensor(np.asarray(v), dtype=DTYPE)
        return SeedEstimate.of([self._fd(x, y, "y", v, self.seed_of(r))["g_F"] for r in range(self.cfg.repeats)])

    def blocks(self, x=None, y=None) -> Blocks:
        """Per-seed dense A, B, C, H on the subset by finite differences along the coordinates."""
        R, dx, dy = self.cfg.repeats, self.dim_x, self.dim_y
        A, B, C, H = np.zeros((R, dx, dx)), np.zeros((R, dx, dy)), np.zeros((R, dy, dx)), np.zeros((R, dy, dy))
        for r in range(R):
            seed = self.seed_of(r)
            for i, u in enumerate(torch.eye(dx, dtype=DTYPE)):
                d = self._fd(x, y, "x", u, seed)
                A[r, :, i], C[r, :, i] = d["grad_x_L"], d["g_F"]
            for j, v in enumerate(torch.eye(dy, dtype=DTYPE)):
                d = self._fd(x, y, "y", v, seed)
                B[r, :, j], H[r, :, j] = d["grad_x_L"], d["g_F"]
        return Blocks(A, B, C, H, self.estimate(x, y))

    # ------------------------------------------------------------------ matrix-free operators
    def _operator(self, n: int, matvec) -> sla.LinearOperator:
        def mv(v):
            v = np.asarray(v, dtype=np.float64).reshape(-1)
            norm = float(np.linalg.norm(v))
            if norm == 0.0:
                return np.zeros(n)
            return norm * matvec(torch.as_tensor(v / norm, dtype=DTYPE))  # positively homogeneous

        return sla.LinearOperator((n, n), matvec=mv, dtype=np.float64)

    def follower_hessian_operator(self, x=None, y=None) -> sla.LinearOperator:
        """H_F as a LinearOperator (seed-averaged finite differences; for eigs/gmres on large subsets)."""
        return self._operator(self.dim_y, lambda v: self.follower_hvp(v, x, y).mean)

    def jacobian_tau_operator(self, tau: float, x=None, y=None) -> sla.LinearOperator:
        """J_τ·(u, v) = (A u + B v, τ(C u + H v)) as a LinearOperator (gradient-play leader)."""
        dx, R = self.dim_x, self.cfg.repeats

        def mv(z):
            u, v = z[:dx], z[dx:]
            tot = np.zeros(self.dim_x + self.dim_y)
            for r in range(R):
                s = self.seed_of(r)
                du = self._fd(x, y, "x", u, s) if float(u.norm()) > 0 else None
                dv = self._fd(x, y, "y", v, s) if float(v.norm()) > 0 else None
                for d in (du, dv):
                    if d is not None:
                        tot += np.concatenate([d["grad_x_L"], tau * d["g_F"]])
            return tot / R

        return self._operator(dx + self.dim_y, mv)


# --------------------------------------------------------------------------- estimator pieces
def returns_to_go(rewards: torch.Tensor, cont: torch.Tensor, gamma: float) -> torch.Tensor:
    """Σ_{k≥0} γ^k r_{t+k} while the trajectory continues (:func:`mfsg.learn.ppo.gae` with λ = 1, V = 0)."""
    return gae(rewards, torch.zeros_like(rewards), cont, gamma, 1.0)[0]


def loo_baseline(G: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """b[e, t]: mean of G at t over the decisions of the *other* episodes (leading dim e; other
    dims except the last are pooled with ``weight`` as the decision indicator)."""
    E, T = G.shape[0], G.shape[-1]
    g, w = (G * weight).reshape(E, -1, T).sum(dim=1), weight.reshape(E, -1, T).sum(dim=1)
    num, den = g.sum(dim=0) - g, w.sum(dim=0) - w
    return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))


def ue_count(active: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
    """[E] number of UE trajectories in each episode (a slot refilled by a new UE counts twice)."""
    starts = active.clone()
    starts[..., 1:] &= cont[..., :-1] == 0
    return starts.sum(dim=(1, 2)).to(DTYPE).clamp(min=1)


def _logp(player: Player, dec: Decisions) -> torch.Tensor:
    """log π(a|s) of the stored actions, with autograd (recomputed from the stored inputs on the player's
    device, brought back to the CPU where the estimators run)."""
    dev = module_device(player)
    lp = masked_log_probs(player.scores(to_device(dec.inputs, dev)), dec.mask.to(dev))
    return lp.gather(1, dec.action.to(dev)[:, None]).squeeze(1).to(device="cpu", dtype=DTYPE)


def checkpoint_game(path, cfg: PolicyGameConfig = PolicyGameConfig(), *, leader_subset=None,
                    follower_subset=None, name: str | None = None, device: str = "cpu") -> tuple[PolicyGame, float]:
    """The players of a training run's ``final/`` (or ``checkpoint/``) folder as a :class:`PolicyGame`
    in the run's environment, and the run's timescale ratio τ (``ppo.tau``); ``name`` (default
    ``policy[<path>]``) labels the game in reports; ``device``: where the players run (the estimators stay on the CPU)."""
    from mfsg.learn.train import load_players  # training imports the env, players and PPO: load lazily

    leader, follower, run_cfg = load_players(path, device=device)
    game = PolicyGame(leader, follower, run_cfg.env, leader_subset=leader_subset, follower_subset=follower_subset,
                      cfg=cfg, name=name or f"policy[{path}]")
    return game, run_cfg.ppo.tau
