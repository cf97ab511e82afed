"""Stochastic policy-game estimates (model §8) against exact values of tabular games."""

import numpy as np
import pytest
import torch
from torch.func import jacfwd

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.game.base import ChurnDist, Regularization
from mfsg.game.exact import ExactMacGame
from mfsg.game.params import default_subset, parse_subset
from mfsg.game.policy_game import PolicyGame, PolicyGameConfig, loo_baseline, returns_to_go
from mfsg.game.statistics import SeedEstimate, critical_value, z_max
from mfsg.game.tabular_player import TabularPlayer
from mfsg.learn.mappo import MLPConfig, MLPPlayer
from mfsg.learn.ppo import follower_continues

CFG = PolicyGameConfig(episodes=2000, repeats=8)
NO_REG = Regularization()
QUANTITIES = ("J_L", "J_F", "grad_x_L", "grad_y_L", "g_F", "g_welfare")


def _cfg(n=2, k=1, b=2, u=2, t=1):
    return EnvConfig(n_rbg=k, buffer=b, horizon=t, p_arrival=0.5, ucm_vocab=u, tbler=0.05,
                     churn=ChurnConfig(kind="fixed", n=n))


@pytest.fixture(scope="module")
def two_followers():
    """N = 2, T = 1: the followers collide, so g_F and the welfare gradient differ."""
    return ExactMacGame(_cfg(), ChurnDist.fixed(2))


@pytest.fixture(scope="module")
def three_ttis():
    """N = 1, T = 3: returns-to-go over several TTIs."""
    return ExactMacGame(_cfg(n=1, b=1, u=1, t=3), ChurnDist.fixed(1))


def _policy_game(game, x, y, cfg=CFG, reg=NO_REG):
    n = game.churn.support[0]
    return PolicyGame(TabularPlayer("leader", game, x), TabularPlayer("follower", game, y), game.config_for(n),
                      leader_subset=("theta",), follower_subset=("theta",), cfg=cfg, reg=reg)


def _exact(game, x, y):
    return {"J_L": game.expected_leader(x, y), "J_F": game.follower_welfare(x, y),
            "grad_x_L": game.leader_gradient_x(x, y), "grad_y_L": game.leader_gradient_y(x, y),
            "g_F": game.follower_gradient(x, y), "g_welfare": game.follower_welfare_gradient(x, y)}


def _point(game, seed, scale=5.0):
    x, y = game.initial_point(seed)
    return scale * x, scale * y


@pytest.mark.parametrize("which", ["two_followers", "three_ttis"])
def test_likelihood_ratio_estimates_match_exact(which, request):
    game = request.getfixturevalue(which)
    x, y = _point(game, 0)
    est = _policy_game(game, x, y).estimate()
    exact = _exact(game, x, y)
    crit = critical_value(CFG.confidence, CFG.repeats - 1, sum(v.numel() for v in exact.values()))
    for q, v in exact.items():
        e = getattr(est, q)
        assert z_max(e.mean - v.numpy(), e.se) <= crit, q
        assert np.all(e.se > 0), q  # genuinely stochastic estimates


def test_regularization_terms_match_the_game(two_followers):
    reg = Regularization(0.3, 0.2)
    game = ExactMacGame(_cfg(), ChurnDist.fixed(2), reg=reg)
    x, y = _point(game, 2)
    est = _policy_game(game, x, y, reg=reg).estimate()
    exact = _exact(game, x, y)
    crit = critical_value(CFG.confidence, CFG.repeats - 1, sum(v.numel() for v in exact.values()))
    assert max(z_max(getattr(est, q).mean - v.numpy(), getattr(est, q).se) for q, v in exact.items()) <= crit


def test_individual_and_welfare_gradients_differ(two_followers):
    x, y = _point(two_followers, 2)
    est = _policy_game(two_followers, x, y).estimate()
    diff = SeedEstimate.of(est.g_F.samples - est.g_welfare.samples)
    exact_gap = (two_followers.follower_gradient(x, y) - two_followers.follower_welfare_gradient(x, y)).norm()
    assert float(exact_gap) > 0.01
    assert z_max(diff.mean, diff.se) > critical_value(CFG.confidence, CFG.repeats - 1, len(y))


def test_single_follower_gradients_coincide(three_ttis):
    x, y = _point(three_ttis, 1)
    est = _policy_game(three_ttis, x, y, PolicyGameConfig(episodes=200, repeats=2)).estimate()
    np.testing.assert_allclose(est.g_F.samples, est.g_welfare.samples, atol=1e-12)


def test_fd_hessian_of_exact_gradient_matches_autograd(two_followers):
    """The central-difference scheme itself, on the exact (noise-free) gradient."""
    x, y = _point(two_followers, 3)
    g = lambda yy: two_followers.follower_gradient(x, yy)  # noqa: E731
    H = jacfwd(g)(y)
    v = torch.randn(len(y), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = 1e-4
    fd = (g(y + eps * v) - g(y - eps * v)) / (2 * eps)
    assert torch.allclose(fd, H @ v, atol=1e-7)


def test_stochastic_hvp_matches_exact_within_error_bars(two_followers):
    x, y = _point(two_followers, 3)
    pg = _policy_game(two_followers, x, y)
    v = torch.randn(len(y), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hv = pg.follower_hvp(v.numpy())
    exact = jacfwd(lambda yy: two_followers.follower_gradient(x, yy))(y) @ v
    assert z_max(hv.mean - exact.numpy(), hv.se) <= critical_value(CFG.confidence, CFG.repeats - 1, len(y))
    op, norm = pg.follower_hessian_operator(), float(v.norm())
    unit = pg.follower_hvp((v / norm).numpy()).mean
    np.testing.assert_allclose(op.matvec(v.numpy()), norm * unit, rtol=1e-10)
    np.testing.assert_allclose(op.matvec(2 * v.numpy()), 2 * norm * unit, rtol=1e-10)  # positively homogeneous


def test_seeded_estimates_are_deterministic_and_restore_parameters(two_followers):
    x, y = _point(two_followers, 4)
    cfg = PolicyGameConfig(episodes=300, repeats=3, seed=7)
    a, b = _policy_game(two_followers, x, y, cfg), _policy_game(two_followers, x, y, cfg)
    ea, eb = a.estimate(), b.estimate()
    for q in QUANTITIES:
        np.testing.assert_array_equal(getattr(ea, q).samples, getattr(eb, q).samples)
    a.blocks()
    assert torch.equal(a.point()[1], y)  # finite differences leave the players where they were
    other = _policy_game(two_followers, x, y, PolicyGameConfig(episodes=300, repeats=3, seed=8)).estimate()
    assert not np.array_equal(other.g_F.samples, ea.g_F.samples)


def test_relabeling_followers_does_not_change_estimates(two_followers):
    """Swap the UE slots of a rollout (reward, activity, identity and decisions): same estimates."""
    from mfsg.env import BatchedEnv
    from mfsg.learn.rollout import rollout

    x, y = _point(two_followers, 5)
    pg = _policy_game(two_followers, x, y)
    env = BatchedEnv(pg.env_cfg, 300, seed=1)
    ro = rollout(env, pg.leader, pg.follower, seed=1)
    base = pg._estimates(ro)
    perm = torch.tensor([1, 0])
    ro.follower_reward, ro.active, ro.ue_id = ro.follower_reward[:, perm], ro.active[:, perm], ro.ue_id[:, perm]
    ro.follower.s = perm[ro.follower.s]
    ro.leader.s = perm[ro.leader.s]
    swapped = pg._estimates(ro)
    for q in QUANTITIES:
        np.testing.assert_allclose(swapped[q], base[q], rtol=1e-10, atol=1e-12)


def test_returns_to_go_break_at_churn():
    r = torch.tensor([[[1.0, 2.0, 4.0]]], dtype=torch.float64)
    active = torch.tensor([[[True, True, True]]])
    ue = torch.tensor([[[5, 5, 9]]])  # a new UE takes the slot at t = 2
    cont = follower_continues(active, ue).double()
    np.testing.assert_allclose(returns_to_go(r, cont, 0.5)[0, 0].numpy(), [2.0, 2.0, 4.0])


def test_leave_one_out_baseline_excludes_own_episode():
    G = torch.tensor([[1.0], [3.0], [8.0]], dtype=torch.float64)
    b = loo_baseline(G, torch.ones_like(G))
    np.testing.assert_allclose(b[:, 0].numpy(), [5.5, 4.5, 2.0])


def test_subset_specs_and_config_errors():
    follower = MLPPlayer("follower", EnvConfig(n_rbg=1), MLPConfig(hidden=4))
    slices = parse_subset(follower, ["actor.4.bias[1:3]", "actor.4."])
    assert [(s.name, s.size) for s in slices] == [("actor.4.bias", 2), ("actor.4.weight", 4 * 6), ("actor.4.bias", 6)]
    with pytest.raises(ConfigError, match="nope"):
        parse_subset(follower, ["nope"])
    with pytest.raises(ConfigError, match="non-empty"):
        parse_subset(follower, ["actor.4.bias[2:2]"])
    with pytest.raises(ConfigError, match="policy_game.episodes"):
        PolicyGameConfig(episodes=1)
    with pytest.raises(ConfigError, match="policy_game.confidence"):
        PolicyGameConfig(confidence=1.0)


def test_default_subset_excludes_critic_and_fixes_a_logit_bias_entry():
    """MLP actor: its last bias adds to the logits, so entry 0 is fixed; a critic is never chosen."""
    mlp = MLPPlayer("leader", _cfg(), MLPConfig())
    (name,) = default_subset(mlp)
    assert name.startswith("actor.") and name.endswith("bias[1:]")

    class Wrapped(torch.nn.Module):  # critic nested below the top level, as in the language players
        def __init__(self):
            super().__init__()
            self.policy = torch.nn.ModuleDict({"norm": torch.nn.LayerNorm(3), "critic": torch.nn.Linear(3, 1)})

    assert default_subset(Wrapped()) == ("policy.norm.bias",)
