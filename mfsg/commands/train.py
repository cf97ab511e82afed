"""``mfsg train --config experiments/configs/<name>.toml --out runs/<name> [--resume | --overwrite] [--iterations N]``.

A folder that already holds a run is refused unless ``--resume`` continues it or ``--overwrite`` replaces it
(the earlier run's files are deleted first; other files stay), so runs are never mixed or lost by accident.

``--device`` replaces ``run.device`` (:mod:`mfsg.learn.device`). ``--seeds 0,1,2`` trains one replicate per seed
(``run.seed`` replaced) into ``OUT/seed0``, ``OUT/seed1``, …; ``--executor ray [--address ADDR] [--num-cpus N]``
runs the replicates as Ray tasks (:mod:`mfsg.experiments.executor`), with the same files as one after another.
On a cluster, ``OUT`` must be a folder every node sees (a shared file system). A failed replicate is named with
its error, the others are kept, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from mfsg.commands.errors import ConfigError, UsageError
from mfsg.experiments import executor
from mfsg.learn.config import load_train_config
from mfsg.learn.device import resolve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="TOML file with [env], [policy], [ppo], [run] tables")
    parser.add_argument("--out", required=True, help="output folder (metrics, evaluations, checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in OUT (its files are deleted)")
    parser.add_argument("--iterations", type=int, default=None, help="override run.iterations")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the config's run.device)")
    parser.add_argument("--seeds", default=None, help="comma-separated run.seed values: one replicate each, in OUT/seed<k>")
    executor.add_arguments(parser)


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]: distinct integers >= 0, or a one-line UsageError."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UsageError(f"--seeds={text!r} is invalid: allowed distinct integers >= 0 separated by commas, e.g. 0,1,2")
    return seeds


# What a run writes into its --out folder (mfsg.learn.train), checkpoint folders with their leftovers of a kill.
RUN_FILES = ("config.json", "metrics.jsonl", "eval.jsonl", "warm_start.json", "init.json")
RUN_FOLDERS = ("checkpoint", "final", "imitated", "initial")
LOGS = ("metrics.jsonl", "eval.jsonl")


def previous_run(out: Path) -> list[str]:
    """The entries of an earlier run in ``out``."""
    names = [*RUN_FILES, *(f"{d}{suffix}" for d in RUN_FOLDERS for suffix in ("", ".old", ".tmp"))]
    return [name for name in names if (out / name).exists()]


def check_out(out: Path, resume: bool, overwrite: bool) -> list[str]:
    """Refuse an --out folder that would mix or lose runs; returns the entries --overwrite deletes."""
    from mfsg.learn import checkpoint
    from mfsg.learn.train import read_log

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out={str(out)!r} is invalid: it is a file, allowed a folder")
    found = previous_run(out)
    if resume:
        if not (checkpoint.resolve(out / "checkpoint") / checkpoint.STATE).exists():
            raise UsageError(f"--resume is invalid for --out={str(out)!r}: it has no checkpoint/ to resume from")
        for name in LOGS:  # read before any unit starts: a resumed run keeps the lines before its checkpoint
            if (out / name).is_file():
                try:
                    read_log(out / name)
                except ConfigError as err:
                    raise UsageError(f"--resume is invalid: {err}") from None
        return []
    if found and not overwrite:
        raise UsageError(f"--out={str(out)!r} is invalid: it already holds a run ({', '.join(found)}): allowed "
                         "--resume to continue it, --overwrite to replace it, or another folder")
    return found


def clear_run(out: Path, entries: list[str]) -> None:
    """Delete an earlier run's entries (``--overwrite``); other files in ``out`` stay."""
    import shutil

    for name in entries:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def train_one(cfg, out: str, resume: bool, progress: bool) -> dict:
    """One training run into ``out`` (a unit of the executor); returns the run's summary."""
    from mfsg.learn.train import Trainer

    trainer = Trainer(cfg, out)
    if resume:
        trainer.resume()
    return trainer.run(progress=progress)


def run(args: argparse.Namespace) -> int:
    cfg = load_train_config(args.config)
    if args.iterations is not None:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, iterations=args.iterations))
    if args.device is not None:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, device=args.device))
    ex_cfg = executor.from_args(args, cfg.run.device)
    if not ex_cfg.address:  # the device must be on this machine (a cluster's nodes check their own)
        resolve(cfg.run.device, "--device" if args.device is not None else "run.device")
    if args.seeds is None:
        runs = {"": (cfg, Path(args.out))}
    else:
        runs = {f"seed{k}": (dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=k)), Path(args.out) / f"seed{k}")
                for k in parse_seeds(args.seeds)}
    if args.resume and args.overwrite:
        raise UsageError("--overwrite is invalid with --resume: allowed one of them")
    stale = {out: check_out(out, args.resume, args.overwrite) for _, out in runs.values()}
    for out, entries in stale.items():
        clear_run(out, entries)
    if args.seeds is None and ex_cfg.kind == "serial":
        print(json.dumps(train_one(cfg, args.out, args.resume, not args.no_progress)))
        return 0
    progress = not args.no_progress and ex_cfg.kind == "serial" and len(runs) == 1
    units = [executor.Unit(name or "run", train_one, (c, str(out.resolve()), args.resume, progress))
             for name, (c, out) in runs.items()]
    with executor.using(ex_cfg) as ex:
        summaries = ex.map(units, "train")
    print(json.dumps(summaries if args.seeds is not None else next(iter(summaries.values()), {})))
    if ex.failures:
        print(f"mfsg train: {executor.UnitsFailed(ex.failures, ex.total)}", file=sys.stderr)
        return 1
    return 0
