"""Stackelberg PPO pieces: GAE, churn-aware trajectory breaks, the loss, masks, determinism."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.env import BatchedEnv
from mfsg.learn import actions
from mfsg.learn.mappo import MLPConfig, MLPPlayer
from mfsg.learn.ppo import PPOConfig, StackelbergPPO, follower_continues, gae
from mfsg.learn.rollout import rollout


def _gae_loop(r, v, c, gamma, lam):
    """Textbook GAE, one trajectory at a time."""
    T = len(r)
    adv = [0.0] * T
    last = 0.0
    for t in reversed(range(T)):
        nv = v[t + 1] if t + 1 < T else 0.0
        delta = r[t] + gamma * nv * c[t] - v[t]
        last = delta + gamma * lam * c[t] * last
        adv[t] = last
    return adv


@given(st.lists(st.tuples(st.floats(-2, 2), st.floats(-2, 2), st.booleans()), min_size=1, max_size=12),
       st.floats(0.5, 1.0), st.floats(0.0, 1.0))
def test_gae_matches_textbook(rows, gamma, lam):
    r = torch.tensor([x[0] for x in rows])
    v = torch.tensor([x[1] for x in rows])
    c = torch.tensor([float(x[2]) for x in rows])
    c[-1] = 0.0
    adv, ret = gae(r, v, c, gamma, lam)
    ref = _gae_loop(r.tolist(), v.tolist(), c.tolist(), gamma, lam)
    assert torch.allclose(adv, torch.tensor(ref), atol=1e-5)
    assert torch.allclose(ret, adv + v)


def test_trajectory_breaks_at_departure_and_new_identity():
    active = torch.tensor([[[1, 1, 0, 1, 1]]], dtype=torch.bool)
    ue_id = torch.tensor([[[0, 0, -1, 5, 6]]])
    assert follower_continues(active, ue_id).tolist() == [[[1.0, 0.0, 0.0, 0.0, 0.0]]]


def test_follower_mask_enforces_validity():
    cfg = EnvConfig()
    mask = actions.follower_mask(cfg, torch.tensor([0, 3]))
    ucm, access = actions.follower_action(cfg, torch.arange(actions.n_follower_actions(cfg)))
    assert mask[0].tolist() == (access == 0).tolist()
    assert mask[1].all()
    assert (actions.follower_index(cfg, ucm, access) == torch.arange(len(ucm))).all()


def test_ppo_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="ppo.tau"):
        PPOConfig(tau=0.5)
    with pytest.raises(ConfigError, match="ppo.clip"):
        PPOConfig(clip=1.5)


def _players(cfg, seed=0):
    torch.manual_seed(seed)
    return MLPPlayer("leader", cfg, MLPConfig(4, 16)), MLPPlayer("follower", cfg, MLPConfig(4, 16))


def test_rollout_actions_are_valid_and_first_epoch_ratio_is_one():
    cfg = EnvConfig(churn=ChurnConfig(kind="markov", n_min=1, n_max=4, p_join=0.3, p_leave=0.2), horizon=8)
    leader, follower = _players(cfg)
    ro = rollout(BatchedEnv(cfg, 16, seed=1), leader, follower, seed=1)  # the env raises on invalid actions
    assert ro.follower.mask.gather(1, ro.follower.action[:, None]).all()
    # before any update, the new policy equals the old one: log-ratio 0
    from mfsg.learn.players import masked_log_probs

    new = masked_log_probs(follower.scores(ro.follower.inputs), ro.follower.mask)
    assert torch.allclose(new, ro.follower.logp, atol=1e-6)


def test_no_comm_forces_zero_messages():
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=3), horizon=6)
    leader, follower = _players(cfg)
    env = BatchedEnv(cfg, 8, seed=0)
    ro = rollout(env, leader, follower, seed=0, no_comm=True)
    assert (ro.leader.action == 0).all()
    assert (actions.follower_action(cfg, ro.follower.action)[0] == 0).all()
    assert int(env.c.ucm_nonzero.sum()) == 0 and int(env.c.dcm_nonzero.sum()) == 0


def test_update_is_deterministic_and_changes_both_players():
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=3), horizon=6)
    results = []
    for _ in range(2):
        leader, follower = _players(cfg)
        before = [p.clone() for p in list(leader.parameters()) + list(follower.parameters())]
        ppo = StackelbergPPO(leader, follower, PPOConfig(epochs=2, minibatches=2, follower_updates=2), 0.99)
        ro = rollout(BatchedEnv(cfg, 8, seed=3), leader, follower, seed=3)
        ppo.update(ro, torch.Generator().manual_seed(0))
        after = [p.detach().clone() for p in list(leader.parameters()) + list(follower.parameters())]
        assert any(not torch.equal(a, b) for a, b in zip(before[:4], after[:4]))
        assert any(not torch.equal(a, b) for a, b in zip(before[-4:], after[-4:]))
        results.append(after)
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_follower_learning_rate_is_tau_times_leader():
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=2), horizon=4)
    ppo = StackelbergPPO(*_players(cfg), PPOConfig(lr_leader=2e-3, tau=3.0), 0.99)
    assert ppo.opt_follower.param_groups[0]["lr"] == pytest.approx(3.0 * ppo.opt_leader.param_groups[0]["lr"])


def test_value_warmup_trains_the_critics_only():
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=3), horizon=6)
    leader, follower = _players(cfg)
    actors = [p.clone() for p in list(leader.actor.parameters()) + list(follower.actor.parameters())]
    critics = [p.clone() for p in list(leader.critic.parameters()) + list(follower.critic.parameters())]
    ppo = StackelbergPPO(leader, follower, PPOConfig(epochs=2, minibatches=2, value_warmup=1), 0.99)
    stats = ppo.update(rollout(BatchedEnv(cfg, 8, seed=3), leader, follower, seed=3), torch.Generator().manual_seed(0),
                       policy=False)
    assert set(stats) == {"follower/v_loss", "leader/v_loss"}
    after_a = list(leader.actor.parameters()) + list(follower.actor.parameters())
    after_c = list(leader.critic.parameters()) + list(follower.critic.parameters())
    assert all(torch.equal(a, b) for a, b in zip(actors, after_a))
    assert any(not torch.equal(a, b) for a, b in zip(critics, after_c))
    with pytest.raises(ConfigError, match="ppo.value_warmup"):
        PPOConfig(value_warmup=-1)


def test_warmup_value_loss_is_unclipped():
    from mfsg.learn.ppo import value_loss

    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=2), horizon=4)
    leader, _ = _players(cfg)
    x = {"x": torch.randn(5, leader.critic[0].in_features)}
    ret, old = torch.full((5,), 50.0), torch.zeros(5)
    with torch.no_grad():
        v = leader.value(x)
    plain = value_loss(leader, x, ret, old, PPOConfig(vf_clip=0.2), clip=False)
    clipped = value_loss(leader, x, ret, old, PPOConfig(vf_clip=0.2))
    assert torch.allclose(plain, 0.5 * ((v - ret) ** 2).mean())
    assert clipped >= plain


def test_anchor_needs_a_reference_and_pulls_towards_it():
    """``anchor_coef`` adds β_ref · KL(π_ref ‖ π): zero while the players equal their reference, and the
    update moves the players less far from the reference than the same update without the anchor."""
    from mfsg.learn.players import masked_log_probs

    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=3), horizon=6)
    with pytest.raises(ConfigError, match="ppo.anchor_coef"):
        PPOConfig(anchor_coef=-1.0)
    drift = {}
    for coef in (0.0, 50.0):
        leader, follower = _players(cfg)
        ppo = StackelbergPPO(leader, follower, PPOConfig(lr_leader=3e-2, epochs=4, minibatches=2, anchor_coef=coef), 0.99)
        ro = rollout(BatchedEnv(cfg, 8, seed=3), leader, follower, seed=3)
        if coef:
            with pytest.raises(RuntimeError, match="set_reference"):
                ppo.update(ro, torch.Generator().manual_seed(0))
            ppo.set_reference(*_players(cfg))
            assert not any(p.requires_grad for p in ppo.reference[0].parameters())
        stats = ppo.update(ro, torch.Generator().manual_seed(0))
        if coef:
            assert stats["leader/anchor_kl"] >= 0 and stats["follower/anchor_kl"] >= 0
        ref = _players(cfg)[1]
        with torch.no_grad():
            p_ref = masked_log_probs(ref.scores(ro.follower.inputs), ro.follower.mask)
            p_new = masked_log_probs(follower.scores(ro.follower.inputs), ro.follower.mask)
        drift[coef] = float((p_ref.exp() * (p_ref - p_new).masked_fill(p_ref.exp() == 0, 0)).sum(-1).mean())
    assert 0 < drift[50.0] < drift[0.0]


# --------------------------------------------------------------------------- per-UE leader credit
def _churn_env(E=6, seed=3):
    cfg = EnvConfig(churn=ChurnConfig(kind="markov", n_min=1, n_max=4, p_join=0.3, p_leave=0.2))
    return cfg, BatchedEnv(cfg, E, seed=seed)


def test_per_ue_leader_rewards_split_the_team_reward_and_add_the_fairness_term():
    cfg, env = _churn_env()
    leader = MLPPlayer("leader", cfg, MLPConfig(n_model_slots=4, hidden=8), value_per_ue=True)
    ro = rollout(env, leader, MLPPlayer("follower", cfg, MLPConfig(n_model_slots=4, hidden=8)), seed=1)
    assert ro.leader_value.shape == ro.follower_reward.shape  # one leader value per (episode, slot, TTI)
    per_ue = ro.leader_reward_ue
    assert (per_ue[~ro.active] == 0).all()
    T = ro.leader_reward.shape[1]
    torch.testing.assert_close(per_ue[..., : T - 1].sum(1), ro.leader_reward[:, : T - 1])
    # at the horizon every active UE's share carries beta_fair * J once; the leader's reward carries it once
    n_active = ro.active[..., -1].sum(1).double()
    several = n_active >= 2
    beta_j = (per_ue[..., -1].sum(1) - ro.leader_reward[:, -1]).double()[several] / (n_active[several] - 1)
    assert several.any()
    assert ((beta_j > 0) & (beta_j <= cfg.utility.beta_fair + 1e-6)).all()


def test_per_ue_credit_is_the_gae_of_each_ues_own_share():
    cfg, env = _churn_env()
    mlp = MLPConfig(n_model_slots=4, hidden=8)
    leader, follower = MLPPlayer("leader", cfg, mlp, value_per_ue=True), MLPPlayer("follower", cfg, mlp)
    ro = rollout(env, leader, follower, seed=1)
    ppo_cfg = PPOConfig(leader_credit="per_ue", epochs=1, minibatches=1, lr_leader=0.0)
    adv, _ = gae(ro.leader_reward_ue, ro.leader_value, follower_continues(ro.active, ro.ue_id), 0.99, ppo_cfg.gae_lambda)
    L = ro.leader
    for k in range(0, len(L.action), 7):  # a decision's advantage is its own UE's, not the TTI's
        e, s, t = int(L.e[k]), int(L.s[k]), int(L.t[k])
        ref = _gae_loop(ro.leader_reward_ue[e, s].tolist(), ro.leader_value[e, s].tolist(),
                        follower_continues(ro.active, ro.ue_id)[e, s].tolist(), 0.99, ppo_cfg.gae_lambda)
        assert abs(float(adv[e, s, t]) - ref[t]) < 1e-4
    stats = StackelbergPPO(leader, follower, ppo_cfg, 0.99).update(ro, torch.Generator().manual_seed(0))
    assert stats["leader/v_loss"] > 0


def test_leader_credit_must_match_the_leaders_critic():
    cfg, env = _churn_env()
    mlp = MLPConfig(n_model_slots=4, hidden=8)
    leader, follower = MLPPlayer("leader", cfg, mlp), MLPPlayer("follower", cfg, mlp)
    ro = rollout(env, leader, follower, seed=1)
    with pytest.raises(ConfigError, match="ppo.leader_credit='per_ue' needs a leader critic with per-UE values"):
        StackelbergPPO(leader, follower, PPOConfig(leader_credit="per_ue"), 0.99).update(ro, torch.Generator())
    with pytest.raises(ConfigError, match="ppo.leader_credit='bogus' is invalid: allowed one of shared, per_ue"):
        PPOConfig(leader_credit="bogus")
