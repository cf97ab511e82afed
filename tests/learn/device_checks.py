"""Checks of the device path shared by ``test_device.py`` (CPU) and ``test_cuda.py`` (a GPU).

``tensors_created_off_device`` runs a rollout and one PPO update of players on ``device`` while every tensor
that the model path (players' ``scores`` / ``value``, the update) creates *without* saying where goes to
torch's ``meta`` device (``torch.device("meta")`` as the default device), and records each such creation
(a :class:`~torch.overrides.TorchFunctionMode` sees every torch call and its result). A tensor made with
``device=`` of its inputs, or derived from them, is on ``device``; one made on the default device is a
``meta`` tensor and is reported. The environment's side (observations, prompt encoding, sampling) runs
outside and keeps the CPU. The optimizer's own step is left out: torch keeps Adam's step counter on the
default device by design.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from mfsg.env import BatchedEnv
from mfsg.learn.config import TrainConfig, load_train_config
from mfsg.learn.device import module_device
from mfsg.learn.ppo import StackelbergPPO
from mfsg.learn.rollout import rollout
from mfsg.learn.train import Trainer, make_players

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"


class CreatedOnMeta(TorchFunctionMode):
    """Records the torch functions whose result is a ``meta`` tensor (made on the default device)."""

    def __init__(self):
        super().__init__()
        self.hits: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type == "meta":
                self.hits.append(getattr(func, "__qualname__", getattr(func, "__name__", repr(func))))
        return out


def small_config(name: str, device: str, **run) -> TrainConfig:
    cfg = load_train_config(CONFIGS / f"{name}.toml")
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, device=device, **run))


def tensors_created_off_device(cfg: TrainConfig, device: str) -> list[str]:
    """The torch functions of the model path that created a tensor without following ``device`` (see above)."""
    dev = torch.device(device)
    leader, follower = (p.to(dev) for p in make_players(cfg))
    rec = CreatedOnMeta()

    def guard(player, name):
        plain = getattr(player, name)

        def guarded(inputs):
            with torch.device("meta"), rec:
                return plain(inputs)
        setattr(player, name, guarded)

    players = [leader, follower]
    reference = [p.to(dev) for p in make_players(cfg)] if cfg.ppo.anchor_coef else []
    for p in players + reference:
        guard(p, "scores")
        guard(p, "value")
    try:
        ro = rollout(BatchedEnv(cfg.env, 4, seed=0), leader, follower, seed=1)
        ppo = StackelbergPPO(leader, follower, cfg.ppo, cfg.env.utility.gamma)
        if reference:
            ppo.set_reference(*reference)
        step = ppo._step

        def step_outside(*args):
            with torch.device(dev):
                return step(*args)
        ppo._step = step_outside
        with torch.device("meta"), rec:
            ppo.update(ro, torch.Generator().manual_seed(2))
    except (RuntimeError, NotImplementedError) as err:  # a meta tensor met the players' tensors
        rec.hits.append(f"error: {str(err).splitlines()[0]}")
    assert module_device(leader) == dev and module_device(follower) == dev
    return sorted(set(rec.hits))


def trained_weights(cfg: TrainConfig, out: Path) -> dict[str, bytes]:
    """Run ``cfg`` into ``out``; the bytes of every saved weight file of ``final/``."""
    Trainer(cfg, out).run(progress=False)
    return {p.name: p.read_bytes() for p in sorted((out / "final").glob("*.safetensors"))}
