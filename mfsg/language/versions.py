"""Explicit version counters of a model's parameters, for values cached from them (model §5).

Acting reuses values computed from the actor's parameters: the score memo of
:class:`~mfsg.language.policy.LanguagePolicy` and the derived weights of the NumPy engine
(:mod:`mfsg.language.npengine`). They are keyed on :func:`key`, which changes

- after every optimizer step (any ``torch.optim`` optimizer: torch's public global step hook,
  :func:`torch.optim.optimizer.register_optimizer_step_post_hook`; conservative, a step of any
  optimizer counts),
- after every ``load_state_dict`` of the model or of a module holding it (a public module hook),
- after :func:`bump`: the one call owed by code that writes parameters any other way (in-place
  writes under ``torch.no_grad()``, ``Tensor.data``, a replaced module, a dtype change).
"""

from __future__ import annotations

import weakref

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

_steps = 0  # optimizer steps taken in this process
_counters: weakref.WeakKeyDictionary[torch.nn.Module, list[int]] = weakref.WeakKeyDictionary()


def _count_step(optimizer, args, kwargs) -> None:
    global _steps
    _steps += 1


register_optimizer_step_post_hook(_count_step)


def _counter(model: torch.nn.Module) -> list[int]:
    c = _counters.get(model)
    if c is None:
        c = _counters[model] = [0]
        model.register_load_state_dict_post_hook(lambda module, incompatible: bump(module))
    return c


def bump(model: torch.nn.Module) -> None:
    """Record that ``model``'s parameters changed (cached values computed from them are stale)."""
    _counter(model)[0] += 1


def key(model: torch.nn.Module) -> tuple[int, int]:
    """(optimizer steps in this process, explicit changes of ``model``): equal keys, equal parameters."""
    return _steps, _counter(model)[0]
