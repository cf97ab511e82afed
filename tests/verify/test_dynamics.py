import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mfsg.config import ConfigError
from mfsg.game.closed_form import scalar_tau_game
from mfsg.verify.derivatives import Dense, MatrixFree
from mfsg.verify.dynamics import TauScanConfig, critical_tau, discrete_time, hurwitz, scan_critical_tau


def _at_equilibrium(r, s, w):
    game, tau_star = scalar_tau_game(r=r, s=s, w=w)
    x, y = game.stackelberg_point()
    return game, tau_star, x, y


@given(r=st.floats(-1.0, 2.0), s=st.floats(-1.0, 2.0), w=st.floats(0.0, 6.0))
def test_critical_tau_matches_closed_form(r, s, w):
    assume(2 * s - r - w < -0.05)  # a strict maximum of the leader (otherwise no DSE)
    game, tau_star, x, y = _at_equilibrium(r, s, w)
    scan = scan_critical_tau(Dense(game, x, y), TauScanConfig(tau_min=1e-3, tau_max=1e3))
    if tau_star < 1e-3:
        assert scan.tau_star == 0.0  # stable on the whole grid
    else:
        assert scan.consistent
        assert scan.tau_star == pytest.approx(tau_star, rel=1e-4)


def test_paths_agree_and_discrete_time_matches_the_scalar_formula():
    game, tau_star, x, y = _at_equilibrium(0.5, 1.0, 3.0)
    for d in (Dense(game, x, y), MatrixFree(game, x, y)):
        rows = critical_tau("s", d, 4.0, known=tau_star)
        assert all(r.passed for r in rows)
        assert hurwitz("s", d, 4.0).passed and not hurwitz("s", d, 0.25).passed
        # J_τ = [[a, b], [τ, −τ]] with a = 0.5, b = −2: eigenvalues of I + ηJ in closed form
        tau, eta = 4.0, 0.1
        J = np.array([[0.5, -2.0], [tau, -tau]])
        rho = np.abs(np.linalg.eigvals(np.eye(2) + eta * J)).max()
        row = discrete_time("s", d, tau, eta)
        assert row.value == pytest.approx(rho) and row.passed
        assert not discrete_time("s", d, tau, 2.0).passed  # too large a learning rate


def test_tau_scan_config_validation():
    with pytest.raises(ConfigError, match="tau_max"):
        TauScanConfig(tau_min=1.0, tau_max=0.5)
    with pytest.raises(ConfigError, match="n_grid"):
        TauScanConfig(n_grid=1)
