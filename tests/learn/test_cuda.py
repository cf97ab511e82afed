"""The device path on a GPU (``run.device = "cuda"``): the checks of ``test_device.py`` on ``cuda``, the
players' scores and values against the CPU's, a short training, and checkpoints moving between devices.
Skipped when torch sees no CUDA device."""

import dataclasses

import pytest
import torch
from device_checks import small_config, tensors_created_off_device, trained_weights

from mfsg.env import BatchedEnv
from mfsg.learn.device import module_device, to_device
from mfsg.learn.train import load_players, make_players

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CONFIGS = ["ci_mlp", "ci_language"]


@pytest.mark.parametrize("name", CONFIGS)
def test_model_path_creates_no_tensor_off_cuda(name):
    assert tensors_created_off_device(small_config(name, "cuda"), "cuda") == []


@pytest.mark.parametrize("name", CONFIGS)
def test_scores_and_values_match_the_cpu(name):
    cfg = small_config(name, "cpu")
    cpu = make_players(cfg)
    gpu = [p.to("cuda") for p in make_players(cfg)]
    env = BatchedEnv(cfg.env, 4, seed=3)
    env.reset(3)
    obs_l = env.begin_tti()
    e_idx, s_idx = obs_l.active.nonzero(as_tuple=True)
    leader, gpu_leader = cpu[0], gpu[0]
    x = leader.encode(obs_l, None, e_idx, s_idx)
    want, got = leader.scores(x), gpu_leader.scores(to_device(x, torch.device("cuda"))).cpu()
    finite = torch.isfinite(want)
    assert torch.equal(finite, torch.isfinite(got))
    torch.testing.assert_close(got[finite], want[finite], rtol=1e-4, atol=1e-4)
    xs = leader.encode_state(obs_l, env.follower_observation(), torch.arange(env.E), None)
    torch.testing.assert_close(gpu_leader.value(to_device(xs, torch.device("cuda"))).cpu(), leader.value(xs),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", CONFIGS)
def test_short_training_on_cuda_and_checkpoint_on_either_device(name, tmp_path):
    cfg = small_config(name, "cuda", iterations=2)
    weights = trained_weights(cfg, tmp_path)
    assert weights
    for device in ("cpu", "cuda"):
        leader, follower, saved = load_players(tmp_path / "final", device=device)
        assert saved.run.device == "cuda"
        assert module_device(leader) == module_device(follower) == torch.device(device)


def test_bf16_training_runs(tmp_path):
    cfg = small_config("ci_language", "cuda", iterations=1)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, precision="bf16"))
    assert trained_weights(cfg, tmp_path)


def test_bench_policy_acts_on_cuda():
    """``mfsg bench policy --device cuda``: the players act on the GPU, valid actions every TTI."""
    from mfsg.bench import policy as bench_policy
    from mfsg.learn import device as devices

    with devices.using("cuda"):
        rows = bench_policy._latency("gpt2", "fast", [2], ttis=4)
    assert len(rows) == 1 and rows[0]["p50_ms"] > 0
