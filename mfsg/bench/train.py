"""``mfsg bench train``: decisions per second of whole Stackelberg PPO iterations (rollout + update).

The players, environment and PPO settings are a training config's (default: the default recipe,
``experiments/configs/mfsg_default.toml``), built as ``mfsg train`` builds them but without the
warm start (imitation changes the weights, not the cost of an iteration). Each timed iteration is a
rollout of ``run.n_envs`` episodes and one PPO update with the policy terms on (anchor included
when the recipe has one); the first iteration is a warm-up and is not timed. A decision is one
leader DCM or one follower (UCM, access) choice; the rate counts the decisions of the rollout over
the time of rollout + update.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mfsg.bench.common import format_table
from mfsg.learn import device as devices
from mfsg.learn.config import load_train_config
from mfsg.learn.train import Trainer, iteration_seed

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "mfsg_default.toml"
BASELINE_DECISIONS_PER_S = 650.0  # the default players before the PPO update was made cheaper (24 episodes: ~7 s)
TARGET_SPEEDUP = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config (TOML)")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations (after one warm-up)")
    parser.add_argument("--n-envs", type=int, default=None, help="episodes per iteration (default: the config's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's)")
    parser.add_argument("--quick", action="store_true", help="one timed iteration (CI)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the config's run.device)")


def measure(args: argparse.Namespace) -> dict:
    cfg = load_train_config(args.config)
    run = cfg.run if args.n_envs is None else type(cfg.run)(**{**cfg.run.__dict__, "n_envs": args.n_envs})
    run = run if args.device is None else type(run)(**{**run.__dict__, "device": args.device})
    devices.resolve(run.device, "--device" if args.device is not None else "run.device")
    cfg = type(cfg)(env=cfg.env, policy=cfg.policy, ppo=cfg.ppo, run=run)
    iterations = 1 if args.quick else args.iterations
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        if cfg.ppo.anchor_coef:
            trainer.ppo.set_reference(copy.deepcopy(trainer.leader), copy.deepcopy(trainer.follower))
        rows = []
        for it in range(iterations + 1):
            t0 = time.perf_counter()
            with devices.autocast(trainer.device, run.precision):
                ro = trainer.rollout(it)
            t1 = time.perf_counter()
            gen = torch.Generator().manual_seed(iteration_seed(cfg, it, "update"))
            with devices.autocast(trainer.device, run.precision):
                trainer.ppo.update(ro, gen, policy=True)  # ends in .item(): a GPU's work is done when it returns
            t2 = time.perf_counter()
            n = len(ro.leader.action) + len(ro.follower.action)
            if it:  # the first iteration warms caches up
                rows.append({"iteration": it, "episodes": cfg.run.n_envs, "decisions": n, "rollout_s": t1 - t0,
                             "update_s": t2 - t1, "decisions_per_s": n / (t2 - t0)})
    rate = statistics.median(r["decisions_per_s"] for r in rows)
    return {
        "what": "whole PPO iterations (rollout + update) of the config's players; decisions per second",
        "config": {"path": str(args.config), "policy": cfg.policy.kind, "n_envs": cfg.run.n_envs,
                   "epochs": cfg.ppo.epochs, "minibatches": cfg.ppo.minibatches,
                   "torch_threads": torch.get_num_threads(), "device": str(trainer.device), "precision": run.precision},
        "rows": rows,
        "decisions_per_s": rate,
        "targets": {"decisions_per_s": TARGET_SPEEDUP * BASELINE_DECISIONS_PER_S,
                    "baseline_decisions_per_s": BASELINE_DECISIONS_PER_S},
        "met": {"decisions_per_s": rate >= TARGET_SPEEDUP * BASELINE_DECISIONS_PER_S},
    }


def format_result(result: dict) -> str:
    c = result["config"]
    head = (f"PPO iterations of {c['path']} ({c['policy']} players, {c['n_envs']} episodes, {c['epochs']} epochs x "
            f"{c['minibatches']} minibatches, torch threads {c['torch_threads']}, device {c.get('device', 'cpu')})\n"
            f"{result['what']}\n")
    table = format_table(result["rows"], ["iteration", "episodes", "decisions", "rollout_s", "update_s",
                                          "decisions_per_s"])
    t = result["targets"]
    tail = (f"\n\nmedian {result['decisions_per_s']:.0f} decisions/s; target {t['decisions_per_s']:.0f} "
            f"({TARGET_SPEEDUP:g} x {t['baseline_decisions_per_s']:.0f}): "
            f"{'met' if result['met']['decisions_per_s'] else 'NOT met'}")
    return head + table + tail
