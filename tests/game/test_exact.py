import math

import numpy as np
import pytest
import torch

from mfsg.config import ChurnConfig, EnvConfig
from mfsg.env.reference import ReferenceEnv
from mfsg.game.base import ChurnDist
from mfsg.game.exact import ExactMacGame, monte_carlo_utilities


def _cfg(n=2, k=1, b=2, u=2, t=1, p=0.5):
    return EnvConfig(
        n_rbg=k, buffer=b, horizon=t, p_arrival=p, ucm_vocab=u, tbler=0.05, churn=ChurnConfig(kind="fixed", n=n)
    )


def _point(game, seed, scale=1.0):
    x, y = game.initial_point(seed)
    return 10 * scale * x, 10 * scale * y


def test_first_tti_matches_reference_env_samples():
    """Next-state distribution and expected rewards of the first TTI vs ReferenceEnv driven by the same policies."""
    game = ExactMacGame(_cfg(), ChurnDist.fixed(2))
    x, y = _point(game, 0)
    dist, e_leader, e_follower = game.first_tti(x, y, 2)
    assert sum(dist.values()) == pytest.approx(1.0)
    m = 4000
    env, gen = ReferenceEnv(game.config_for(2)), torch.Generator().manual_seed(0)
    counts, r_l, r_f = {}, [], []
    for s in range(m):
        env.reset(seed=s)
        obs_b = env.begin_tti()
        obs_u = env.deliver(game.policies.act(obs_b, x, gen)[0].tolist())
        ucm, acc = game.policies.respond(obs_u, y, gen)
        rew = env.end_tti(ucm[0].tolist(), acc[0].tolist())
        key = game.state_key(env)
        counts[key] = counts.get(key, 0) + 1
        r_l.append(rew.leader)
        r_f.append(rew.follower)
    assert set(counts) <= set(dist)  # every sampled state was enumerated
    for key, p in dist.items():
        bound = 5 * math.sqrt(p * (1 - p) / m) + 2 / m
        assert abs(counts.get(key, 0) / m - p) <= bound, key
    r_l, r_f = np.array(r_l), np.array(r_f)
    assert abs(r_l.mean() - e_leader) <= 5 * r_l.std() / math.sqrt(m)
    np.testing.assert_array_less(np.abs(r_f.mean(0) - e_follower.numpy()), 5 * r_f.std(0) / math.sqrt(m) + 1e-12)


def test_exact_utilities_match_batched_env_monte_carlo():
    game = ExactMacGame(_cfg(n=1, b=1, u=1, t=3), ChurnDist.fixed(1))
    x, y = _point(game, 1)
    mc = monte_carlo_utilities(game, x, y, 1, episodes=40_000, seed=0)
    assert abs(float(game.leader_utility(x, y, 1)) - mc["leader"]) <= 4 * mc["leader_se"]
    assert abs(float(game.follower_utility(x, y, y, 1)) - mc["follower"]) <= 4 * mc["follower_se"]


@pytest.mark.slow
def test_exact_utilities_match_monte_carlo_two_ues_two_ttis():
    game = ExactMacGame(_cfg(n=2, b=1, u=1, t=2), ChurnDist.fixed(2))
    x, y = _point(game, 2)
    mc = monte_carlo_utilities(game, x, y, 2, episodes=100_000, seed=1)
    assert abs(float(game.leader_utility(x, y, 2)) - mc["leader"]) <= 4 * mc["leader_se"]
    assert abs(float(game.follower_utility(x, y, y, 2)) - mc["follower"]) <= 4 * mc["follower_se"]


def test_monte_carlo_is_deterministic():
    game = ExactMacGame(_cfg(n=1, b=1, u=1, t=2), ChurnDist.fixed(1))
    x, y = _point(game, 3)
    assert monte_carlo_utilities(game, x, y, 1, 500, seed=4) == monte_carlo_utilities(game, x, y, 1, 500, seed=4)


def test_exchangeable_followers_have_equal_deviation_utilities():
    game = ExactMacGame(_cfg(), ChurnDist.fixed(2))
    x, y = _point(game, 5)
    _, z = _point(game, 6)
    j = game.follower_utilities(x, y, z, 2)
    assert float(j[0]) == pytest.approx(float(j[1]), abs=1e-12)
    assert float(game.follower_utility(x, y, y, 2)) == pytest.approx(float(game.follower_utilities(x, y, y, 2).mean()))


def test_parameters_cover_reached_rows_only_and_are_identifiable():
    game = ExactMacGame(_cfg(u=1, b=1), ChurnDist.fixed(2))
    rows = game.policies.follower
    for r, valid in enumerate(rows.valid):
        assert int((rows.free_rows == r).sum()) == len(valid) - 1  # first valid logit fixed at 0
    lp = rows.log_probs(torch.zeros(rows.dim, dtype=torch.float64))
    assert torch.allclose(lp.exp().sum(1), torch.ones(len(rows.valid), dtype=torch.float64))
