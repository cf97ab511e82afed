"""Benchmarks (``mfsg bench TARGET``): speed and memory targets live here, never in timed tests.

Each target module exposes ``add_arguments(parser)`` and ``measure(args) -> dict``; the
command prints a table (or JSON) and writes the result to ``bench-results/<target>.json``.
"""

TARGETS = {
    "env": "mfsg.bench.env",
    "policy": "mfsg.bench.policy",
    "train": "mfsg.bench.train",
    "verify": "mfsg.bench.verify",
}
