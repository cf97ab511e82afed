"""``mfsg verify [--json] [--quick] [--case NAME ...]``: run the model §8 verification suite.

Prints the table (game, check, path, value, tolerance, verdict) or JSON, and exits 1 if any
check fails. The suite itself (games, points, tolerances) lives in ``verification/suite.py``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import mfsg
from mfsg.cli import UsageError
from mfsg.verify.report import all_passed, format_table, to_json
from mfsg.verify.threads import limit_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quick", action="store_true", help="cheap cases only (under a minute)")
    parser.add_argument("--case", action="append", default=None, metavar="NAME", help="run only this case (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (small games run fastest on 1)")
    parser.add_argument("--verbose", action="store_true", help="report progress on stderr")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda, cuda:N or auto: where a trained checkpoint's players run (policy-game checks)")


def _suite():
    """``verification.suite``, which sits next to the ``mfsg`` package in the repository."""
    root = Path(mfsg.__file__).resolve().parents[1]
    if (root / "verification" / "suite.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module("verification.suite")
    except ImportError as err:
        raise UsageError(
            f"the verification suite is not importable ({err}): allowed from a repository checkout"
        ) from err


def run(args: argparse.Namespace) -> int:
    suite = _suite()
    if args.case:
        unknown = [c for c in args.case if c not in suite.CASES]
        if unknown:
            raise UsageError(f"--case={unknown[0]!r} is invalid: allowed one of {', '.join(suite.CASES)}")
    if args.threads < 1:
        raise UsageError(f"--threads={args.threads!r} is invalid: allowed an integer >= 1")
    say = (lambda msg: print(f"[verify {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr)) if args.verbose else None
    t0 = time.perf_counter()
    from mfsg.learn import device as devices  # torch: imported when the command runs

    with limit_threads(args.threads), devices.using(args.device):
        rows, seconds = suite.run_suite(quick=args.quick, only=args.case, **({"say": say} if say else {}))
    total = time.perf_counter() - t0
    if args.json:
        print(to_json(rows))
    else:
        print(format_table(rows))
        print("case seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()) + f"; total {total:.1f}")
    return 0 if all_passed(rows) else 1
