"""policy.init_checkpoint: PPO starts from saved players, evaluated as iteration -1 (model §6)."""

import json

import pytest

from mfsg.config import ConfigError
from mfsg.learn.config import load_train_config
from mfsg.learn.train import Trainer

CI_MLP = "experiments/configs/ci_mlp.toml"


def _evals(out, it):
    rows = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    return {(r["n_ue"], r["mode"]): r["throughput"] for r in rows if r["iteration"] == it}


def _with(cfg, **policy):
    import dataclasses

    return dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, **policy))


def test_a_run_started_from_another_runs_players_evaluates_them_as_iteration_minus_one(tmp_path):
    cfg = load_train_config(CI_MLP)
    Trainer(cfg, tmp_path / "a").run(progress=False)
    a_last = _evals(tmp_path / "a", cfg.run.iterations - 1)
    b = _with(cfg, init_checkpoint=str(tmp_path / "a" / "final"))
    Trainer(b, tmp_path / "b").run(progress=False)
    assert _evals(tmp_path / "b", -1) == a_last
    fresh = _evals(tmp_path / "a", -1)
    assert fresh != a_last, "the test needs trained players that differ from fresh ones"
    assert json.loads((tmp_path / "b" / "init.json").read_text())["left_at_initial_values"] == []


def test_players_of_another_shape_are_refused_naming_the_field(tmp_path):
    import dataclasses

    cfg = load_train_config(CI_MLP)
    Trainer(cfg, tmp_path / "a").run(progress=False)
    other = dataclasses.replace(cfg.policy.mlp, hidden=cfg.policy.mlp.hidden + 1)
    bad = _with(cfg, mlp=other, init_checkpoint=str(tmp_path / "a" / "final"))
    with pytest.raises(ConfigError, match="policy.init_checkpoint=.*differ"):
        Trainer(bad, tmp_path / "b")
    with pytest.raises(ConfigError, match="policy.init_checkpoint=.*no such folder"):
        Trainer(_with(cfg, init_checkpoint=str(tmp_path / "missing")), tmp_path / "c")
