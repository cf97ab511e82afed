"""``mfsg experiment NAME [--quick] [--out DIR] [--config FILE] [--checkpoint KEY=PATH] [--json] [--executor ...]``.

Regenerates the result files (CSV + ``result.json``) and figures (SVG) of one experiment
(``e1`` … ``e6``, or ``all``) from ``experiments/configs/NAME.toml``: the full budget by
default, its ``[quick]`` values with ``--quick``. Output goes to ``experiments/results/NAME/``
(``.../NAME/quick/`` in quick mode) unless ``--out`` is given (``all``: one sub-folder per
experiment). ``--checkpoint KEY=PATH`` replaces a checkpoint (E2: a run folder) named in the config;
``KEY=`` marks it unavailable (its methods are skipped and listed as such in ``result.json``). With
``all``, each experiment takes the overrides whose KEY it names (E2's run folders are not overridden).

``--device`` (default cpu) is where the experiment's models run, evaluated or trained (:mod:`mfsg.learn.device`).
``--executor ray [--address ADDR] [--num-cpus N]`` runs the experiment's independent units (E1's grid
cells, the scenarios of E3–E5, E5's ablation trainings) as Ray tasks (:mod:`mfsg.experiments.executor`);
the files are the same bytes as with the default ``--executor serial``. A failed unit is named in
``result.json`` (``failed_units``) and on stderr, the other units' rows are kept, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

from mfsg.config import UsageError
from mfsg.experiments import EXPERIMENTS, executor

ALL = "all"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"one of {', '.join(EXPERIMENTS)} or {ALL}")
    parser.add_argument("--quick", action="store_true", help="the config's [quick] budget (about a minute each)")
    parser.add_argument("--out", default=None, help="output folder (default experiments/results/NAME[/quick])")
    parser.add_argument("--config", default=None, help="config file (default experiments/configs/NAME.toml)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="KEY=PATH",
                        help="replace a checkpoint (E2: a run folder) of the config; repeatable")
    parser.add_argument("--json", action="store_true", help="print result.json instead of a summary line")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda, cuda:N or auto: where the experiment's models run (evaluated and trained)")
    executor.add_arguments(parser)


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository root when inside it (configs' paths are), else absolute."""
    from mfsg.experiments.common import REPO

    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--checkpoint={item!r} is invalid: allowed KEY=PATH (KEY= marks it unavailable)")
        out[key] = _repo_relative(Path(path).resolve()) if path else ""
    return out


def run_one(name: str, *, quick: bool, out: str | Path | None = None, config: str | Path | None = None,
            checkpoints: dict[str, str] | None = None, argv: list[str] | None = None,
            only_known: bool = False) -> tuple[dict, Path]:
    """Run experiment ``name``; returns its ``result.json`` document and the output folder.
    ``only_known``: apply only the ``checkpoints`` whose key the experiment names (``NAME=all``)."""
    from mfsg.experiments.common import CONFIG_DIR, Results, default_out, load_experiment_config

    module = importlib.import_module(EXPERIMENTS[name][0])
    cfg = load_experiment_config(getattr(module, f"{name.upper()}Config"), config or CONFIG_DIR / f"{name}.toml", quick, name)
    if only_known:
        checkpoints = {k: v for k, v in (checkpoints or {}).items() if k in getattr(module, "CHECKPOINT_KEYS", ())}
    if checkpoints:
        table = getattr(module, "PATHS_FIELD", "checkpoints")
        cfg = dataclasses.replace(cfg, **{table: {**getattr(cfg, table), **checkpoints}})
    res = Results(name, out or default_out(name, quick), quick=quick, config=cfg, argv=argv)
    before = dict(executor.current().failures)
    summary, seeds = module.run(cfg, res)
    failed = {k: v for k, v in executor.current().failures.items() if k not in before}
    if failed:  # the other units' rows are in the files; these are missing
        summary = {**summary, "failed_units": failed}
    return res.finish(summary, seeds=seeds), res.out


def run(args: argparse.Namespace) -> int:
    if args.name != ALL and args.name not in EXPERIMENTS:
        raise UsageError(f"NAME={args.name!r} is invalid: allowed one of {', '.join(EXPERIMENTS)}, {ALL}")
    names = list(EXPERIMENTS) if args.name == ALL else [args.name]
    if args.config and len(names) > 1:
        raise UsageError(f"--config is invalid with NAME={ALL}: allowed with a single experiment")
    overrides = _overrides(args.checkpoint)
    from mfsg.learn import device as devices  # torch: imported when the command runs

    docs = []
    with devices.using(args.device), executor.using(executor.from_args(args, args.device)) as ex:
        for name in names:
            out = Path(args.out) / name if args.out and len(names) > 1 else args.out
            doc, folder = run_one(name, quick=args.quick, out=out, config=args.config, checkpoints=overrides,
                                  only_known=len(names) > 1)
            docs.append(doc)
            if not args.json:
                print(f"{name} ({doc['mode']}): {doc['wall_clock_s']:.1f} s; {folder}: {', '.join(doc['files'])}")
    if args.json:
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=1))
    if ex.failures:
        print(f"mfsg experiment: {executor.UnitsFailed(ex.failures, ex.total)}", file=sys.stderr)
        return 1
    return 0
