"""The serial executor of independent units (mfsg.experiments.executor) and the commands that use it:
results in unit order, a failed unit named with its error while the others are kept, progress lines,
``mfsg train --seeds``, and the one-line errors of bad executor options (Ray's own tests: tests/scale)."""

import csv
import json
import sys
from pathlib import Path

import pytest

from mfsg.cli import main
from mfsg.config import ConfigError
from mfsg.experiments import e1_sweep, executor
from mfsg.experiments.common import CONFIG_DIR
from mfsg.experiments.executor import Executor, ExecutorConfig, Unit


def _square(x: int) -> int:
    return x * x


def _fail(x: int) -> int:
    raise RuntimeError(f"unit input {x} is bad")


def test_serial_results_in_unit_order_and_failures_named(capsys):
    ex = Executor()
    units = [Unit("a", _square, (3,)), Unit("b", _fail, (7,)), Unit("c", _square, (4,))]
    out = ex.map(units, "demo")
    assert list(out) == ["a", "c"] and out == {"a": 9, "c": 16}
    assert ex.failures == {"b": "RuntimeError: unit input 7 is bad"}
    err = capsys.readouterr().err
    assert "demo: 1/3 units done (a)" in err and "demo: 3/3 units done (c)" in err
    assert "demo: unit 'b' failed: RuntimeError: unit input 7 is bad" in err
    with pytest.raises(executor.UnitsFailed, match="1 of 3 units failed\n  b: RuntimeError: unit input 7 is bad"):
        ex.raise_failures()


def test_unit_names_must_be_distinct():
    with pytest.raises(ValueError, match="distinct"):
        Executor().map([Unit("a", _square, (1,)), Unit("a", _square, (2,))])


def test_current_is_serial_outside_a_command_and_the_configured_one_inside():
    assert executor.current().config.kind == "serial"
    with executor.using(ExecutorConfig()) as ex:
        assert executor.current() is ex
    assert executor.current() is not ex


@pytest.mark.parametrize(("kw", "match"), [
    ({"kind": "dask"}, "executor='dask' is invalid: allowed one of serial, ray"),
    ({"kind": "serial", "address": "auto"}, "allowed only with executor='ray'"),
    ({"kind": "ray", "num_cpus": -1}, "num_cpus=-1 is invalid"),
    ({"kind": "ray", "address": "auto", "num_cpus": 2}, "num_cpus is invalid with an address"),
])
def test_executor_config_rejects_bad_values(kw, match):
    with pytest.raises(ConfigError, match=match):
        ExecutorConfig(**kw)


def test_ray_missing_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[scale\]"'):
        with executor.using(ExecutorConfig(kind="ray")):
            pass


def test_cli_bad_executor_options_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--config", str(CONFIG_DIR / "ci_mlp.toml"), "--out", str(tmp_path), "--seeds", "0,0"]) == 2
    assert "--seeds='0,0' is invalid" in capsys.readouterr().err
    assert main(["train", "--config", str(CONFIG_DIR / "ci_mlp.toml"), "--out", str(tmp_path), "--address", "auto"]) == 2
    assert "--address" in capsys.readouterr().err


def test_train_seeds_one_replicate_per_folder(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--config", str(CONFIG_DIR / "ci_mlp.toml"), "--out", str(out), "--seeds", "3,5",
                 "--iterations", "1", "--no-progress"]) == 0
    summaries = json.loads(capsys.readouterr().out)
    assert list(summaries) == ["seed3", "seed5"]
    for k in (3, 5):
        assert json.loads((out / f"seed{k}" / "config.json").read_text())["run"]["seed"] == k
        assert (out / f"seed{k}" / "final" / "leader.safetensors").exists()
    a, b = ((out / f"seed{k}" / "final" / "leader.safetensors").read_bytes() for k in (3, 5))
    assert a != b  # the seed reaches the players


def test_experiment_keeps_other_units_when_one_fails(tmp_path, monkeypatch, capsys):
    cell = e1_sweep.cell

    def flaky(cfg, ev, methods, env, n, p):
        if n == 3:
            raise RuntimeError("no such cell")
        return cell(cfg, ev, methods, env, n, p)

    monkeypatch.setattr(e1_sweep, "cell", flaky)
    config = tmp_path / "e1.toml"
    config.write_text('p_arrival = [0.5]\nn_ue = [2, 3, 4]\nmethods = ["genie", "aloha"]\nbaseline_episodes = 4\n')
    out = tmp_path / "e1"
    assert main(["experiment", "e1", "--config", str(config), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 of 3 units failed" in err and "N=3 p_a=0.5: RuntimeError: no such cell" in err
    with open(out / "e1.csv") as fh:
        assert sorted({int(r["n_ue"]) for r in csv.DictReader(fh)}) == [2, 4]
    doc = json.loads(Path(out / "result.json").read_text())
    assert doc["failed_units"] == {"N=3 p_a=0.5": "RuntimeError: no such cell"}
