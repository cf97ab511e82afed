"""The ``mfsg`` command line: ``mfsg simulate | train | evaluate | verify | bench | experiment``.

Each subcommand lives in :mod:`mfsg.commands` as a module with ``add_arguments(parser)``
and ``run(args) -> int``; modules are imported only when their command runs. A bad
value (a :class:`~mfsg.config.ConfigError` or any ``ValueError`` raised while checking
input) is reported on one line and the command exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mfsg.commands.errors import EXIT_BAD_INPUT, ConfigError, UsageError, one_line

__all__ = ["main", "build_parser", "UsageError", "COMMANDS"]

COMMANDS = {
    "simulate": ("mfsg.commands.simulate", "run a rule-based protocol (model §6) and print model §7 metrics"),
    "train": ("mfsg.commands.train", "train leader and follower policies with Stackelberg PPO (model §6)"),
    "evaluate": ("mfsg.commands.evaluate", "model §7 metrics of a trained checkpoint"),
    "bench": ("mfsg.commands.bench", "measure speed; write results to a file"),
    "verify": ("mfsg.commands.verify", "run the equilibrium verification suite (model §8)"),
    "experiment": ("mfsg.commands.experiment", "regenerate the results and figures of experiment E1..E6"),
    "protocol": ("mfsg.commands.protocol", "what a protocol's messages mean: per-symbol tables, MI, signaling cost, card"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage is one ``--help`` away), like every other bad input."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mfsg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except ConfigError as err:  # includes UsageError
        print(f"mfsg {args.command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
