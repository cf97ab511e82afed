"""A training run killed with SIGKILL and resumed reaches bitwise the same result as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "experiments" / "configs"
CONFIG = CONFIGS / "ci_mlp.toml"
# (config, iterations, kill once this checkpoint iteration exists)
RUNS = {"mlp": (CONFIG, 120, 5), "language": (CONFIGS / "ci_language.toml", 12, 2)}


def _train(out: Path, *extra: str, config: Path = CONFIG, iterations: int = 120) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mfsg", "train", "--config", str(config), "--out", str(out),
           "--iterations", str(iterations), "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _checkpoint_iteration(out: Path) -> int:
    try:
        return json.loads((out / "checkpoint" / "state.json").read_text())["iteration"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1


def _deterministic(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith("_s") and "latency" not in k and "per_s" not in k} for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(RUNS))
def test_kill_and_resume_is_bitwise_identical(tmp_path, kind):
    config, iterations, kill_at = RUNS[kind]
    ref = tmp_path / "uninterrupted"
    assert _train(ref, config=config, iterations=iterations).wait(timeout=900) == 0

    killed = tmp_path / "killed"
    proc = _train(killed, config=config, iterations=iterations)
    deadline = time.time() + 600
    while _checkpoint_iteration(killed) < kill_at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = _checkpoint_iteration(killed)
    assert kill_at <= stopped_at < iterations

    resumed = _train(killed, "--resume", config=config, iterations=iterations)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()
    for name in ("metrics.jsonl", "eval.jsonl"):  # first, as they show where the runs part
        _assert_same_rows(name, _deterministic(killed / name), _deterministic(ref / name))
    for name in ("leader.safetensors", "follower.safetensors"):
        assert (killed / "final" / name).read_bytes() == (ref / "final" / name).read_bytes(), name


def _assert_same_rows(name: str, got: list[dict], want: list[dict]) -> None:
    """Row by row, naming the first difference (pytest's diff of two long lists of dicts takes hours)."""
    assert len(got) == len(want), f"{name}: {len(got)} rows after resume, {len(want)} uninterrupted"
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            pytest.fail(f"{name} row {i} differs in {keys}: resumed {[a.get(k) for k in keys]} vs "
                        f"uninterrupted {[b.get(k) for k in keys]}")


def test_resume_without_checkpoint_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mfsg", "train", "--config", str(CONFIG), "--out",
                           str(tmp_path / "none"), "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_config_value_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.read_text().replace("n_envs = 16", "n_envs = 0"))
    proc = subprocess.run([sys.executable, "-m", "mfsg", "train", "--config", str(bad), "--out",
                           str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "run.n_envs=0 is invalid" in proc.stderr and "Traceback" not in proc.stderr


def _save(path, value: float, iteration: int):
    from mfsg.learn import checkpoint

    lin = torch.nn.Linear(2, 1)
    torch.nn.init.constant_(lin.weight, value)
    checkpoint.save(path, modules={"m": lin}, optimizers={}, iteration=iteration)


def _load_iteration(path) -> int:
    from mfsg.learn import checkpoint

    return checkpoint.load(path, modules={"m": torch.nn.Linear(2, 1)})["iteration"]


def test_save_after_a_kill_between_the_renames_keeps_a_checkpoint(tmp_path):
    """A kill after save()'s first rename leaves only <name>.old: it is read, and the next save succeeds."""
    ckpt = tmp_path / "checkpoint"
    _save(ckpt, 1.0, iteration=3)
    os.replace(ckpt, tmp_path / "checkpoint.old")  # the state a kill between the two renames leaves
    assert _load_iteration(ckpt) == 3
    _save(ckpt, 2.0, iteration=4)  # a stale .old must not stop the next save
    assert _load_iteration(ckpt) == 4 and not (tmp_path / "checkpoint.old").exists()


def test_save_clears_a_stale_old_folder(tmp_path):
    ckpt = tmp_path / "checkpoint"
    _save(ckpt, 1.0, iteration=1)
    (tmp_path / "checkpoint.old").mkdir()
    (tmp_path / "checkpoint.old" / "junk").write_text("left by a kill")
    _save(ckpt, 2.0, iteration=2)
    assert _load_iteration(ckpt) == 2
