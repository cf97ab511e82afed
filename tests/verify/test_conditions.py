import torch

from mfsg.game.base import ChurnDist, Regularization
from mfsg.game.closed_form import QuadraticGame, QuadraticParams, random_quadratic
from mfsg.verify import conditions
from mfsg.verify.derivatives import Dense, MatrixFree
from mfsg.verify.equilibrium import check_equilibrium


def _game():
    return random_quadratic(2, 3, ChurnDist.uniform(2, 4), seed=5, externality=0.3)


def test_all_checks_pass_at_the_closed_form_stackelberg_point():
    game = _game()
    xs, ys = game.stackelberg_point()
    for path in ("dense", "matrix_free"):
        rows = check_equilibrium("q", game, xs, ys, path=path, tau=4.0, eta_leader=0.05)
        assert all(r.passed for r in rows), [r for r in rows if not r.passed]
        assert {r.check for r in rows} >= {
            "follower_stationarity",
            "leader_stationarity",
            "follower_soc",
            "leader_soc",
            "ift_response",
            "schur_vs_fd_hessian",
            "hurwitz",
            "discrete_time",
        }


def test_stationarity_fails_away_from_the_equilibrium():
    game = _game()
    xs, ys = game.stackelberg_point()
    d = Dense(game, xs + 0.1, ys)
    assert not conditions.leader_stationarity("q", d, 1e-8).passed
    assert not conditions.follower_stationarity("q", d, 1e-8).passed
    # the Nash point is follower-stationary but not a Stackelberg point
    xn, yn = game.nash_point()
    dn = MatrixFree(game, xn, yn)
    assert conditions.follower_stationarity("q", dn, 1e-8).passed
    assert not conditions.leader_stationarity("q", dn, 1e-8).passed


def test_second_order_conditions_can_fail():
    """A follower whose own curvature is positive (Q < 0) is at a saddle: the follower SOC fails."""
    one = lambda v: torch.tensor([[v]], dtype=torch.float64)  # noqa: E731
    vec = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    p = QuadraticParams(
        Q=one(-1.0), P=one(1.0), c=vec(0.0), E=one(0.0), R=one(1.0), a=vec(0.0), S=one(0.0), h=vec(0.0), W=one(0.0)
    )
    game = QuadraticGame(p, ChurnDist.fixed(1), reg=Regularization())
    d = Dense(game, torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    assert not conditions.follower_second_order("saddle", d).passed
    # a leader with convex utility along the response curve (R < 0) fails the leader SOC
    p2 = QuadraticParams(
        Q=one(1.0), P=one(1.0), c=vec(0.0), E=one(0.0), R=one(-1.0), a=vec(0.0), S=one(0.0), h=vec(0.0), W=one(0.0)
    )
    d2 = Dense(
        QuadraticGame(p2, ChurnDist.fixed(1)), torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    )
    assert not conditions.leader_second_order("min", d2).passed


def test_ift_response_matches_the_closed_form():
    game = _game()
    xs, ys = game.stackelberg_point()
    K, _ = game.response_matrices()
    d = Dense(game, xs, ys)
    assert torch.allclose(d.response_jacobian(), K, atol=1e-12)
    assert conditions.ift_response("q", game, d, 1e-6).passed


def test_gradient_kinds_check():
    game = _game()
    xs, ys = game.stackelberg_point()
    assert conditions.gradient_kinds_differ("q", game, xs, ys, None, 1e-3).passed
    alone = random_quadratic(2, 3, ChurnDist.fixed(1), seed=5)
    x1, y1 = alone.stackelberg_point()
    assert not conditions.gradient_kinds_differ("q1", alone, x1, y1, None, 1e-3).passed
