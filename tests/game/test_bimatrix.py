import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfsg.config import ConfigError
from mfsg.game.bimatrix import SoftBimatrixGame, nash_support_enumeration, random_bimatrix, stackelberg_lp
from mfsg.verify.derivatives import Dense
from mfsg.verify.solvers import solve_stackelberg


def test_commitment_example():
    """Row 0 strictly dominates (Nash value 2); committing to (1/2, 1/2) makes the follower play
    column 1 (ties in the leader's favour) and earns 3.5 (von Stengel & Zamir's example)."""
    A = np.array([[2.0, 4.0], [1.0, 3.0]])
    B = np.array([[1.0, 0.0], [0.0, 1.0]])
    sse = stackelberg_lp(A, B)
    assert sse.follower == 1
    assert sse.leader == pytest.approx([0.5, 0.5], abs=1e-9)
    assert sse.leader_value == pytest.approx(3.5)
    eqs = nash_support_enumeration(A, B)
    assert len(eqs) == 1 and float(eqs[0][0] @ A @ eqs[0][1]) == pytest.approx(2.0)


@given(seed=st.integers(0, 100_000), m=st.integers(2, 4), n=st.integers(2, 4))
def test_sse_value_at_least_every_nash_value(seed, m, n):
    A, B = random_bimatrix(m, n, seed)
    sse = stackelberg_lp(A, B)
    eqs = nash_support_enumeration(A, B)
    assert len(eqs) % 2 == 1  # nondegenerate games have an odd number of equilibria
    for x, y in eqs:
        assert x.sum() == pytest.approx(1) and y.sum() == pytest.approx(1)
        assert (A @ y).max() <= float(x @ A @ y) + 1e-9  # x is a best response
        assert (x @ B).max() <= float(x @ B @ y) + 1e-9
        assert sse.leader_value >= float(x @ A @ y) - 1e-9
    # the SSE follower strategy is a best response to the commitment
    assert (sse.leader @ B).max() <= sse.follower_value + 1e-9


def test_shape_validation():
    with pytest.raises(ConfigError, match="shapes"):
        stackelberg_lp(np.zeros((2, 2)), np.zeros((2, 3)))


def test_soft_bimatrix_stackelberg_is_a_dse():
    A, B = random_bimatrix(3, 3, seed=3)
    game = SoftBimatrixGame(A, B, entropy_leader=1.0, entropy_follower=1.0)
    sol = solve_stackelberg(game, *game.initial_point(0))
    assert sol.converged
    d = Dense(game, sol.x, sol.y)
    assert d.eig_follower(1).real.max() < 0 and d.eig_schur(1).real.max() < 0
