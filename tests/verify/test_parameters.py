"""The exact parameter path (autograd over every player parameter) against the dense derivatives of the
tabular exact game: tabular players make the two games identical, so every product must agree."""

import numpy as np
import pytest
import torch

from mfsg.config import ChurnConfig, EnvConfig
from mfsg.game.base import ChurnDist
from mfsg.game.exact import ExactMacGame
from mfsg.game.exact_players import ExactPlayersGame
from mfsg.game.tabular_player import TabularPlayer
from mfsg.verify.derivatives import Dense, Derivatives
from mfsg.verify.parameters import ParameterDerivatives

CFG = EnvConfig(n_rbg=1, buffer=2, horizon=2, p_arrival=0.6, ucm_vocab=1, tbler=0.05, churn=ChurnConfig(kind="fixed", n=2))
TOL = 1e-9


@pytest.fixture(scope="module")
def games():
    tab = ExactMacGame(CFG, ChurnDist.uniform(1, 2))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(tab.dim_x, generator=g, dtype=torch.float64)
    y = torch.randn(tab.dim_y, generator=g, dtype=torch.float64)
    players = ExactPlayersGame(TabularPlayer("leader", tab, x), TabularPlayer("follower", tab, y), CFG,
                               ChurnDist.uniform(1, 2))
    return tab, x, y, players


def test_utilities_and_rows_match_the_tabular_game(games):
    tab, x, y, players = games
    jl, jf = players.values()
    assert abs(jl - float(tab.expected_leader(x, y))) < TOL and abs(jf - float(tab.follower_welfare(x, y))) < TOL
    assert (players.dim_x, players.dim_y) == (tab.dim_x, tab.dim_y)  # theta is every parameter of each player
    assert players.rows[0] <= len(tab.policies.leader.valid) and players.rows[1] <= len(tab.policies.follower.valid)


@pytest.mark.parametrize("rule", ["gradient", "stackelberg"])
def test_products_match_dense_autograd(games, rule):
    tab, x, y, players = games
    p, d = ParameterDerivatives(players, update_rule=rule), Dense(tab, x, y, update_rule=rule)
    assert isinstance(p, Derivatives) and isinstance(d, Derivatives)
    close = lambda a, b: float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max()) < 1e-8  # noqa: E731
    assert close(p.follower_gradient(), d.follower_gradient())
    assert close(p.follower_welfare_gradient(), tab.follower_welfare_gradient(x, y))
    assert close(p.gLx(), d.leader_gradient()[0]) and close(p.gLy(), d.leader_gradient()[1])
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(p.dx, generator=g, dtype=torch.float64), torch.randn(p.dy, generator=g, dtype=torch.float64)
    assert close(p.F_mv(u, v), d.C @ u + d.H @ v)
    ct, ht = p.FT_mv(v)
    assert close(ct, d.C.T @ v) and close(ht, d.H.T @ v)
    assert close(p.leader_update(), d.leader_update())
    J = p.jacobian_tau(4.0)
    z = torch.cat([u, v]).numpy()
    assert np.abs(J.matvec(z) - d.jacobian_tau(4.0) @ z).max() < 1e-7
    key = lambda ev: np.sort_complex(ev.real + 1j * np.abs(ev.imag))  # noqa: E731  (a cut may keep either conjugate)
    assert np.abs(key(p.eig_jacobian_tau(4.0, 3)) - key(d.eig_jacobian_tau(4.0, 3))).max() < 1e-6


def test_players_are_restored_after_moving(games):
    _, _, _, players = games
    x0, y0 = players.point()
    with players.at(x0 + 1.0, y0 - 1.0):
        assert not torch.equal(players.point()[0], x0)
    assert torch.equal(players.point()[0], x0) and torch.equal(players.point()[1], y0)


def test_trained_checks_on_tabular_players(games):
    """The exact-path rows run end to end; the instance's exact utilities agree with BatchedEnv Monte Carlo."""
    from mfsg.verify.report import VERDICTS
    from mfsg.verify.trained import TrainedCheckConfig, trained_checks

    _, _, _, players = games
    rows, facts = trained_checks(players, tau=4.0, eta_leader=0.05, cfg=TrainedCheckConfig(mc_episodes=2000, k=2))
    names = [r.check for r in rows]
    assert names[:2] == ["exact_vs_monte_carlo_N1", "exact_vs_monte_carlo_N2"] and rows[0].passed and rows[1].passed
    assert {"follower_stationarity", "follower_soc", "leader_soc", "hurwitz", "tau_critical"} <= set(names)
    assert all(r.verdict in VERDICTS for r in rows)
    # a random tabular point is not stationary: relative to the gradient at another random point it fails
    assert next(r for r in rows if r.check == "follower_stationarity").verdict in ("fail", "pass")
    assert facts["dim_x"] == players.dim_x and len(facts["eig_J_tau"]) == 2
