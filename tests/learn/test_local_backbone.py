"""A local pretrained Hugging Face backbone trains end to end (imitation, then Stackelberg PPO) with
``--device``: the example config ``experiments/configs/examples/flan_t5_local.toml`` with a tiny T5 saved
by ``save_pretrained`` standing in for the Flan-T5 checkpoint (model §5, §6)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mfsg.cli import main
from mfsg.language.backbones import BackboneConfig, build_backbone, save_backbone

EXAMPLE = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "examples" / "flan_t5_local.toml"


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> Path:
    model, tok = build_backbone(BackboneConfig(family="t5", d_model=32, n_layers=1, n_heads=2, d_ff=64, seed=5))
    return save_backbone(model, tok, tmp_path_factory.mktemp("tiny-t5"))


def test_example_config_names_its_placeholder(tmp_path, capsys):
    assert main(["train", "--config", str(EXAMPLE), "--out", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "policy.language.checkpoint='CHECKPOINT_DIR' is invalid" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_local_t5_trains_end_to_end_on_the_device(tiny_t5, tmp_path, capsys):
    config = tmp_path / "t5.toml"
    config.write_text(f"""base = "{EXAMPLE}"
[env]
horizon = 4
[policy.language]
checkpoint = "{tiny_t5}"
[policy.imitation]
episodes = 2
epochs = 1
follower_epochs = 1
[ppo]
value_warmup = 1
minibatches = 2
[run]
iterations = 2
n_envs = 2
eval_every = 2
eval_ns = [2]
eval_episodes = 2
checkpoint_every = 2
""")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["policy"]["language"]["checkpoint"] == str(tiny_t5) and saved["run"]["device"] == "cpu"
    assert (out / "warm_start.json").exists()  # imitation ran
    metrics = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [0, 1] and "leader/pg_loss" in metrics[1]  # PPO's policy update
    # the players' T5 weights moved away from the checkpoint's
    start = load_file(tiny_t5 / "model.safetensors")
    trained = load_file(out / "final" / "leader.safetensors")
    same_name = [(k, s) for k in trained for s in start if k.endswith("." + s) and trained[k].shape == start[s].shape]
    assert same_name and any(not torch.equal(trained[k], start[s]) for k, s in same_name)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "final"), "--n-ue", "3", "--p-arrival", "0.5",
                 "--episodes", "4", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid_action_rate"] == 1.0
