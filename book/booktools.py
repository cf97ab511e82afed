"""Presentation helpers shared by the book's chapters (no model logic lives here).

Chapters run with ``book/`` as the working directory, so ``import booktools`` works in every cell.
"""

from __future__ import annotations

import math
from pathlib import Path

from IPython.display import Markdown

import mfsg

# The repository checkout the installed (editable) package lives in: configs, checkpoints, results.
# Found from the package, not from this file, so a copy of book/ elsewhere still finds them.
REPO = Path(mfsg.__file__).resolve().parents[1]


def fmt(value, digits: int = 4) -> str:
    """A number for a table cell: fixed digits, scientific when tiny or huge, '-' for NaN/None."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"
    return str(value).replace("|", "\\|")


def estimate(e, digits: int = 3) -> str:
    """``mean ± ci95`` of a :class:`mfsg.metrics.Estimate`."""
    if math.isnan(e.ci95):
        return fmt(e.mean, digits)
    return f"{e.mean:.{digits}f} ± {e.ci95:.{digits}f}"


def md_table(columns: list[str], rows: list[list], digits: int = 4) -> Markdown:
    """A Markdown (MyST/GFM) table rendered by the book."""
    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(c if isinstance(c, str) else fmt(c, digits) for c in row) + " |" for row in rows]
    return Markdown("\n".join([head, sep, *body]))


def checks_table(rows) -> Markdown:
    """The rows of :mod:`mfsg.verify.report` (game, check, path, value, op tolerance, verdict, detail)."""
    return md_table(
        ["game", "check", "path", "value", "tolerance", "verdict", "detail"],
        [[r.game, r.check, r.path or "-", r.value, f"{r.op} {fmt(r.tolerance)}", r.verdict.upper(), r.detail]
         for r in rows],
    )
