"""``mfsg bench {env,policy,verify} [--json] [--out FILE] [target options]``: run a benchmark, print it,
write it to a file. A target's module (and its heavy imports) loads only when that target runs."""

from __future__ import annotations

import argparse
import importlib
import json

from mfsg.bench import TARGETS
from mfsg.bench.common import machine_info, write_result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(TARGETS), help="what to measure")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the target's options (--help after the target)")


def target_parser(name: str, module) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"mfsg bench {name}", description=(module.__doc__ or "").strip().splitlines()[0])
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", default=f"bench-results/{name}.json", help="file the result is written to")
    module.add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(TARGETS[args.target])
    opts = target_parser(args.target, module).parse_args(args.options)
    result = module.measure(opts)
    result["machine"] = machine_info()
    path = write_result(result, opts.out)
    if opts.json:
        print(json.dumps(result, indent=2))
    else:
        print(module.format_result(result))
        print(f"\nwritten to {path}")
    return 0
