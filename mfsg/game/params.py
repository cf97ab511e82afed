"""Parameter subsets of a player module as flat float64 vectors (model §8: a chosen subset of a trained
policy's parameters, for the estimator path of :mod:`mfsg.game.policy_game`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from mfsg.config import ConfigError
from mfsg.game.base import DTYPE
from mfsg.learn.players import Player

__all__ = ["ParamSlice", "parse_subset", "default_subset", "get_flat", "set_flat", "grad_flat"]

_SLICE = re.compile(r"^(?P<name>[^\[\]]+)(\[(?P<start>-?\d*):(?P<stop>-?\d*)\])?$")


@dataclass(frozen=True)
class ParamSlice:
    """Entries [start, stop) of one flattened parameter tensor of a module."""

    name: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def parse_subset(module: torch.nn.Module, specs) -> tuple[ParamSlice, ...]:
    """Slices from specs ``"name"`` (all entries), ``"name[a:b]"`` (Python slice of the flattened
    tensor) or ``"prefix."`` (every parameter whose name starts with it)."""
    params = dict(module.named_parameters())
    out = []
    for s in specs:
        m = _SLICE.match(s)
        if m is None:
            raise ConfigError(f"subset entry {s!r} is invalid: allowed 'name', 'name[a:b]' or 'prefix.'")
        name = m["name"]
        names = [n for n in params if n.startswith(name)] if name.endswith(".") else [name]
        if not names or any(n not in params for n in names):
            raise ConfigError(f"subset entry {s!r} is invalid: allowed parameter names {', '.join(params)}")
        for n in names:
            bounds = slice(int(m["start"]) if m["start"] else None, int(m["stop"]) if m["stop"] else None)
            start, stop, _ = bounds.indices(params[n].numel())
            if stop <= start:
                raise ConfigError(f"subset entry {s!r} is invalid: allowed a non-empty slice of {params[n].numel()}")
            out.append(ParamSlice(n, start, stop))
    if not out:
        raise ConfigError("subset=[] is invalid: allowed at least one parameter")
    return tuple(out)


def default_subset(player: Player) -> tuple[str, ...]:
    """The bias of the actor's last layer (critic parameters excluded: their policy gradient is 0).

    When that bias adds to the action logits directly (an MLP actor, ``actor.*``), its first entry
    is fixed: a softmax is invariant to a common shift of all logits (as in :mod:`mfsg.game.exact`).
    Elsewhere (e.g. a language model's final LayerNorm bias) every entry moves the policy."""
    names = [n for n, _ in player.named_parameters() if "critic" not in n.split(".")]
    bias = [n for n in names if n.endswith("bias")]
    if not bias:
        raise ConfigError(f"default subset of a {type(player).__name__} is undefined: allowed an explicit subset")
    last = bias[-1]
    return (f"{last}[1:]",) if last.startswith("actor.") else (last,)


def get_flat(module: torch.nn.Module, slices) -> torch.Tensor:
    params = dict(module.named_parameters())
    return torch.cat([params[s.name].detach().reshape(-1)[s.start : s.stop].to(device="cpu", dtype=DTYPE)
                      for s in slices])


@torch.no_grad()
def set_flat(module: torch.nn.Module, slices, flat: torch.Tensor) -> None:
    params, i = dict(module.named_parameters()), 0
    for s in slices:
        p = params[s.name]
        p.view(-1)[s.start : s.stop] = flat[i : i + s.size].to(device=p.device, dtype=p.dtype)
        i += s.size
    if isinstance(module, Player):
        module.parameters_changed()  # in-place writes: cached scores are stale (mfsg.learn.players.Player)


def grad_flat(module: torch.nn.Module, slices, loss: torch.Tensor) -> torch.Tensor:
    params = dict(module.named_parameters())
    names = list(dict.fromkeys(s.name for s in slices))
    grads = dict(zip(names, torch.autograd.grad(loss, [params[n] for n in names], retain_graph=True, allow_unused=True),
                     strict=True))
    parts = []
    for s in slices:
        g = grads[s.name]
        parts.append(torch.zeros(s.size, dtype=DTYPE) if g is None
                     else g.reshape(-1)[s.start : s.stop].to(device="cpu", dtype=DTYPE))
    return torch.cat(parts)


