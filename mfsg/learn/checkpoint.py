"""Checkpoints: weights as safetensors, plus a JSON state (iteration, optimizer, RNG states).

A checkpoint is a folder written atomically (a temporary folder renamed into place), so a
run killed mid-write keeps its previous checkpoint: killed while the temporary folder is written,
the folder itself is untouched; killed between the two renames, the previous checkpoint is
``<name>.old``, which :func:`resolve` reads; a stale ``.old`` or ``.tmp`` left by a kill is
cleared by the next save. Resuming restores weights and optimizer
state exactly; every random draw of an iteration is seeded from (seed, iteration), so a
resumed run reproduces an uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from mfsg.config import ConfigError

STATE = "state.json"


def _optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    """Split an optimizer state dict into tensors (safetensors) and the rest (JSON)."""
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        meta["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{pid}.{k}"] = v.contiguous()
                meta["state"][str(pid)][k] = {"tensor": f"{prefix}.{pid}.{k}"}
            else:
                meta["state"][str(pid)][k] = v
    return tensors, meta


def _restore_optimizer(opt: torch.optim.Optimizer, meta: dict, tensors: dict) -> None:
    state = {}
    for pid, st in meta["state"].items():
        state[int(pid)] = {k: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v for k, v in st.items()}
    opt.load_state_dict({"param_groups": meta["param_groups"], "state": state})


def rng_states() -> dict:
    return {
        "torch": torch.get_rng_state().tolist(),
        "numpy": np.random.get_state()[1].tolist(),
        "python": random.getstate()[1][:5],  # summary only: python's RNG is not used by mfsg
    }


def save(path: str | Path, *, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
         iteration: int, extra: dict | None = None) -> Path:
    """Write a checkpoint folder at ``path`` (replacing any previous one atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, module in modules.items():
        save_model(module, str(tmp / f"{name}.safetensors"))  # tied weights (e.g. GPT-2's) stored once
    opt_tensors, opt_meta = {}, {}
    for name, opt in optimizers.items():
        t, m = _optimizer_tensors(opt, name)
        opt_tensors.update(t)
        opt_meta[name] = m
    save_file(opt_tensors, tmp / "optimizers.safetensors")
    state = {"iteration": iteration, "optimizers": opt_meta, "rng": rng_states(), **(extra or {})}
    (tmp / STATE).write_text(json.dumps(state, indent=1))
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)  # a kill after the last save's first rename left it; tmp is complete now
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def resolve(path: str | Path) -> Path:
    """The folder to read for checkpoint ``path``: itself, or ``<path>.old`` when a run was killed
    between the two renames of :func:`save` (``path`` then holds no state, ``.old`` a complete one)."""
    path = Path(path)
    old = path.with_name(path.name + ".old")
    return old if not (path / STATE).exists() and (old / STATE).exists() else path


# What a damaged file raises while it is read: bad bytes or JSON, a truncated or foreign safetensors
# header, tensors of the wrong shape for the module, optimizer state that does not fit its parameters.
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError, SafetensorError)
_STATE_FIELDS = {"iteration": int, "optimizers": dict, "rng": dict}  # and "config" (a dict) when a run saved it


def _damaged(file: Path, what: str) -> ConfigError:
    """The one-line error for a checkpoint file that cannot be used: the file, then what is wrong."""
    return ConfigError(f"checkpoint file {str(file)!r} is invalid: {what}")


def read_state(path: str | Path) -> dict:
    """The JSON state of a checkpoint folder (iteration, optimizers, RNG, and the run's config);
    a missing, unreadable or incomplete ``state.json`` raises ConfigError naming the file."""
    path = resolve(path)
    file = path / STATE
    if not file.is_file():
        allowed = "a run's final/ or checkpoint/ folder"
        raise ConfigError(f"checkpoint={str(path)!r} is invalid: no {STATE} in that folder (allowed: {allowed})")
    try:
        state = json.loads(file.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _damaged(file, f"not readable as JSON ({err}); the checkpoint is damaged") from None
    if not isinstance(state, dict):
        raise _damaged(file, f"a JSON {type(state).__name__} where an object is expected; the checkpoint is damaged")
    for key, kind in _STATE_FIELDS.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise _damaged(file, f"{key!r} is missing or not a JSON {kind.__name__} value; the checkpoint is damaged")
    if not isinstance(state.get("config", {}), dict):
        raise _damaged(file, "'config' is not a JSON object; the checkpoint is damaged")
    return state


def _load_module(file: Path, name: str, module: torch.nn.Module) -> None:
    if not file.is_file():
        raise _damaged(file, f"no such file (the {name}'s weights)")
    try:
        missing, unexpected = load_model(module, str(file))
    except _READ_ERRORS as err:
        raise _damaged(file, f"the {name}'s weights cannot be loaded ({type(err).__name__}: {err})") from None
    if missing or unexpected:
        raise _damaged(file, f"not the {name}'s weights: missing {missing}, unexpected {unexpected}")


def load(path: str | Path, *, modules: dict[str, torch.nn.Module],
         optimizers: dict[str, torch.optim.Optimizer] | None = None) -> dict:
    """Restore modules (and optimizers) from a checkpoint folder; returns its JSON state.
    A damaged or missing file raises ConfigError naming the file and what is wrong."""
    path = resolve(path)
    state = read_state(path)
    for name, module in modules.items():
        _load_module(path / f"{name}.safetensors", name, module)
    if optimizers:
        file = path / "optimizers.safetensors"
        try:
            tensors = load_file(file)
        except _READ_ERRORS as err:
            raise _damaged(file, f"the optimizer state cannot be loaded ({type(err).__name__}: {err})") from None
        for name, opt in optimizers.items():
            try:
                _restore_optimizer(opt, state["optimizers"][name], tensors)
            except _READ_ERRORS as err:
                raise _damaged(path / STATE, f"the {name}'s optimizer state does not fit ({type(err).__name__}: {err})"
                               ) from None
    try:
        rng = torch.tensor(state["rng"]["torch"], dtype=torch.uint8)
        torch.set_rng_state(rng)
    except _READ_ERRORS as err:
        raise _damaged(path / STATE, f"'rng.torch' is not a random generator state ({type(err).__name__}: {err})") from None
    return state
