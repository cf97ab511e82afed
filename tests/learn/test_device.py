"""The device path on the CPU (``run.device``, ``--device``; model §5, §6): the config's checks, device
resolution, the same bytes as the plain CPU code, no tensor of the model path made off the players' device,
checkpoints that load on a device, and the commands' ``--device``. The same checks on a GPU: ``test_cuda.py``."""

import pytest
import torch
from device_checks import small_config, tensors_created_off_device, trained_weights

from mfsg.cli import main
from mfsg.config import ConfigError
from mfsg.learn import device as devices
from mfsg.learn.config import RunConfig
from mfsg.learn.device import module_device, resolve, to_device
from mfsg.learn.train import load_players

NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize(("field", "value", "match"), [
    ("device", "gpu", "run.device='gpu' is invalid: allowed one of cpu, cuda, cuda:N, auto"),
    ("device", "cuda:x", "run.device='cuda:x' is invalid"),
    ("precision", "fp16", "run.precision='fp16' is invalid: allowed one of fp32, bf16"),
])
def test_run_config_rejects_bad_device_and_precision(field, value, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig(**{field: value})


def test_resolve_names_the_field_and_what_is_there():
    assert resolve("cpu") == torch.device("cpu")
    assert resolve("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=rf"--device='cuda:{n}' is invalid here: torch sees {n} CUDA device"):
        resolve(f"cuda:{n}", "--device")


def test_cpu_transfer_is_no_copy():
    """On the CPU the device path runs the very same tensors through the very same ops: bitwise as before."""
    x = {"ids": torch.arange(6).reshape(2, 3), "mask": torch.ones(2, 3, dtype=torch.bool)}
    moved = to_device(x, torch.device("cpu"))
    assert all(moved[k] is x[k] for k in x)


@pytest.mark.parametrize("name", ["ci_mlp", "ci_language"])
def test_model_path_creates_no_tensor_off_device(name):
    assert tensors_created_off_device(small_config(name, "cpu"), "cpu") == []


def test_the_check_sees_a_tensor_made_on_the_default_device(monkeypatch):
    """The check can fail: a value head that adds torch.zeros(n) (no device) is reported."""
    from mfsg.learn import mappo

    plain = mappo.MLPPlayer.value
    monkeypatch.setattr(mappo.MLPPlayer, "value", lambda self, x: plain(self, x) + torch.zeros(len(x["x"])))
    hits = tensors_created_off_device(small_config("ci_mlp", "cpu"), "cpu")
    assert any("zeros" in h for h in hits), hits


@pytest.mark.skipif(not NO_GPU, reason="auto is a GPU here")
def test_auto_without_gpu_is_the_cpu_bitwise(tmp_path):
    cpu = trained_weights(small_config("ci_mlp", "cpu", iterations=2), tmp_path / "cpu")
    auto = trained_weights(small_config("ci_mlp", "auto", iterations=2), tmp_path / "auto")
    assert cpu == auto and cpu


def test_checkpoint_loads_on_the_asked_device(tmp_path):
    trained_weights(small_config("ci_mlp", "cpu", iterations=1), tmp_path)
    leader, follower, _ = load_players(tmp_path / "final", device="cpu")
    assert module_device(leader) == module_device(follower) == torch.device("cpu")


@pytest.mark.skipif(not NO_GPU, reason="a GPU is there")
def test_commands_reject_a_missing_gpu(tmp_path, capsys):
    cfg = "experiments/configs/ci_mlp.toml"
    assert main(["train", "--config", cfg, "--out", str(tmp_path), "--device", "cuda"]) == 2
    assert "--device='cuda' is invalid here: torch sees 0 CUDA device(s)" in capsys.readouterr().err


def test_precision_bf16_autocast_is_on_only_for_bf16():
    with devices.autocast(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu")
    with devices.autocast(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
