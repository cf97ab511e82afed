"""Structured results of the equilibrium checks: one row per (game, check), a table and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

__all__ = ["OPS", "CheckResult", "check", "failed", "format_table", "to_json", "all_passed"]

OPS = {
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
}


@dataclass(frozen=True)
class CheckResult:
    """``value op tolerance`` decides the verdict (a NaN value fails)."""

    game: str
    check: str
    value: float
    tolerance: float
    op: str
    verdict: str
    path: str = ""
    detail: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def check(
    game: str, name: str, value: float, tolerance: float, op: str = "<=", *, path: str = "", detail: str = "", **extra
) -> CheckResult:
    """Build a :class:`CheckResult`, deciding the verdict."""
    if op not in OPS:
        raise ValueError(f"op={op!r} is invalid: allowed one of {', '.join(OPS)}")
    value = float(value)
    ok = math.isfinite(value) and OPS[op](value, float(tolerance))
    return CheckResult(game, name, value, float(tolerance), op, "pass" if ok else "fail", path, detail, extra)


def failed(game: str, name: str, reason: str, *, path: str = "") -> CheckResult:
    """A check that could not be evaluated (a solver failed): it fails, with the reason."""
    return CheckResult(game, name, float("nan"), float("nan"), "<=", "fail", path, reason)


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:.3e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.4g}"


def format_table(results: list[CheckResult]) -> str:
    """Plain-text table: game, check, path, value, op tolerance, verdict, detail."""
    cols = ["game", "check", "path", "value", "tolerance", "verdict", "detail"]
    rows = [
        [r.game, r.check, r.path, _fmt(r.value), f"{r.op} {_fmt(r.tolerance)}", r.verdict.upper(), r.detail]
        for r in results
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)).rstrip()  # noqa: E731
    n_fail = sum(not r.passed for r in results)
    summary = f"{len(results)} checks, {len(results) - n_fail} passed, {n_fail} failed"
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows] + ["", summary])


def to_json(results: list[CheckResult]) -> str:
    def clean(d):
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    return json.dumps([clean(asdict(r)) for r in results], indent=2)


def all_passed(results: list[CheckResult]) -> bool:
    return all(r.passed for r in results)
