"""``mfsg bench {env,policy,verify} [--json] [--out FILE]``: run a benchmark, print it, write it to a file."""

from __future__ import annotations

import argparse
import importlib
import json

from mfsg.bench import TARGETS
from mfsg.bench.common import machine_info, write_result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    for name, module in TARGETS.items():
        p = sub.add_parser(name, help=f"benchmark {name}")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--out", default=f"bench-results/{name}.json", help="file the result is written to")
        importlib.import_module(module).add_arguments(p)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(TARGETS[args.target])
    result = module.measure(args)
    result["machine"] = machine_info()
    path = write_result(result, args.out)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(module.format_result(result))
        print(f"\nwritten to {path}")
    return 0
