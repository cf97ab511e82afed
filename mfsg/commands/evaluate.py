"""``mfsg evaluate --checkpoint DIR --n-ue N --p-arrival P [--churn ...] [--decoding pag|free] [--json]``: model §7
metrics of trained players.

``--decoding pag`` (default) scores the PAG candidates (model §5): every action is valid.
``--decoding free`` generates language players' action text without PAG (:mod:`mfsg.learn.freeform`):
``valid_action_rate`` is then the fraction of outputs that parse to a valid action; invalid outputs
are counted and replaced by the ``--fallback-dcm`` / (``--fallback-ucm``, IDLE) action.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

from mfsg.config import ChurnConfig, ConfigError
from mfsg.metrics import format_metrics

DECODINGS = ("pag", "free")
KEYS = ("throughput", "genie_fraction", "jain", "collision_rate", "idle_rate", "duplicate_rate", "latency_mean",
        "latency_p95", "signaling_rate", "valid_action_rate", "decision_latency_ms")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a run's final/ or checkpoint/ folder")
    parser.add_argument("--n-ue", type=int, required=True, help="number of UEs (fixed churn unless --churn says otherwise)")
    parser.add_argument("--p-arrival", type=float, required=True)
    parser.add_argument("--churn", default="fixed", choices=["fixed", "per_episode", "markov"])
    parser.add_argument("--n-min", type=int, default=2)
    parser.add_argument("--p-join", type=float, default=0.1)
    parser.add_argument("--p-leave", type=float, default=0.05)
    parser.add_argument("--episodes", type=int, default=512)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--greedy", action="store_true", help="argmax actions instead of sampling")
    parser.add_argument("--decoding", default="pag", help="pag (PAG candidates) or free (no PAG; language players)")
    parser.add_argument("--fallback-dcm", type=int, default=0, help="DCM executed for an invalid free-form output")
    parser.add_argument("--fallback-ucm", type=int, default=0, help="UCM executed (with IDLE) for an invalid output")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto: where the players run")


def run(args: argparse.Namespace) -> int:
    from mfsg.commands.errors import UsageError
    from mfsg.learn.device import resolve
    from mfsg.learn.train import evaluate_players, load_players
    from mfsg.metrics import genie_throughput

    if args.episodes < 1:
        raise UsageError(f"--episodes={args.episodes} is invalid: allowed an integer >= 1")
    if args.decoding not in DECODINGS:
        raise UsageError(f"--decoding={args.decoding!r} is invalid: allowed one of {', '.join(DECODINGS)}")
    try:
        leader, follower, cfg = load_players(args.checkpoint, device=str(resolve(args.device, "--device")))
    except (KeyError, TypeError, AttributeError, IndexError) as err:  # a state.json whose config is damaged
        raise UsageError(f"--checkpoint={args.checkpoint!r} is invalid: its state.json does not describe a run "
                         f"({type(err).__name__}: {err})") from None
    churn = ChurnConfig(kind=args.churn, n=args.n_ue, n_min=min(args.n_min, args.n_ue), n_max=args.n_ue,
                        p_join=args.p_join, p_leave=args.p_leave)
    env_cfg = dataclasses.replace(cfg.env, churn=churn, p_arrival=args.p_arrival)
    if args.decoding == "free":
        from mfsg.learn.freeform import FreeformConfig, evaluate_freeform

        if cfg.policy.kind != "language":
            raise UsageError(f"--decoding=free is invalid for --checkpoint={args.checkpoint!r}: allowed only for "
                             f"language players (its policy.kind is {cfg.policy.kind!r})")
        try:
            fcfg = FreeformConfig(fallback_dcm=args.fallback_dcm, fallback_ucm=args.fallback_ucm)
            fcfg.check_env(env_cfg)
        except ConfigError as err:
            raise UsageError(str(err).replace("freeform.fallback_", "--fallback-")) from None
        m = evaluate_freeform(leader, follower, env_cfg, episodes=args.episodes, seed=args.seed,
                              no_comm=cfg.run.no_comm, greedy=args.greedy, cfg=fcfg)
    else:
        m = evaluate_players(leader, follower, env_cfg, episodes=args.episodes, seed=args.seed,
                             no_comm=cfg.run.no_comm, greedy=args.greedy)
    m["genie_fraction"] = m["throughput"] / max(genie_throughput(env_cfg, args.episodes, args.seed), 1e-12)
    out = {k: m[k] for k in KEYS if k in m} | {k: v for k, v in m.items() if k not in KEYS}
    if args.json:  # undefined figures (e.g. latency with no dPDU received) are null, not NaN
        print(json.dumps({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}, indent=2))
    else:
        print(format_metrics(out, KEYS))
    return 0
