"""Bad files, bad options and reruns end in one line on stderr and exit 2, never a traceback or lost data.

:data:`BAD_INPUTS` lists every kind of bad input covered: for each, how to make it (from a tiny
trained MLP run) and what its one-line error must say. ``test_bad_input`` runs each through
:func:`mfsg.cli.main` in-process; ``test_damaged_files_never_give_a_traceback`` feeds random bytes
and truncations of a valid checkpoint and of a valid config to ``evaluate``, ``train`` and
``simulate``: each ends in exit 0 or in exit 2 with one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from mfsg.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "experiments" / "configs" / "ci_mlp.toml"
RUN_ITERATIONS = 1


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``mfsg ARGV`` in-process: (exit status, stdout, stderr); argparse's SystemExit is an exit status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def recipe_text() -> str:
    """experiments/configs/ci_mlp.toml made smaller still (fewer episodes, one evaluation N)."""
    text = CONFIG.read_text()
    for old, new in (("n_envs = 16", "n_envs = 4"), ("eval_episodes = 8", "eval_episodes = 2"),
                     ("eval_ns = [2, 4]", "eval_ns = [2]")):
        assert old in text
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny MLP run (one iteration): final/, checkpoint/, logs, and its config as recipe.toml."""
    out = tmp_path_factory.mktemp("run") / "run"
    recipe = write(out / "recipe.toml", recipe_text())
    code, _, err = run_cli(["train", "--config", str(recipe), "--out", str(out), "--iterations", str(RUN_ITERATIONS),
                            "--no-progress"])
    assert code == 0, err
    return out


def evaluate(ckpt: Path) -> list[str]:
    return ["evaluate", "--checkpoint", str(ckpt), "--n-ue", "2", "--p-arrival", "0.5", "--episodes", "2"]


def train(config: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(config), "--out", str(out), "--iterations", str(RUN_ITERATIONS), "--no-progress",
            *extra]


def simulate(*extra: str) -> list[str]:
    return ["simulate", "--protocol", "genie", "--episodes", "2", *extra]


def truncate(file: Path, keep: float = 0.5) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


def garble(file: Path) -> None:
    """Overwrite a stretch in the middle with bytes that are not JSON."""
    data = bytearray(file.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8] = b"\x00}{\xff]]\x07,"
    file.write_bytes(bytes(data))


def edit_state(file: Path, change: Callable[[dict], object]) -> None:
    """Rewrite a checkpoint's state.json after ``change`` (which edits the dict in place)."""
    state = json.loads(file.read_text())
    change(state)
    file.write_text(json.dumps(state))


def write(file: Path, data: bytes | str) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data if isinstance(data, bytes) else data.encode())
    return file


def set_hidden(state: dict) -> None:
    state["config"]["policy"]["mlp"]["hidden"] = 32


@dataclass(frozen=True)
class Bad:
    """One kind of bad input: ``make(run, tmp)`` damages a copy of the run and returns the argv;
    the one-line error must contain every string of ``says``."""

    make: Callable[[Path, Path], list[str]]
    says: tuple[str, ...]


BAD_INPUTS: dict[str, Bad] = {
    # checkpoints given to evaluate (final/ of the run)
    "truncated leader.safetensors": Bad(
        lambda r, t: (truncate(r / "final" / "leader.safetensors"), evaluate(r / "final"))[1],
        ("leader.safetensors", "is invalid", "cannot be loaded")),
    "leader.safetensors of random bytes": Bad(
        lambda r, t: (write(r / "final" / "leader.safetensors", bytes(range(256)) * 4), evaluate(r / "final"))[1],
        ("leader.safetensors", "cannot be loaded")),
    "leader.safetensors missing": Bad(
        lambda r, t: ((r / "final" / "leader.safetensors").unlink(), evaluate(r / "final"))[1],
        ("leader.safetensors", "no such file")),
    "empty follower.safetensors": Bad(
        lambda r, t: (write(r / "final" / "follower.safetensors", b""), evaluate(r / "final"))[1],
        ("follower.safetensors", "cannot be loaded")),
    "leader.safetensors holding the follower's weights": Bad(
        lambda r, t: (shutil.copy(r / "final" / "follower.safetensors", r / "final" / "leader.safetensors"),
                      evaluate(r / "final"))[1],
        ("leader.safetensors", "is invalid")),
    "garbled state.json": Bad(
        lambda r, t: (garble(r / "final" / "state.json"), evaluate(r / "final"))[1],
        ("state.json", "not readable as JSON")),
    "truncated state.json": Bad(
        lambda r, t: (truncate(r / "final" / "state.json", 0.3), evaluate(r / "final"))[1],
        ("state.json", "not readable as JSON")),
    "state.json not UTF-8": Bad(
        lambda r, t: (write(r / "final" / "state.json", b"\xff\xfe{}"), evaluate(r / "final"))[1],
        ("state.json", "not readable as JSON", "utf-8")),
    "state.json a JSON list": Bad(
        lambda r, t: (write(r / "final" / "state.json", "[1, 2]"), evaluate(r / "final"))[1],
        ("state.json", "a JSON list where an object is expected")),
    "state.json without its RNG state": Bad(
        lambda r, t: (edit_state(r / "final" / "state.json", lambda s: s.pop("rng")), evaluate(r / "final"))[1],
        ("state.json", "'rng' is missing")),
    "state.json with a damaged config table": Bad(
        lambda r, t: (edit_state(r / "final" / "state.json", lambda s: s.update(config={"policy": 3})),
                      evaluate(r / "final"))[1],
        ("--checkpoint=", "is invalid")),
    "state.json naming another model size": Bad(
        lambda r, t: (edit_state(r / "final" / "state.json", set_hidden), evaluate(r / "final"))[1],
        ("leader.safetensors", "cannot be loaded", "size mismatch")),
    "checkpoint folder without state.json": Bad(
        lambda r, t: evaluate(r), ("checkpoint=", "no state.json in that folder")),
    "checkpoint folder that does not exist": Bad(
        lambda r, t: evaluate(t / "nowhere"), ("checkpoint=", "no state.json in that folder")),
    "evaluate --episodes 0": Bad(
        lambda r, t: [*evaluate(r / "final"), "--episodes", "0"], ("--episodes=0 is invalid",)),
    # training configs
    "TOML syntax error in --config": Bad(
        lambda r, t: train(write(t / "bad.toml", "[run\niterations = 2\n"), t / "new"),
        ("bad.toml", "is invalid", "not a TOML file", "line 1")),
    "--config not UTF-8": Bad(
        lambda r, t: train(write(t / "bin.toml", b"\xff\xfe[run]"), t / "new"), ("bin.toml", "not a TOML file")),
    "--config a folder": Bad(lambda r, t: train(t, t / "new"), ("config=", "cannot be read")),
    "--config missing": Bad(lambda r, t: train(t / "none.toml", t / "new"), ("none.toml", "no such file")),
    "--config with a bad value": Bad(
        lambda r, t: train(write(t / "v.toml", recipe_text().replace("n_envs = 4", "n_envs = 0")), t / "new"),
        ("run.n_envs=0 is invalid",)),
    "--config with an unknown table": Bad(
        lambda r, t: train(write(t / "u.toml", recipe_text() + "\n[extra]\nx = 1\n"), t / "new"),
        ("[extra] is not a known table",)),
    # reruns
    "train --out holding a run, without --resume": Bad(
        lambda r, t: train(r / "recipe.toml", r), ("--out=", "already holds a run", "metrics.jsonl", "--overwrite")),
    "train --resume with --overwrite": Bad(
        lambda r, t: train(r / "recipe.toml", r, "--resume", "--overwrite"), ("--overwrite is invalid with --resume",)),
    "train --resume without a checkpoint": Bad(
        lambda r, t: train(r / "recipe.toml", t / "empty", "--resume"), ("--resume is invalid", "no checkpoint/")),
    "train --out a file": Bad(
        lambda r, t: train(r / "recipe.toml", write(t / "file", "x")), ("--out=", "it is a file")),
    "train --resume with truncated optimizers.safetensors": Bad(
        lambda r, t: (truncate(r / "checkpoint" / "optimizers.safetensors"), train(r / "recipe.toml", r, "--resume"))[1],
        ("optimizers.safetensors", "the optimizer state cannot be loaded")),
    "train --resume with a damaged RNG state": Bad(
        lambda r, t: (edit_state(r / "checkpoint" / "state.json", lambda s: s["rng"].update(torch=[999])),
                      train(r / "recipe.toml", r, "--resume"))[1],
        ("state.json", "'rng.torch' is not a random generator state")),
    "train --resume with a garbled metrics.jsonl": Bad(
        lambda r, t: (write(r / "metrics.jsonl", '{"iteration": 0}\n{"iter'), train(r / "recipe.toml", r, "--resume"))[1],
        ("metrics.jsonl", "line 2", "the log is damaged")),
    # simulate
    "simulate --config with a TOML syntax error": Bad(
        lambda r, t: simulate("--config", str(write(t / "s.toml", "[env\n"))), ("s.toml", "not a TOML file")),
    "simulate --config without an [env] table": Bad(
        lambda r, t: simulate("--config", str(write(t / "e.toml", "[run]\nseed = 1\n"))), ("e.toml", "no [env] table")),
    "simulate --config with a scenario option": Bad(
        lambda r, t: simulate("--config", str(CONFIG), "--n-ue", "3"), ("--n-ue is invalid with --config",)),
    "option value that is not a number": Bad(
        lambda r, t: simulate("--n-ue", "three"), ("argument --n-ue", "invalid int value", "--help")),
    "unknown protocol": Bad(
        lambda r, t: ["simulate", "--protocol", "csma"], ("--protocol='csma' is invalid", "genie")),
    "missing required option": Bad(lambda r, t: ["evaluate", "--n-ue", "2"], ("required", "--checkpoint")),
}


def test_at_least_twenty_kinds():
    assert len(BAD_INPUTS) >= 20


def assert_one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("mfsg"), err
    return lines[0]


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input(kind, trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    bad = BAD_INPUTS[kind]
    argv = bad.make(run, tmp_path)
    damaged = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, _, err = run_cli(argv)
    line = assert_one_line_error(code, err)
    for text in bad.says:
        assert text in line, f"{kind}: {text!r} not in {line!r}"
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == damaged, f"{kind}: a refused command changed the run's files"


def test_overwrite_replaces_a_run_explicitly(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "notes.txt").write_text("mine")
    (run / "metrics.jsonl").write_text('{"iteration": 0, "marker": "old run"}\n')
    code, _, err = run_cli(train(run / "recipe.toml", run, "--overwrite"))
    assert code == 0, err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == RUN_ITERATIONS and "marker" not in rows[0]  # replaced, not appended to
    assert (run / "notes.txt").read_text() == "mine"  # only the earlier run's files are deleted


# -- random bytes and truncations ------------------------------------------------------------------

TARGETS = {  # what is damaged -> (file in the run, argv)
    "evaluate: leader.safetensors": ("final/leader.safetensors", lambda r, c: evaluate(r / "final")),
    "evaluate: follower.safetensors": ("final/follower.safetensors", lambda r, c: evaluate(r / "final")),
    "evaluate: state.json": ("final/state.json", lambda r, c: evaluate(r / "final")),
    "train --resume: state.json": ("checkpoint/state.json",
                                   lambda r, c: train(r / "recipe.toml", r, "--resume")),
    "train --resume: optimizers.safetensors": ("checkpoint/optimizers.safetensors",
                                               lambda r, c: train(r / "recipe.toml", r, "--resume")),
    "train --resume: leader.safetensors": ("checkpoint/leader.safetensors", lambda r, c: train(r / "recipe.toml", r, "--resume")),
    "train: config": ("config.toml", lambda r, c: train(c, r.parent / "fresh")),
    "simulate: config": ("config.toml", lambda r, c: simulate("--config", str(c))),
}


@st.composite
def damage(draw, data: bytes) -> bytes:
    """A truncation, a stretch of random bytes, random bytes only, or a few flipped bytes of ``data``."""
    kind = draw(st.sampled_from(["truncate", "splice", "random", "flip"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "splice":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=32)) + data[at + draw(st.integers(0, 32)):]
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(0, len(out) - 1)))
        if out:
            out[i] ^= draw(st.integers(1, 255))
    return bytes(out)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data(), target=st.sampled_from(list(TARGETS)))
def test_damaged_files_never_give_a_traceback(trained, data, target):
    name, argv = TARGETS[target]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(trained, run)
        config = write(run / "config.toml", recipe_text())
        file = run / name
        damaged = data.draw(damage(file.read_bytes()), label="bytes")
        # a damaged config may still be valid: keep its sizes those of the recipe (no number it does not have)
        numbers = set(re.findall(rb"[0-9]+", recipe_text().encode()))
        assume(not name.endswith(".toml") or set(re.findall(rb"[0-9]+", damaged)) <= numbers)
        file.write_bytes(damaged)
        code, _, err = run_cli(argv(run, config))
    assert code in (0, 2), err
    event(f"{target}: exit {code}")
    if code == 2:
        assert_one_line_error(code, err)
