"""Imitation of a rule-based protocol (warm start and LLM-PL's training) and the warm-start config."""

import dataclasses
import json

import pytest
import torch

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.learn.config import PolicyConfig, RunConfig, TrainConfig, train_config_from_dict
from mfsg.learn.imitation import ImitationConfig, agreement, demonstrations, fit
from mfsg.learn.mappo import MLPConfig, MLPPlayer
from mfsg.learn.train import Trainer, evaluate_players
from mfsg.protocols import make_protocol, run_protocol


def test_behaviour_cloning_reproduces_sr_grant():
    torch.manual_seed(0)
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=4), horizon=12)
    leader, follower = MLPPlayer("leader", cfg, MLPConfig(4, 64)), MLPPlayer("follower", cfg, MLPConfig(4, 64))
    demo_l, demo_f = demonstrations(cfg, make_protocol("sr-grant", seed=0), leader, follower, 128, 0)
    before = agreement(leader, demo_l)
    losses = fit(leader, demo_l, ImitationConfig(epochs=30, lr=3e-3, batch_size=256))
    fit(follower, demo_f, ImitationConfig(epochs=15, lr=3e-3, batch_size=256))
    assert losses[-1] < losses[0]
    assert agreement(leader, demo_l) > max(before + 0.2, 0.75)
    assert agreement(follower, demo_f) > 0.95
    learned = evaluate_players(leader, follower, cfg, episodes=256, seed=9, greedy=True)["throughput"]
    teacher = run_protocol(cfg, make_protocol("sr-grant", seed=1), 256, 9)["delivered"].double().mean() / cfg.horizon
    never_delete = 4 / cfg.horizon  # what PPO from scratch collapses to: one dPDU per UE per episode
    assert learned > max(0.9 * float(teacher), 2 * never_delete)


def test_warm_start_config_is_validated():
    with pytest.raises(ConfigError, match="policy.warm_start"):
        PolicyConfig(warm_start="telepathy")
    with pytest.raises(ConfigError, match="policy.imitation.steps"):
        train_config_from_dict({"policy": {"imitation": {"steps": 3}}})


def test_trainer_warm_start_logs_and_checkpoints(tmp_path):
    env = EnvConfig(churn=ChurnConfig(kind="fixed", n=2), horizon=6)
    cfg = TrainConfig(env=env, policy=PolicyConfig(kind="mlp", mlp=MLPConfig(2, 16), warm_start="sr-grant",
                                                   imitation=ImitationConfig(episodes=8, epochs=1)),
                      run=RunConfig(iterations=1, n_envs=4, threads=1, eval_ns=(2,), eval_episodes=2))
    Trainer(cfg, tmp_path).run(progress=False)
    log = json.loads((tmp_path / "warm_start.json").read_text())
    assert log["teacher"] == "sr-grant" and 0.0 <= log["leader_agreement"] <= 1.0
    assert (tmp_path / "final" / "leader.safetensors").exists()
    assert dataclasses.asdict(cfg.policy)["imitation"]["episodes"] == 8
