"""Shared pieces of the experiment runners: config loading with a ``[quick]`` override
table, checkpoint paths, result files (CSV + JSON with the command, git commit, seeds and
wall-clock) and figures (PNG + SVG).

A config file ``experiments/configs/eK.toml`` holds the full-budget values at top level and the
quick-mode values in ``[quick]`` (same field names; a nested table such as ``[quick.checkpoints]``
updates its table key by key). Relative paths in configs are relative to the repository root.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import platform
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mfsg.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "experiments" / "configs"
RESULTS_DIR = REPO / "experiments" / "results"
QUICK = "quick"
RESULT_JSON = "result.json"
FIGURE_FORMATS = ("svg",)  # vector, smaller than a PNG of the same plot, diff-friendly
FIGURE_DPI = 120

__all__ = ["REPO", "CONFIG_DIR", "RESULTS_DIR", "load_experiment_config", "check_names", "check_list", "check_bool",
           "check_checkpoints", "checkpoint_path", "check_train_config", "changed_since", "checkpoint_status",
           "repo_path", "default_out", "Results", "json_safe", "new_figure", "progress"]


# ---------------------------------------------------------------------------- configs
def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = {**out[k], **v} if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def load_experiment_config(cls: type, path: str | Path, quick: bool, prefix: str) -> Any:
    """Build the frozen dataclass ``cls`` from a TOML file; ``quick`` applies its ``[quick]`` table.

    Unknown keys (at top level or in ``[quick]``) raise :class:`ConfigError` naming ``prefix.key``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config={str(path)!r} is invalid: no such file")
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    over = data.pop(QUICK, {})
    if not isinstance(over, Mapping):
        raise ConfigError(f"{prefix}.{QUICK}={over!r} is invalid: allowed a table of field overrides")
    names = {f.name for f in dataclasses.fields(cls)}
    for where, table in ((prefix, data), (f"{prefix}.{QUICK}", over)):
        unknown = sorted(set(table) - names)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]} is not a known field: allowed {', '.join(sorted(names))}")
    return cls(**(_merge(data, over) if quick else data))


def check_names(field: str, values: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A non-empty list of distinct names from ``allowed`` (as a tuple), or ConfigError."""
    if (not isinstance(values, (list, tuple)) or not values or len(set(values)) != len(values)
            or any(v not in allowed for v in values)):
        raise ConfigError(f"{field}={values!r} is invalid: allowed a non-empty list of distinct names from "
                          + ", ".join(allowed))
    return tuple(values)


def check_list(field: str, values: Any, check_one) -> tuple:
    """A non-empty list whose entries pass ``check_one(f"{field}[i]", value)``, as a tuple."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{field}={values!r} is invalid: allowed a non-empty list")
    for i, v in enumerate(values):
        check_one(f"{field}[{i}]", v)
    return tuple(values)


def check_bool(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{field}={value!r} is invalid: allowed true or false")


def check_checkpoints(field: str, value: Any, allowed: tuple[str, ...]) -> dict[str, str]:
    """A table ``name = "path"`` with names from ``allowed`` ("" means: not available)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{field}={value!r} is invalid: allowed a table of name = \"path\"")
    for k, v in value.items():
        if k not in allowed:
            raise ConfigError(f"{field}.{k} is not a known checkpoint: allowed {', '.join(allowed)}")
        if not isinstance(v, str):
            raise ConfigError(f"{field}.{k}={v!r} is invalid: allowed a path string (\"\" = not available)")
    return dict(value)


def checkpoint_path(field: str, path: str) -> Path:
    """The checkpoint folder ``path`` (relative to the repository root), which must hold a run's
    ``state.json``; otherwise a one-line ConfigError naming ``field`` and the path."""
    p = Path(path)
    p = p if p.is_absolute() else REPO / p
    if not (p / "state.json").exists():
        raise ConfigError(f"{field}={path!r} is invalid: no checkpoint there (allowed: a run's final/ folder "
                          "with state.json; override with --checkpoint NAME=PATH)")
    return p


def repo_path(path: str | Path) -> Path:
    """``path`` as given if absolute, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else REPO / p


def check_train_config(field: str, path: Any) -> str:
    """The path of an existing training config (``experiments/configs/X.toml``), or a one-line
    ConfigError naming ``field``."""
    if not (isinstance(path, str) and path and repo_path(path).is_file()):
        raise ConfigError(f"{field}={path!r} is invalid: allowed the path of a training config (no such file)")
    return path


def changed_since(made: dict, config: str | Path) -> dict:
    """How the training config stored with a run or checkpoint (``made``) differs from what the
    config file gives now (dotted field -> (now, then)); empty when the run is current."""
    from mfsg.learn.config import changed_fields, load_train_config, train_config_from_dict

    return changed_fields(train_config_from_dict(made), load_train_config(repo_path(config)))


def checkpoint_status(config: str, checkpoint: str) -> str:
    """"" when the checkpoint folder exists and was trained by what ``config`` gives now; otherwise
    why it cannot stand for that config (not trained yet, or made from an earlier recipe)."""
    stem = Path(config).stem
    state = repo_path(checkpoint) / "state.json"
    if not state.exists():
        return (f"not trained yet: no checkpoint at {checkpoint} (mfsg train --config {config} --out runs/{stem}, "
                "then its final/)")
    diff = changed_since(json.loads(state.read_text())["config"], config)
    if diff:
        return (f"{checkpoint} was made from an earlier recipe than {config} gives now (differs in "
                f"{', '.join(diff)}): to be rerun on the current default")
    return ""


def default_out(name: str, quick: bool) -> Path:
    """``experiments/results/<name>/`` (full) or ``experiments/results/<name>/quick/``."""
    return RESULTS_DIR / name / QUICK if quick else RESULTS_DIR / name


def progress(message: str) -> None:
    """One progress line on stderr (long full-budget runs)."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- results
def json_safe(v: Any) -> Any:
    """NaN/inf -> None, numpy scalars and tuples -> plain JSON values, recursively."""
    if isinstance(v, Mapping):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def git_commit() -> dict:
    """HEAD commit of the repository and whether the working tree differs from it (``dirty``), not
    counting the committed result files under ``experiments/results/``: they are the experiments'
    outputs, which one experiment of a series rewrites before the next one starts."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    outputs = RESULTS_DIR.relative_to(REPO).as_posix()
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){outputs}")
    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(changed)}


def _cell(v: Any) -> Any:
    v = json_safe(v)
    return "" if v is None else v


class Results:
    """The output folder of one experiment run: CSV tables, figures and ``result.json``."""

    def __init__(self, name: str, out: str | Path, *, quick: bool, config: Any, argv: list[str] | None = None):
        self.name, self.out, self.quick, self.config = name, Path(out), quick, config
        self.out.mkdir(parents=True, exist_ok=True)
        self.command = "mfsg " + shlex.join(argv if argv is not None else sys.argv[1:])
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.git = git_commit()  # before this run writes its own (tracked) result files
        self.t0 = time.perf_counter()
        self.files: list[str] = []

    def table(self, stem: str, rows: list[dict]) -> Path:
        """Write ``rows`` as ``<stem>.csv`` (columns in first-seen order; None/NaN as empty cells)."""
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        path = self.out / f"{stem}.csv"
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({k: _cell(r.get(k)) for k in cols})
        self.files.append(path.name)
        return path

    def figure(self, fig, stem: str) -> list[Path]:
        """Save a figure of :func:`new_figure` as ``<stem>.<fmt>`` for each of :data:`FIGURE_FORMATS`."""
        import matplotlib

        paths = []
        with matplotlib.rc_context({"svg.hashsalt": "mfsg"}):  # stable SVG ids: diff-friendly committed files
            for fmt in FIGURE_FORMATS:
                path = self.out / f"{stem}.{fmt}"
                meta = {"Date": None} if fmt == "svg" else {"Software": None}  # no build date: reproducible files
                fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight", metadata=meta)
                paths.append(path)
                self.files.append(path.name)
        return paths

    def finish(self, summary: dict, *, seeds: dict) -> dict:
        """Write ``result.json`` (summary, provenance) and return it."""
        cfg = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else self.config
        doc = {
            "experiment": self.name,
            "mode": QUICK if self.quick else "full",
            "command": self.command,
            "git": self.git,
            "started_utc": self.started,
            "wall_clock_s": round(time.perf_counter() - self.t0, 3),
            "seeds": seeds,
            "config": cfg,
            "versions": _versions(),
            "files": sorted(set(self.files)),
            **summary,
        }
        doc = json_safe(doc)
        (self.out / RESULT_JSON).write_text(json.dumps(doc, indent=1) + "\n")
        return doc


def _versions() -> dict:
    import numpy
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.4, height: float = 4.0, **kw):
    """(figure, axes) built without pyplot, so no global backend is switched (safe inside notebooks)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    return fig, axes
