"""Seed replicates of a training recipe: ``mfsg train --config X --seeds 0,1,2 --out DIR`` writes
``DIR/seed<k>/eval.jsonl``; this module reads such folders and states a figure over the seeds.

For each N it gives the starting players' value (iteration −1: the players before any PPO update),
the final players' (the last evaluated iteration) and the PPO gain (final − start), each as the mean
over seeds with a 95 % t-interval over seeds (:func:`mfsg.metrics.mean_ci`): the interval of a figure
that chance enters through the training seed. Two recipes compare by their per-seed figures
(:func:`compare`): Welch's difference of means with its 95 % interval.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

from mfsg.config import ConfigError
from mfsg.metrics import CONFIDENCE, mean_ci


def seed_folders(folder: str | Path) -> list[Path]:
    """The ``seed<k>`` folders of a replicate folder that hold an ``eval.jsonl``, in seed order."""
    folder = Path(folder)
    found = sorted((p for p in folder.glob("seed*") if (p / "eval.jsonl").exists()), key=lambda p: int(p.name[4:]))
    if not found:
        raise ConfigError(f"replicates={str(folder)!r} is invalid: no seed<k>/eval.jsonl under it "
                          "(mfsg train --config X --seeds 0,1,2 --out DIR writes them)")
    return found


def _rows(path: Path, mode: str, metric: str) -> dict[int, dict[int, float]]:
    """iteration -> N -> metric of the ``mode`` rows of one run's eval.jsonl."""
    out: dict[int, dict[int, float]] = {}
    for line in (path / "eval.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["mode"] == mode:
            out.setdefault(r["iteration"], {})[r["n_ue"]] = r[metric]
    return out


def per_seed(folder: str | Path, metric: str = "genie_fraction", mode: str = "greedy") -> dict[str, dict]:
    """seed folder name -> {"start": {N: value}, "final": {N: value}, "final_iteration": it}."""
    out = {}
    for path in seed_folders(folder):
        rows = _rows(path, mode, metric)
        if -1 not in rows:
            raise ConfigError(f"replicates={str(path)!r} is invalid: eval.jsonl has no iteration -1 (starting players)")
        last = max(rows)
        out[path.name] = {"start": rows[-1], "final": rows[last], "final_iteration": last}
    return out


def summary(folder: str | Path, metric: str = "genie_fraction", mode: str = "greedy") -> list[dict]:
    """One row per N: start, final and gain (final − start) as mean and 95 % half-width over seeds."""
    return summarize(per_seed(folder, metric, mode))


def summarize(runs: dict[str, dict]) -> list[dict]:
    """:func:`summary` of runs already read by :func:`per_seed` (the N every seed evaluated)."""
    ns = sorted(set.intersection(*(set(r["final"]) & set(r["start"]) for r in runs.values())))
    rows = []
    for n in ns:
        start = [r["start"][n] for r in runs.values()]
        final = [r["final"][n] for r in runs.values()]
        gain = [f - s for f, s in zip(final, start, strict=True)]
        row = {"n_ue": n, "seeds": len(final)}
        for name, xs in (("start", start), ("final", final), ("gain", gain)):
            est = mean_ci(xs)
            row[name], row[f"{name}_ci95"] = est.mean, est.ci95
        row["final_min"], row["final_max"] = min(final), max(final)
        rows.append(row)
    return rows


def compare(a: list[float], b: list[float]) -> dict:
    """Mean of ``a`` − mean of ``b`` with Welch's 95 % half-width (nan with fewer than 2 values each)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "ci95": math.nan}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return {"diff": diff, "ci95": 0.0}
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return {"diff": diff, "ci95": float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * se)}
