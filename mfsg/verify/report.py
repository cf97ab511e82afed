"""Structured results of the equilibrium checks: one row per (game, check), a table, JSON and an exit code.

Every row has one of three verdicts:

- ``pass``: the condition holds within its tolerance;
- ``fail``: the condition is violated beyond its tolerance;
- ``inconclusive``: the data cannot decide. A *degenerate* value is inconclusive, never a pass or a
  fail, and says why: 0/0, NaN or infinity, a singular or unconverged solve, a direction of zero norm,
  or (statistical rows) a confidence interval that straddles the tolerance.

:func:`exit_code` maps the rows to the exit status of ``mfsg verify``: 0 when every row passes, 1
when any row fails, :data:`EXIT_INCONCLUSIVE` (3) when none fails and some are inconclusive.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

__all__ = [
    "OPS",
    "VERDICTS",
    "EXIT_PASS",
    "EXIT_FAIL",
    "EXIT_INCONCLUSIVE",
    "CheckResult",
    "check",
    "inconclusive",
    "ratio_check",
    "interval_check",
    "equivalence_check",
    "episodes_to_decide",
    "format_table",
    "to_json",
    "all_passed",
    "counts",
    "exit_code",
]

OPS = {
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
}
VERDICTS = ("pass", "fail", "inconclusive")
EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE = 0, 1, 3


@dataclass(frozen=True)
class CheckResult:
    """``value op tolerance`` decides the verdict; ``detail`` says what was measured (and, for an
    inconclusive row, why it could not decide)."""

    game: str
    check: str
    value: float
    tolerance: float
    op: str
    verdict: str
    path: str = ""
    detail: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r} is invalid: allowed one of {', '.join(VERDICTS)}")

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    @property
    def inconclusive(self) -> bool:
        return self.verdict == "inconclusive"


def _op(op: str) -> None:
    if op not in OPS:
        raise ValueError(f"op={op!r} is invalid: allowed one of {', '.join(OPS)}")


def check(
    game: str, name: str, value: float, tolerance: float, op: str = "<=", *, path: str = "", detail: str = "", **extra
) -> CheckResult:
    """A row decided by ``value op tolerance``; a non-finite value is inconclusive (degenerate)."""
    _op(op)
    value = float(value)
    if not math.isfinite(value):
        why = f"degenerate: value is {value}"
        return CheckResult(game, name, value, float(tolerance), op, "inconclusive", path,
                           f"{detail}; {why}" if detail else why, extra)
    verdict = "pass" if OPS[op](value, float(tolerance)) else "fail"
    return CheckResult(game, name, value, float(tolerance), op, verdict, path, detail, extra)


def inconclusive(
    game: str, name: str, reason: str, *, path: str = "", value: float = math.nan, tolerance: float = math.nan,
    op: str = "<=", **extra
) -> CheckResult:
    """A row the data cannot decide (a solver failed, a quantity is degenerate), with the reason."""
    _op(op)
    return CheckResult(game, name, float(value), float(tolerance), op, "inconclusive", path, reason, extra)


def ratio_check(
    game: str, name: str, numerator: float, denominator: float, tolerance: float, *, path: str = "",
    detail: str = "", **extra
) -> CheckResult:
    """``numerator / denominator <= tolerance``; a zero or non-finite denominator is inconclusive (0/0)."""
    num, den = float(numerator), float(denominator)
    if not (math.isfinite(num) and math.isfinite(den)) or den == 0.0:
        why = f"degenerate: {num:.3g}/{den:.3g}"
        return inconclusive(game, name, f"{detail}; {why}" if detail else why, path=path, tolerance=tolerance,
                            numerator=num, denominator=den, **extra)
    return check(game, name, num / den, tolerance, path=path, detail=detail, numerator=num, denominator=den, **extra)


def interval_check(
    game: str, name: str, estimate: float, half_width: float, threshold: float, op: str = "<", *, path: str = "",
    detail: str = "", **extra
) -> CheckResult:
    """``estimate op threshold`` decided on its confidence interval [estimate ± half_width]: pass when the whole
    interval satisfies it, fail when the whole interval violates it, inconclusive when it straddles."""
    _op(op)
    est, hw = float(estimate), float(half_width)
    if not (math.isfinite(est) and math.isfinite(hw)):
        return inconclusive(game, name, f"{detail}; degenerate: {est:.3g} ± {hw:.3g}", path=path, value=est,
                            tolerance=threshold, op=op, **extra)
    lo, hi = est - hw, est + hw
    holds_all = OPS[op](hi, threshold) if op in ("<", "<=") else OPS[op](lo, threshold)
    holds_none = not (OPS[op](lo, threshold) if op in ("<", "<=") else OPS[op](hi, threshold))
    verdict = "pass" if holds_all else ("fail" if holds_none else "inconclusive")
    text = f"{detail}; CI [{lo:.3g}, {hi:.3g}]" + ("; the interval straddles the threshold" if verdict == "inconclusive"
                                                 else "")
    return CheckResult(game, name, est, float(threshold), op, verdict, path, text, {"half_width": hw, **extra})


def episodes_to_decide(mean, half_width, tol: float, episodes: int) -> float:
    """Episodes an equivalence test would need for every coordinate's interval to leave the boundary ±tol
    (half-widths shrink as 1/√episodes); inf where a mean sits on the boundary."""
    worst = 0.0
    for m, hw in zip(mean, half_width, strict=True):
        gap = abs(abs(float(m)) - tol)
        if hw <= gap:
            continue
        worst = max(worst, math.inf if gap == 0 else episodes * (hw / gap) ** 2)
    return worst


def equivalence_check(
    game: str, name: str, mean, half_width, tol: float, *, episodes: int, path: str = "stochastic",
    detail: str = "", **extra
) -> CheckResult:
    """An equivalence test of "this quantity is 0" (every coordinate): pass iff every confidence interval
    lies inside [−tol, tol], fail iff some interval lies outside it, else inconclusive, with the number
    of episodes that would decide. ``value`` is max_i |mean_i| + half_width_i."""
    mean = [float(m) for m in mean]
    hw = [float(h) for h in half_width]
    if not all(math.isfinite(v) for v in mean + hw) or not math.isfinite(tol) or tol <= 0:
        return inconclusive(game, name, f"{detail}; degenerate: non-finite estimate or tolerance {tol:.3g}", path=path,
                            tolerance=tol, **extra)
    upper = max(abs(m) + h for m, h in zip(mean, hw, strict=True))
    outside = any(abs(m) - h > tol for m, h in zip(mean, hw, strict=True))
    verdict = "pass" if upper <= tol else ("fail" if outside else "inconclusive")
    text = detail
    need = None
    if verdict == "inconclusive":
        need = episodes_to_decide(mean, hw, tol, episodes)
        text += f"; a CI straddles ±tol: about {need:.3g} episodes per estimate would decide"
    return CheckResult(game, name, upper, float(tol), "<=", verdict, path, text,
                       {"episodes": episodes, "episodes_to_decide": need, **extra})


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:.3e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.4g}"


def counts(results: list[CheckResult]) -> dict[str, int]:
    return {v: sum(r.verdict == v for r in results) for v in VERDICTS}


def format_table(results: list[CheckResult]) -> str:
    """Plain-text table: game, check, path, value, op tolerance, verdict, detail; then the counts."""
    cols = ["game", "check", "path", "value", "tolerance", "verdict", "detail"]
    rows = [
        [r.game, r.check, r.path, _fmt(r.value), f"{r.op} {_fmt(r.tolerance)}", r.verdict.upper(), r.detail]
        for r in results
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)).rstrip()  # noqa: E731
    c = counts(results)
    summary = f"{len(results)} checks, {c['pass']} passed, {c['fail']} failed, {c['inconclusive']} inconclusive"
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows] + ["", summary])


def to_json(results: list[CheckResult]) -> str:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps([clean(asdict(r)) for r in results], indent=2)


def all_passed(results: list[CheckResult]) -> bool:
    return all(r.passed for r in results)


def exit_code(results: list[CheckResult]) -> int:
    """0: every row passes; 1: some row fails; 3: none fails, some are inconclusive."""
    if any(r.failed for r in results):
        return EXIT_FAIL
    if any(r.inconclusive for r in results):
        return EXIT_INCONCLUSIVE
    return EXIT_PASS
