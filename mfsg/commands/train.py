"""``mfsg train --config experiments/configs/<name>.toml --out runs/<name> [--resume] [--iterations N]``."""

from __future__ import annotations

import argparse
import dataclasses
import json

from mfsg.cli import UsageError
from mfsg.learn.config import load_train_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="TOML file with [env], [policy], [ppo], [run] tables")
    parser.add_argument("--out", required=True, help="output folder (metrics, evaluations, checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    parser.add_argument("--iterations", type=int, default=None, help="override run.iterations")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mfsg.learn import checkpoint
    from mfsg.learn.train import Trainer

    cfg = load_train_config(args.config)
    if args.iterations is not None:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, iterations=args.iterations))
    if args.resume and not (checkpoint.resolve(Path(args.out) / "checkpoint") / checkpoint.STATE).exists():
        raise UsageError(f"--resume is invalid for --out={args.out!r}: it has no checkpoint/ to resume from")
    trainer = Trainer(cfg, args.out)
    if args.resume:
        trainer.resume()
    summary = trainer.run(progress=not args.no_progress)
    print(json.dumps(summary))
    return 0
