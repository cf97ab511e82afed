"""The per-UE leader credit with language players: the leader's critic values each UE slot."""

import dataclasses

import torch

from mfsg.env import BatchedEnv
from mfsg.learn.config import load_train_config
from mfsg.learn.ppo import StackelbergPPO
from mfsg.learn.rollout import rollout
from mfsg.learn.train import make_players


def test_language_leader_with_per_ue_credit_values_every_active_slot_and_updates():
    cfg = load_train_config("experiments/configs/ci_language.toml")
    cfg = dataclasses.replace(cfg, ppo=dataclasses.replace(cfg.ppo, leader_credit="per_ue", epochs=1, minibatches=1,
                                                         anchor_coef=0.0))
    leader, follower = make_players(cfg)
    assert leader.value_per_ue and leader.policy.critic.per_ue
    env = BatchedEnv(cfg.env, 3, seed=0)
    ro = rollout(env, leader, follower, seed=0)
    assert ro.leader_value.shape == ro.follower_value.shape
    assert (ro.leader_value[~ro.active] == 0).all() and (ro.leader_value[ro.active] != 0).any()
    before = [p.detach().clone() for p in leader.policy.critic.head.parameters()]
    stats = StackelbergPPO(leader, follower, cfg.ppo, cfg.env.utility.gamma).update(ro, torch.Generator().manual_seed(0))
    assert stats["leader/v_loss"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, leader.policy.critic.head.parameters(), strict=True))
