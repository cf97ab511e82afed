"""The Ray executor (the optional ``[scale]`` extra; ``nox -s scale``): the same files as the serial executor
for an experiment and for seed replicates, a failed unit named while the others are kept, and a local Ray
instance that the command starts and stops itself. Skipped when Ray is not installed."""

import csv
import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from mfsg.cli import main  # noqa: E402
from mfsg.experiments.common import CONFIG_DIR, REPO  # noqa: E402
from mfsg.experiments.executor import Executor, ExecutorConfig, Unit  # noqa: E402

pytestmark = pytest.mark.slow  # each test starts a local Ray instance (seconds to a minute)

MEASURED = {"decision_latency_ms", "decisions_per_s",  # E1 rows: timings of this run, not results
            "rollout_s", "update_s", "wall_s"}  # training logs: the same
RAY = ["--executor", "ray", "--num-cpus", "2"]


def _csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k not in MEASURED} for r in csv.DictReader(fh)]


def _jsonl(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(ln).items() if k not in MEASURED} for ln in path.read_text().splitlines()]


def test_experiment_files_same_bytes_as_serial_and_local_ray_stopped(tmp_path):
    config = tmp_path / "e1.toml"
    config.write_text('p_arrival = [0.5]\nn_ue = [2, 3]\nmethods = ["genie", "sr-grant", "mfsg"]\n'
                      "baseline_episodes = 20\nlearned_episodes = 2\nseed = 7\n"
                      f'[checkpoints]\nmfsg = "{REPO / "experiments/checkpoints/mfsg-default"}"\n')
    outs = {kind: tmp_path / kind for kind in ("serial", "ray")}
    assert not ray.is_initialized()
    assert main(["experiment", "e1", "--config", str(config), "--out", str(outs["serial"])]) == 0
    assert main(["experiment", "e1", "--config", str(config), "--out", str(outs["ray"]), *RAY]) == 0
    assert not ray.is_initialized()  # started locally without --address, and stopped
    rows = {k: _csv(o / "e1.csv") for k, o in outs.items()}
    assert len(rows["serial"]) == 2 * 3 and rows["ray"] == rows["serial"]
    for fig in ("vs_n_ue.svg", "vs_p_arrival.svg"):
        assert (outs["ray"] / fig).read_bytes() == (outs["serial"] / fig).read_bytes()
    docs = {k: json.loads((o / "result.json").read_text()) for k, o in outs.items()}
    for key in ("ours", "mean_over_grid", "config", "seeds", "methods"):
        assert docs["ray"][key] == docs["serial"][key], key


def test_seed_replicates_same_bytes_as_serial(tmp_path):
    args = ["train", "--config", str(CONFIG_DIR / "ci_mlp.toml"), "--seeds", "0,1,2", "--iterations", "2",
            "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "serial")]) == 0
    assert main([*args, "--out", str(tmp_path / "ray"), *RAY]) == 0
    for k in range(3):
        a, b = tmp_path / "serial" / f"seed{k}", tmp_path / "ray" / f"seed{k}"
        for f in ("leader.safetensors", "follower.safetensors", "optimizers.safetensors"):
            assert (b / "final" / f).read_bytes() == (a / "final" / f).read_bytes(), (k, f)
        assert (b / "config.json").read_bytes() == (a / "config.json").read_bytes()
        for log in ("metrics.jsonl", "eval.jsonl"):
            assert _jsonl(b / log) == _jsonl(a / log), (k, log)
    seed0, seed1 = ((tmp_path / "ray" / f"seed{k}" / "final" / "leader.safetensors").read_bytes() for k in (0, 1))
    assert seed0 != seed1


def test_failed_ray_unit_is_named_and_others_kept(capsys):
    ex = Executor(ExecutorConfig(kind="ray", num_cpus=2))
    try:
        # builtins: a unit's function must be importable where Ray runs it (this test module is not)
        out = ex.map([Unit("one", abs, (-4,)), Unit("two", int, ("five",)), Unit("three", abs, (-9,))], "demo")
    finally:
        ex.close()
    assert out == {"one": 4, "three": 9} and list(out) == ["one", "three"]
    assert ex.failures == {"two": "ValueError: invalid literal for int() with base 10: 'five'"}
    err = capsys.readouterr().err
    assert "demo: 3/3 units done" in err and "demo: unit 'two' failed: ValueError: invalid literal" in err
    assert not ray.is_initialized()
