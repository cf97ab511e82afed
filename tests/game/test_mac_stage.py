import pytest
import sympy as sp
import torch
from torch.func import hessian

from mfsg.config import ChurnConfig, ConfigError, EnvConfig, UtilityConfig
from mfsg.game.base import ChurnDist
from mfsg.game.exact import ExactMacGame
from mfsg.game.mac_stage import MacStageGame


def _cfg(k=2, **kw):
    return EnvConfig(
        n_rbg=k, buffer=2, horizon=1, p_arrival=0.6, ucm_vocab=1, churn=ChurnConfig(kind="fixed", n=2), **kw
    )


def _point(game, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda d: torch.randn(d, generator=g, dtype=torch.float64)  # noqa: E731
    return r(game.dim_x), r(game.dim_y), r(game.dim_y)


@pytest.mark.parametrize("k, n", [(1, 2), (2, 3)])
def test_sympy_derivatives_equal_autograd(k, n):
    game = MacStageGame(_cfg(k), ChurnDist.fixed(n))
    x, y, z = _point(game, k + n)
    fl, ff = game.sympy_derivatives(n)
    gl = torch.func.grad(lambda xx, yy: game.leader_utility(xx, yy, n), argnums=(0, 1))(x, y)
    gf = torch.func.grad(lambda xx, yy: game.follower_utility(xx, yy, z, n), argnums=(0, 1))(x, y)
    sym_l, sym_f = fl(*x.tolist(), *y.tolist()), ff(*x.tolist(), *y.tolist(), *z.tolist())
    assert sym_l[0] == pytest.approx(float(game.leader_utility(x, y, n)), abs=1e-12)
    assert sym_f[0] == pytest.approx(float(game.follower_utility(x, y, z, n)), abs=1e-12)
    assert sym_l[1:] == pytest.approx(torch.cat(gl).tolist(), abs=1e-12)
    assert sym_f[1:] == pytest.approx(torch.cat(gf).tolist(), abs=1e-12)


def test_sympy_second_derivative_equals_autograd():
    game = MacStageGame(_cfg(1), ChurnDist.fixed(2))
    x, y, z = _point(game, 0)
    _, ff = game.sympy_utilities(2)
    xs, ys, zs = game.symbols()
    subs = dict(zip((*xs, *ys, *zs), x.tolist() + y.tolist() + z.tolist(), strict=True))
    h = hessian(lambda yy: game.follower_utility(x, yy, z, 2))(y)
    assert float(sp.diff(ff, ys[0], ys[1]).evalf(subs=subs)) == pytest.approx(float(h[0, 1]), abs=1e-10)


def test_action_probabilities_form_a_distribution():
    game = MacStageGame(_cfg(2), ChurnDist.fixed(2))
    x, y, _ = _point(game, 0)
    q = game.action_probs_torch(x, y)
    assert float(q.sum()) == pytest.approx(1.0) and bool((q > 0).all())
    assert float(q[0]) >= 1 - game.p_a  # an empty UE idles


def test_single_ue_closed_form():
    """One UE, K = 1: E r_n = ϱ q_tx (1 − tbler) − ϱ q_del − κ (p_a − q_del)/B − c q_tx."""
    cfg = _cfg(1, utility=UtilityConfig(beta_fair=0.0))
    game = MacStageGame(cfg, ChurnDist.fixed(1))
    x, y, _ = _point(game, 1)
    q = game.action_probs_torch(x, y)
    u = cfg.utility
    expected = u.reward_scale * (q[1] * (1 - cfg.tbler) - q[2]) - u.kappa_buf * (0.6 - q[2]) / 2 - u.c_tx * q[1]
    assert float(game.follower_utility(x, y, y, 1)) == pytest.approx(float(expected))


@pytest.mark.parametrize("k", [1, 2])
def test_stage_game_equals_exact_enumeration_at_t1(k):
    """The sympy model and the ReferenceEnv enumeration agree for one TTI (same policies)."""
    cfg = _cfg(k)
    stage, exact = MacStageGame(cfg, ChurnDist.fixed(2)), ExactMacGame(cfg, ChurnDist.fixed(2))
    x, y, z = _point(stage, 7)
    ye, ze = stage.exact_follower_params(exact, y), stage.exact_follower_params(exact, z)
    assert float(exact.leader_utility(x, ye, 2)) == pytest.approx(float(stage.leader_utility(x, y, 2)), abs=1e-12)
    assert float(exact.follower_utility(x, ye, ze, 2)) == pytest.approx(
        float(stage.follower_utility(x, y, z, 2)), abs=1e-12
    )


def test_unequal_arrival_probabilities_are_refused():
    cfg = EnvConfig(
        n_rbg=1, buffer=1, horizon=1, p_arrival=(0.2, 0.4), ucm_vocab=1, churn=ChurnConfig(kind="fixed", n=2)
    )
    with pytest.raises(ConfigError, match="p_arrival"):
        MacStageGame(cfg, ChurnDist.fixed(2))
