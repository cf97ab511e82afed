"""``mfsg bench env``: environment speed in active UE-TTIs per second.

:class:`~mfsg.env.BatchedEnv` at several batch sizes against :class:`~mfsg.env.ReferenceEnv`,
default scenario with fixed N = 6 UEs and K = 2 RBGs. Actions are random valid actions
recorded beforehand (one untimed episode with the same env seed, so they stay valid when
replayed): the timing is the environment itself — reset, draws, churn, traffic, channel,
counters and rewards of whole episodes — not a policy. Both environments are timed the same
way: whole episodes, repeated; the rates use the median episode time, and (``*_best``) the
fastest one, which is the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from mfsg.bench.common import format_table, repeat_timed
from mfsg.config import ChurnConfig, EnvConfig
from mfsg.env import BatchedEnv, ReferenceEnv

SIZES = (1, 4, 16, 64, 256, 1024, 4096)
QUICK_SIZES = (1, 16, 256)
TARGET_SIZE = 1024
TARGETS = {"batched_ue_tti_per_s": 1e6, "speedup_vs_reference": 100.0}
N_UE, SEED, ACTION_SEED = 6, 0, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help=f"batch sizes {QUICK_SIZES}, short timings (CI)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as set)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="minimum timing per row")
    parser.add_argument("--no-check", action="store_true", help="BatchedEnv(check_actions=False)")


def env_config() -> EnvConfig:
    return EnvConfig(churn=ChurnConfig(kind="fixed", n=N_UE))


def _record_batched(cfg: EnvConfig, E: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Random valid (dcm, ucm, access) for every TTI of one episode of ``BatchedEnv(cfg, E, SEED)``."""
    env, gen = BatchedEnv(cfg, E, seed=SEED), torch.Generator().manual_seed(ACTION_SEED)
    acts = []
    while not env.done:
        env.begin_tti()
        dcm = torch.randint(0, cfg.dcm_vocab, (E, env.S), generator=gen)
        buffer = env.deliver(dcm).buffer
        ucm = torch.randint(0, cfg.ucm_vocab, (E, env.S), generator=gen)
        access = torch.randint(0, cfg.n_access, (E, env.S), generator=gen) * (buffer > 0)
        env.end_tti(ucm, access)
        acts.append((dcm, ucm, access))
    return acts


def _record_reference(cfg: EnvConfig) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    env, rng = ReferenceEnv(cfg, seed=SEED), np.random.default_rng(ACTION_SEED)
    acts = []
    while not env.done:
        env.begin_tti()
        dcm = rng.integers(0, cfg.dcm_vocab, env.S)
        buffer = env.deliver(dcm).buffer
        access = rng.integers(0, cfg.n_access, env.S) * (buffer > 0)
        acts.append((dcm, rng.integers(0, cfg.ucm_vocab, env.S), access))
        env.end_tti(acts[-1][1], access)
    return acts


def _episodes(env, acts) -> None:
    env.reset(SEED)
    for dcm, ucm, access in acts:
        env.begin_tti()
        env.deliver(dcm)
        env.end_tti(ucm, access)


def _rate(env, acts, ue_ttis: int, min_s: float) -> dict:
    """UE-TTIs per second at the median and at the fastest of repeated whole-episode timings."""
    times = repeat_timed(lambda: _episodes(env, acts), min_seconds=min_s)
    return {"ue_tti_per_s": ue_ttis / float(np.median(times)), "ue_tti_per_s_best": ue_ttis / min(times),
            "repeats": len(times)}


def _row(name: str, batch: int, rate: dict, ref: dict) -> dict:
    return {"env": name, "batch": batch, "ue_tti_per_s": rate["ue_tti_per_s"],
            "vs_reference": rate["ue_tti_per_s"] / ref["ue_tti_per_s"], "ue_tti_per_s_best": rate["ue_tti_per_s_best"],
            "vs_reference_best": rate["ue_tti_per_s_best"] / ref["ue_tti_per_s_best"], "repeats": rate["repeats"]}


def measure(args: argparse.Namespace) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = QUICK_SIZES if args.quick else SIZES
    min_s = min(args.min_seconds, 0.3) if args.quick else args.min_seconds
    cfg = env_config()
    ref = ReferenceEnv(cfg, seed=SEED)
    acts = _record_reference(cfg)
    _episodes(ref, acts)
    ref_rate = _rate(ref, acts, int(ref.c.ue_ttis), min_s)
    rows = [_row("reference", 1, ref_rate, ref_rate)]
    for E in sizes:
        env = BatchedEnv(cfg, E, seed=SEED, check_actions=not args.no_check)
        acts = _record_batched(cfg, E)
        _episodes(env, acts)
        rows.append(_row("batched", E, _rate(env, acts, int(env.c.ue_ttis.sum()), min_s), ref_rate))
    result = {
        "what": "active UE-TTIs per second; whole episodes (reset + T TTIs) with pre-recorded random valid actions, "
                "so the timing is the env step itself; wall-clock median (and *_best: fastest episode)",
        "config": {"n_ue": N_UE, "n_rbg": cfg.n_rbg, "buffer": cfg.buffer, "horizon": cfg.horizon,
                   "p_arrival": cfg.p_arrival, "tbler": cfg.tbler, "check_actions": not args.no_check,
                   "torch_threads": torch.get_num_threads(), "min_seconds": min_s},
        "rows": rows,
        "targets": {**TARGETS, "at_batch": TARGET_SIZE},
    }
    at = [r for r in rows if r["env"] == "batched" and r["batch"] == TARGET_SIZE]
    if at:
        result["met"] = {"batched_ue_tti_per_s": at[0]["ue_tti_per_s"] >= TARGETS["batched_ue_tti_per_s"],
                         "speedup_vs_reference": at[0]["vs_reference"] >= TARGETS["speedup_vs_reference"]}
    return result


def format_result(result: dict) -> str:
    c = result["config"]
    head = (f"env speed, N={c['n_ue']} K={c['n_rbg']} T={c['horizon']}, check_actions={c['check_actions']}, "
            f"torch threads {c['torch_threads']}\n{result['what']}\n")
    columns = ["env", "batch", "ue_tti_per_s", "vs_reference", "ue_tti_per_s_best", "vs_reference_best", "repeats"]
    table = format_table(result["rows"], columns)
    met = result.get("met")
    tail = "" if met is None else "\n\ntargets at batch {}: {}".format(
        result["targets"]["at_batch"], ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items()))
    return head + table + tail
