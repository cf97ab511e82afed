"""``mfsg verify [--json] [--quick] [--case NAME ...]``: run the model §8 verification suite.

Prints the table (game, check, path, value, tolerance, verdict) or JSON. Exit status: 0 when every
check passes, 1 when any check fails, 3 when none fails and some are inconclusive (degenerate or
undecided by the data), 2 on a usage error. The suite itself (games, points, tolerances) is the
installed package :mod:`verification.suite`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from mfsg.commands.errors import UsageError
from mfsg.verify.report import EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS, exit_code, format_table, to_json
from mfsg.verify.threads import limit_threads

EXIT_STATUS = (f"exit status: {EXIT_PASS} every check passes; {EXIT_FAIL} some check fails; {EXIT_INCONCLUSIVE} none "
               "fails and some are inconclusive (degenerate or undecided by the data); 2 usage error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_STATUS
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quick", action="store_true", help="cheap cases only (under a minute)")
    parser.add_argument("--case", action="append", default=None, metavar="NAME", help="run only this case (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (small games run fastest on 1)")
    parser.add_argument("--verbose", action="store_true", help="report progress on stderr")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda, cuda:N or auto: where a trained checkpoint's players run (policy-game checks)")


def _suite():
    """``verification.suite``, installed with mfsg (``pip install`` puts both packages on the path)."""
    try:
        return importlib.import_module("verification.suite")
    except ImportError as err:
        raise UsageError(f"the verification suite is not importable ({err}): allowed an installed mfsg") from err


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
    return exit_code(rows)
