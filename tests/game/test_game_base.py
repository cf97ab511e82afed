import pytest
import torch

from mfsg.config import ConfigError
from mfsg.game.base import ChurnDist, SubsetGame
from mfsg.game.closed_form import random_quadratic


def test_churn_dist_validation_names_the_field():
    with pytest.raises(ConfigError, match="churn.probs"):
        ChurnDist((2, 3), (0.5, 0.6))
    with pytest.raises(ConfigError, match=r"churn.support\[0\]"):
        ChurnDist((0,), (1.0,))
    with pytest.raises(ConfigError, match="churn.support"):
        ChurnDist((2, 2), (0.5, 0.5))


def test_churn_mixture_and_support():
    d = ChurnDist.uniform(2, 3).mixture(ChurnDist.fixed(4), 0.25)
    assert d.support == (2, 3, 4)
    assert d.probs == pytest.approx((0.375, 0.375, 0.25))
    assert d.on_support((1, 2, 3, 4)).tolist() == pytest.approx([0, 0.375, 0.375, 0.25])
    with pytest.raises(ConfigError):
        d.on_support((2, 3))


def test_expected_utilities_average_over_p_n():
    game = random_quadratic(2, 2, ChurnDist.uniform(2, 4), seed=0)
    x, y = game.initial_point(1)
    manual = sum(game.leader_utility(x, y, n) for n in (2, 3, 4)) / 3
    assert float(game.expected_leader(x, y)) == pytest.approx(float(manual))
    fixed = game.expected_leader(x, y, ChurnDist.fixed(3))
    assert float(fixed) == pytest.approx(float(game.leader_utility(x, y, 3)))


def test_individual_gradient_differs_from_welfare_gradient_with_externality():
    """g_F ignores the effect of y on the other followers; the welfare gradient includes it."""
    game = random_quadratic(2, 3, ChurnDist.fixed(3), seed=2, externality=0.5)
    x, y = game.initial_point(0)
    g_ind, g_avg = game.follower_gradient(x, y), game.follower_welfare_gradient(x, y)
    assert float((g_ind - g_avg).norm()) > 1e-3
    # closed forms: g_F = -(Q - E - E^T/n) y + Px + c, welfare gradient = -(Q - E - E^T) y + Px + c
    p = game.p
    lin = p.P @ x + p.c
    assert torch.allclose(g_ind, -(p.Q - p.E - p.E.T / 3) @ y + lin)
    assert torch.allclose(g_avg, -(p.Q - p.E - p.E.T) @ y + lin)


@pytest.mark.parametrize("n, externality", [(1, 0.5), (4, 0.0)])
def test_gradients_coincide_without_externality_or_with_one_follower(n, externality):
    game = random_quadratic(2, 3, ChurnDist.fixed(n), seed=2, externality=externality)
    x, y = game.initial_point(0)
    assert torch.allclose(game.follower_gradient(x, y), game.follower_welfare_gradient(x, y))


def test_subset_game_restricts_gradients():
    game = random_quadratic(4, 5, ChurnDist.fixed(2), seed=3, quartic=0.1)
    x, y = game.initial_point(0)
    xi, yi = [0, 2], [1, 3, 4]
    sub = SubsetGame(game, x, y, xi, yi)
    xs, ys = sub.initial_point()
    assert torch.equal(xs, x[xi]) and torch.equal(ys, y[yi])
    assert torch.allclose(sub.follower_gradient(xs, ys), game.follower_gradient(x, y)[yi])
    assert torch.allclose(sub.leader_gradient_x(xs, ys), game.leader_gradient_x(x, y)[xi])
