"""Check rows of the estimator path (equivalence tests) and the three verdicts of the report."""

import math

import numpy as np
import torch

from mfsg.config import ChurnConfig, EnvConfig
from mfsg.game.policy_game import PolicyGame, PolicyGameConfig
from mfsg.learn.mappo import MLPConfig, MLPPlayer
from mfsg.verify.policy_checks import policy_checks
from mfsg.verify.report import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_PASS,
    VERDICTS,
    check,
    episodes_to_decide,
    equivalence_check,
    exit_code,
    interval_check,
    ratio_check,
)


def test_mlp_players_subset_and_checks_run():
    env_cfg = EnvConfig(n_rbg=1, buffer=2, horizon=4, churn=ChurnConfig(kind="per_episode", n_min=2, n_max=3))
    torch.manual_seed(0)
    mlp = MLPConfig(n_model_slots=3, hidden=8)
    leader, follower = MLPPlayer("leader", env_cfg, mlp), MLPPlayer("follower", env_cfg, mlp)
    before = [p.detach().clone() for p in follower.parameters()]
    pg = PolicyGame(leader, follower, env_cfg, cfg=PolicyGameConfig(episodes=32, repeats=3))
    assert (pg.dim_x, pg.dim_y) == (2, 5)  # last-layer biases without their first entry
    rows = policy_checks(pg, 4.0, update_rule="stackelberg")
    assert [r.check for r in rows] == ["follower_stationarity", "leader_stationarity", "follower_soc", "hurwitz",
                                       "g_F_vs_welfare_gradient"]
    assert all(r.verdict in VERDICTS for r in rows)
    assert all(np.isfinite(r.value) for r in rows if not r.inconclusive)
    assert all(torch.equal(a, b) for a, b in zip(before, follower.parameters(), strict=True))


def test_zero_over_zero_is_inconclusive_never_a_pass():
    r = ratio_check("g", "ift", 0.0, 0.0, 0.5)
    assert r.verdict == "inconclusive" and "0/0" in r.detail
    assert ratio_check("g", "ift", 0.1, 1.0, 0.5).passed and ratio_check("g", "ift", 2.0, 1.0, 0.5).failed
    assert check("g", "x", float("nan"), 1.0).inconclusive


def test_equivalence_test_passes_only_inside_and_fails_only_outside():
    inside = equivalence_check("g", "s", [0.01, -0.02], [0.01, 0.01], 0.1, episodes=100)
    outside = equivalence_check("g", "s", [0.5, 0.0], [0.1, 0.01], 0.1, episodes=100)
    wide = equivalence_check("g", "s", [0.0], [1.0], 0.1, episodes=100)  # absence of evidence
    assert (inside.verdict, outside.verdict, wide.verdict) == ("pass", "fail", "inconclusive")
    need = wide.extra["episodes_to_decide"]
    assert math.isclose(need, 100 * (1.0 / 0.1) ** 2)
    assert equivalence_check("g", "s", [0.0], [need ** -0.5 * 10 * 0.1 * 0.999 / 10 * 10], 0.1,
                             episodes=int(need)).verdict in VERDICTS
    assert episodes_to_decide([0.1], [0.05], 0.1, 10) == math.inf  # a mean on the boundary never decides


def test_interval_check_and_exit_codes():
    assert interval_check("g", "h", -1.0, 0.5, 0.0, "<").passed
    assert interval_check("g", "h", 1.0, 0.5, 0.0, "<").failed
    assert interval_check("g", "h", -0.1, 0.5, 0.0, "<").inconclusive
    p, f, i = check("g", "a", 0.0, 1.0), check("g", "b", 2.0, 1.0), ratio_check("g", "c", 0.0, 0.0, 1.0)
    assert exit_code([p]) == EXIT_PASS and exit_code([p, f, i]) == EXIT_FAIL and exit_code([p, i]) == EXIT_INCONCLUSIVE
    assert (EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE) == (0, 1, 3)
