"""Where the models run (model §5, §6): the players, their critics, the tensors that feed them and the PPO
update go to one torch device; the environment stays on the CPU.

``device`` is ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (the first GPU when torch sees one, else the CPU).
A batched decision sends its inputs to the device once (:func:`to_device`) and brings its log-probabilities
back once, so actions are sampled on the CPU with the same generator whatever the device. ``precision``
``bf16`` runs the language players' forward passes under bfloat16 autocast (:func:`autocast`); ``fp32``
(the default) leaves every computation as it is, and on the CPU the device path gives bitwise the numbers
of the plain CPU code.

A command's ``--device`` for models it loads without a training config of its own (``mfsg experiment``:
its evaluators and the trainings it starts) is set with :func:`using` and read with :func:`current` by
whoever builds them in the command's process; what they build carries the device along (also into the
worker processes of an executor).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import torch

from mfsg.config import ConfigError

__all__ = ["DEVICES", "PRECISIONS", "check_device", "check_precision", "resolve", "to_device", "module_device",
           "autocast", "using", "current"]

DEVICES = ("cpu", "cuda", "cuda:N", "auto")
PRECISIONS = ("fp32", "bf16")
_PATTERN = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")


def check_device(field: str, value: Any) -> None:
    """A device name of :data:`DEVICES` (syntax only; :func:`resolve` checks that it exists)."""
    if not isinstance(value, str) or not _PATTERN.match(value):
        raise ConfigError(f"{field}={value!r} is invalid: allowed one of {', '.join(DEVICES)}")


def check_precision(field: str, value: Any) -> None:
    if value not in PRECISIONS:
        raise ConfigError(f"{field}={value!r} is invalid: allowed one of {', '.join(PRECISIONS)}")


def resolve(name: str, field: str = "device") -> torch.device:
    """The torch device of ``name``: ``auto`` is the first GPU when there is one, else the CPU; a GPU that is
    not there is a one-line :class:`ConfigError` naming ``field``."""
    check_device(field, name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if not n or (dev.index is not None and dev.index >= n):
            raise ConfigError(f"{field}={name!r} is invalid here: torch sees {n} CUDA device(s) "
                              f"(allowed cpu, auto{', cuda' if n else ''}{f', cuda:0..{n - 1}' if n else ''})")
    return dev


def to_device(inputs: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors of ``inputs`` on ``device`` (the same tensors when they are there already)."""
    return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's parameters (the CPU for a module without any)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bfloat16 autocast on ``device`` for ``bf16``; nothing for ``fp32``."""
    check_precision("precision", precision)
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


_CURRENT: list[str] = []


def current() -> str:
    """The device name set by the running command (:func:`using`), else ``cpu``."""
    return _CURRENT[-1] if _CURRENT else "cpu"


@contextlib.contextmanager
def using(name: str, field: str = "--device") -> Iterator[torch.device]:
    """Make ``name`` (checked: :func:`resolve`) the :func:`current` device for the block."""
    dev = resolve(name, field)
    _CURRENT.append(str(dev))
    try:
        yield dev
    finally:
        _CURRENT.pop()
