import pytest
import torch

from mfsg.config import ConfigError
from mfsg.game.base import ChurnDist, Game
from mfsg.game.closed_form import random_quadratic
from mfsg.verify.existence import ExistenceConfig, existence_checks, projected_follower
from mfsg.verify.robustness import RobustnessConfig, churn_robustness, equilibrium_shift


def test_existence_evidence_on_a_quadratic_game():
    game = random_quadratic(2, 2, ChurnDist.fixed(2), seed=1)
    rows = existence_checks("q", game, None, ExistenceConfig(n_samples=5, radius=3.0))
    assert [r.check for r in rows] == ["existence_best_response", "existence_continuity", "existence_maximizer"]
    assert all(r.passed for r in rows), rows


class _JumpGame(Game):
    """A leader utility with a jump at x = 0.3 (inside the box [−1, 1]): the continuity evidence must fail."""

    name, dim_x, dim_y, churn, bound = "jump", 1, 1, ChurnDist.fixed(1), 1.0

    def leader_utility(self, x, y, n):
        return torch.where(x[0] > 0.3, 1.0, 0.0).to(x.dtype) - 0.5 * (x * x).sum()

    def follower_utility(self, x, y_own, y_others, n):
        return -0.5 * ((y_own - x) ** 2).sum()


def test_continuity_check_detects_a_jump():
    rows = existence_checks("jump", _JumpGame(), None, ExistenceConfig(n_samples=4, n_segments=6, seed=2))
    cont = {r.check: r for r in rows}["existence_continuity"]
    assert not cont.passed


def test_projected_follower_stays_in_the_box():
    game = random_quadratic(2, 2, ChurnDist.fixed(2), seed=1)
    x = torch.full((2,), 50.0, dtype=torch.float64)  # pushes the unconstrained response far out
    y, res = projected_follower(game, x, torch.zeros(2, dtype=torch.float64), 1.0)
    assert bool((y.abs() <= 1.0).all()) and res < 1e-6


def test_equilibrium_shift_matches_the_closed_form():
    """dz*/dp by the IFT equals the derivative of the closed-form Stackelberg point along the P_N mixture."""
    base, target = ChurnDist.uniform(2, 3), ChurnDist.fixed(5)
    game = random_quadratic(2, 3, base.mixture(target, 0.0), seed=3, externality=0.4)
    x, y = game.stackelberg_point(base)
    pred = equilibrium_shift(game, x, y, base, target)
    h = 1e-5
    zp = torch.cat(game.stackelberg_point(base.mixture(target, h)))
    z0 = torch.cat([x, y])
    assert torch.allclose(pred, (zp - z0) / h, atol=1e-4)
    rows = churn_robustness("q", game, x, y, base, target, tau=4.0)
    assert all(r.passed for r in rows), rows


def test_config_validation():
    with pytest.raises(ConfigError, match="existence.n_samples"):
        ExistenceConfig(n_samples=0)
    with pytest.raises(ConfigError, match="robustness.continuation_steps"):
        RobustnessConfig(continuation_steps=0)
