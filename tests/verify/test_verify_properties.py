"""Hypothesis properties of the checks (brief item 6): relabeling followers, continuity of spectra, Schur identity."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mfsg.config import ChurnConfig, EnvConfig
from mfsg.game.base import ChurnDist
from mfsg.game.closed_form import random_quadratic
from mfsg.game.exact import ExactMacGame
from mfsg.verify.derivatives import Dense
from mfsg.verify.equilibrium import check_equilibrium

_P_ARRIVAL = (0.2, 0.5, 0.8)
_PERMS = list(itertools.permutations(range(3)))


@pytest.fixture(scope="module")
def heterogeneous_games():
    """One exact game per relabeling of three followers with different arrival rates (T = 1)."""
    games = {}
    for perm in _PERMS:
        cfg = EnvConfig(
            n_rbg=1,
            buffer=1,
            horizon=1,
            ucm_vocab=1,
            p_arrival=tuple(_P_ARRIVAL[i] for i in perm),
            churn=ChurnConfig(kind="fixed", n=3),
        )
        games[perm] = ExactMacGame(cfg, ChurnDist.fixed(3))
    return games


@settings(max_examples=10)
@given(perm=st.sampled_from(_PERMS[1:]), seed=st.integers(0, 1000))
def test_checks_are_invariant_to_relabeling_followers(heterogeneous_games, perm, seed):
    base, other = heterogeneous_games[_PERMS[0]], heterogeneous_games[perm]
    assert (base.dim_x, base.dim_y) == (other.dim_x, other.dim_y)
    x, y = base.initial_point(seed)
    x, y = 5 * x, 5 * y
    assert float(other.leader_utility(x, y, 3)) == pytest.approx(float(base.leader_utility(x, y, 3)), abs=1e-12)
    # per-follower utilities are heterogeneous and move with the labels; their average does not
    per_base, per_other = base.follower_utilities(x, y, y, 3), other.follower_utilities(x, y, y, 3)
    assert float(per_base.max() - per_base.min()) > 1e-6
    assert torch.allclose(per_other, per_base[list(perm)], atol=1e-12)
    assert torch.allclose(other.follower_gradient(x, y), base.follower_gradient(x, y), atol=1e-12)
    rows_a = check_equilibrium("a", base, x, y, fd_checks=False, tau_scan=False)
    rows_b = check_equilibrium("b", other, x, y, fd_checks=False, tau_scan=False)
    assert [r.check for r in rows_a] == [r.check for r in rows_b]
    assert [r.value for r in rows_b] == pytest.approx([r.value for r in rows_a], rel=1e-9, abs=1e-9)
    assert [r.verdict for r in rows_b] == [r.verdict for r in rows_a]


@given(seed=st.integers(0, 10_000), tau=st.floats(0.1, 20.0), direction=st.integers(0, 10_000))
def test_spectra_are_continuous_under_small_perturbations(seed, tau, direction):
    game = random_quadratic(3, 3, ChurnDist.uniform(1, 3), seed=seed, quartic=0.2)
    x, y = game.initial_point(seed)
    g = torch.Generator().manual_seed(direction)
    eps = 1e-7
    dx = torch.randn(3, generator=g, dtype=torch.float64)
    dy = torch.randn(3, generator=g, dtype=torch.float64)
    a = np.linalg.eigvals(Dense(game, x, y).jacobian_tau(tau))
    b = np.linalg.eigvals(Dense(game, x + eps * dx, y + eps * dy).jacobian_tau(tau))
    # every perturbed eigenvalue is near an original one (Hölder continuity; a generous bound)
    assert max(np.abs(a - e).min() for e in b) < 1e-3
    assert abs(a.real.max() - b.real.max()) < 1e-3


@given(seed=st.integers(0, 10_000), tau=st.floats(0.1, 20.0))
def test_schur_determinant_identity(seed, tau):
    """det J_τ = det D · det(A − B D⁻¹ C) with D = τ H_F, C = τ C_F."""
    game = random_quadratic(2, 3, ChurnDist.uniform(2, 4), seed=seed, quartic=0.3)
    x, y = game.initial_point(seed)
    d = Dense(game, x, y)
    J = d.jacobian_tau(tau)
    D = J[2:, 2:]
    det_j = np.linalg.det(J)
    det_s = np.linalg.det(D) * np.linalg.det(d.schur())
    assert det_j == pytest.approx(det_s, rel=1e-8, abs=1e-12)
