import numpy as np
import pytest
import torch

from mfsg.config import ConfigError
from mfsg.game.base import ChurnDist
from mfsg.game.closed_form import random_quadratic
from mfsg.verify.derivatives import Dense, MatrixFree, SolveError, SolverOptions, derivatives, operator_to_dense
from mfsg.verify.solvers import solve_follower


@pytest.fixture(scope="module")
def medium():
    """A 200-parameter non-quadratic game at its follower response."""
    game = random_quadratic(100, 100, ChurnDist.uniform(2, 4), seed=11, quartic=0.2)
    x, y = game.initial_point(0)
    return game, x, solve_follower(game, x, y).y


def test_dense_and_matrix_free_agree_on_a_medium_game(medium):
    game, x, y = medium
    d, m = Dense(game, x, y), MatrixFree(game, x, y)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(game.dim_x, generator=g, dtype=torch.float64)
    v = torch.randn(game.dim_y, generator=g, dtype=torch.float64)
    z = torch.cat([u, v]).numpy()
    assert torch.allclose(d.leader_total_gradient(), m.leader_total_gradient(), atol=1e-10)
    assert torch.allclose(d.response_apply(u), m.response_apply(u), atol=1e-9)
    assert np.allclose(d.jacobian_tau(4.0) @ z, m.jacobian_tau(4.0).matvec(z), atol=1e-9)
    assert np.allclose(d.schur() @ u.numpy(), m.schur().matvec(u.numpy()), atol=1e-9)
    for which in ("eig_follower", "eig_jacobian_tau"):
        args = (4.0, 6) if which == "eig_jacobian_tau" else (6,)
        a, b = getattr(d, which)(*args), getattr(m, which)(*args)
        assert np.allclose(np.sort_complex(a), np.sort_complex(b), atol=1e-7)
    assert d.spectral_radius(4.0, 0.05) == pytest.approx(m.spectral_radius(4.0, 0.05), abs=1e-7)


@pytest.mark.parametrize("kind", ["stackelberg", "gradient"])
def test_lagrangian_blocks_equal_autodiff_through_the_solve(kind):
    game = random_quadratic(3, 4, ChurnDist.uniform(2, 4), seed=1, quartic=0.3)
    x, y = game.initial_point(0)
    d = Dense(game, 5 * x, 5 * y, update_rule=kind)
    A, B = d._blocks()
    A2, B2 = d.blocks_by_autodiff()
    assert torch.allclose(A, A2, atol=1e-12) and torch.allclose(B, B2, atol=1e-12)
    # and the matrix-free products agree with both
    m = MatrixFree(game, 5 * x, 5 * y, update_rule=kind)
    J = operator_to_dense(m.jacobian_tau(2.0))
    assert np.allclose(J, d.jacobian_tau(2.0), atol=1e-10)


def test_gradient_update_blocks_are_leader_hessians():
    game = random_quadratic(2, 2, ChurnDist.fixed(2), seed=0)
    x, y = game.initial_point(0)
    d = Dense(game, x, y, update_rule="gradient")
    J = d.jacobian_tau(1.0)
    assert np.allclose(J[:2, :2], -game.p.R.numpy())  # ∂²J_L/∂x² of the quadratic game
    assert np.allclose(J[:2, 2:], game.p.S.numpy())


def test_bad_path_and_update_names():
    game = random_quadratic(1, 1, ChurnDist.fixed(1), seed=0)
    x, y = game.initial_point(0)
    with pytest.raises(ConfigError, match="path"):
        derivatives(game, x, y, path="sparse")
    with pytest.raises(ConfigError, match="update_rule"):
        derivatives(game, x, y, update_rule="newton")


def test_gmres_failure_is_reported():
    game = random_quadratic(30, 30, ChurnDist.fixed(2), seed=0)
    x, y = game.initial_point(0)
    m = MatrixFree(game, x, y, options=SolverOptions(gmres_rtol=1e-14, gmres_restart=2, gmres_maxiter=1))
    with pytest.raises(SolveError, match="gmres"):
        m.leader_total_gradient()


def test_leader_update_is_a_method_on_every_path():
    """``update_rule`` (a string) names the rule; ``leader_update()`` returns ĝ_L on both paths."""
    game = random_quadratic(2, 3, ChurnDist.uniform(2, 3), seed=1)
    x, y = game.initial_point(0)
    for rule in ("gradient", "stackelberg"):
        d, m = Dense(game, x, y, update_rule=rule), MatrixFree(game, x, y, update_rule=rule)
        assert d.update_rule == m.update_rule == rule
        assert torch.allclose(d.leader_update(), m.leader_update(), atol=1e-8)
