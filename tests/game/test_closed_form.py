import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mfsg.config import ConfigError
from mfsg.game.base import ChurnDist, Regularization
from mfsg.game.closed_form import LowRankQuadraticGame, QuadraticGame, random_quadratic, scalar_tau_game
from mfsg.verify.derivatives import Dense


@given(seed=st.integers(0, 10_000), dx=st.integers(1, 4), dy=st.integers(1, 4), n_max=st.integers(1, 5))
def test_closed_form_points_satisfy_their_conditions(seed, dx, dy, n_max):
    game = random_quadratic(dx, dy, ChurnDist.uniform(1, n_max), seed=seed)
    xs, ys = game.stackelberg_point()
    d = Dense(game, xs, ys)
    assert float(d.follower_gradient().norm()) < 1e-9
    assert float(d.leader_total_gradient().norm()) < 1e-9
    assert d.eig_follower(1).real.max() < 0 and d.eig_schur(1).real.max() < 0  # strict SOCs by construction
    xn, yn = game.nash_point()
    assert float(game.leader_gradient_x(xn, yn).norm()) < 1e-9
    assert float(game.follower_gradient(xn, yn).norm()) < 1e-9
    # commitment never hurts the leader (V is concave and Nash lies on the response curve)
    assert float(game.expected_leader(xs, ys)) >= float(game.expected_leader(xn, yn)) - 1e-12


def test_stackelberg_and_nash_differ():
    game = random_quadratic(2, 2, ChurnDist.fixed(2), seed=0)
    xs, ys = game.stackelberg_point()
    xn, yn = game.nash_point()
    assert float((xs - xn).norm()) > 1e-3


def test_total_hessian_is_the_schur_complement():
    game = random_quadratic(3, 2, ChurnDist.uniform(2, 3), seed=4)
    xs, ys = game.stackelberg_point()
    assert torch.allclose(torch.as_tensor(Dense(game, xs, ys).schur()), game.leader_total_hessian(), atol=1e-10)


def test_scalar_tau_game_and_validation():
    game, tau = scalar_tau_game(r=0.2, s=1.0, w=2.5)
    assert tau == pytest.approx(0.8)
    with pytest.raises(ConfigError, match="2s − r − w < 0"):
        scalar_tau_game(r=0.0, s=2.0, w=1.0)


def test_closed_forms_refuse_quartic_games():
    game = random_quadratic(1, 1, ChurnDist.fixed(1), seed=0, quartic=0.1)
    with pytest.raises(ConfigError, match="quartic"):
        game.stackelberg_point()
    with pytest.raises(ConfigError, match="quartic"):
        QuadraticGame(game.p, game.churn, reg=Regularization(0.1, 0.0)).nash_point()


def test_lowrank_game_equals_its_dense_form():
    game = LowRankQuadraticGame(6, 2, ChurnDist.uniform(2, 3), seed=1, quartic=0.1)
    dense = game.dense()
    x, y = game.initial_point(0)
    z = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    for n in (2, 3):
        assert float(game.leader_utility(x, y, n)) == pytest.approx(float(dense.leader_utility(x, y, n)))
        assert float(game.follower_utility(x, y, z, n)) == pytest.approx(float(dense.follower_utility(x, y, z, n)))
