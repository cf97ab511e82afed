"""The committed players of the mfsg_speculative recipe (experiments/checkpoints/mfsg-speculative) keep what they
learned: at N = 2 they deliver what the genie delivers, above SR/grant on the same draws."""

from __future__ import annotations

from pathlib import Path

from mfsg.learn.train import evaluate_players, fixed_n_env, load_players
from mfsg.metrics import genie_throughput
from mfsg.protocols import make_protocol, run_protocol

CHECKPOINT = Path(__file__).resolve().parents[2] / "experiments" / "checkpoints" / "mfsg-speculative"


def test_speculative_players_reach_the_genie_at_two_ues():
    leader, follower, cfg = load_players(CHECKPOINT)
    env = fixed_n_env(cfg.env, 2, cfg.run.eval_p_arrival)
    episodes, seed = 32, 7
    genie = genie_throughput(env, episodes, seed)
    learned = evaluate_players(leader, follower, env, episodes=episodes, seed=seed, greedy=True)["throughput"]
    sr = run_protocol(env, make_protocol("sr-grant"), episodes, seed)["delivered"].double().mean().item() / cfg.env.horizon
    assert learned >= 0.99 * genie
    assert learned > sr
