"""Executors of independent named units: one process (``serial``) or a Ray cluster (``ray``).

A *unit* is one independent piece of a study: a cell of E1's grid, a scenario of E3/E4/E5, one ablation
training, one seed replicate of ``mfsg train --seeds``. It is a picklable module-level function with its
arguments and a name. Both executors return the units' results in the units' order (never in completion
order), so the files written from them are the same bytes whichever executor ran them.

- ``serial``: the units run one after another in this process (the default; no extra dependency).
- ``ray``: each unit is a Ray task (one CPU each). Without ``address`` Ray starts a local instance on
  this machine (``num_cpus`` caps it) and shuts it down afterwards; with ``address`` (``auto``,
  ``HOST:6379`` or ``ray://HOST:10001``) the units go to that running cluster, whose nodes need
  ``pip install -e ".[scale]"`` of the same commit. Ray is an optional extra.

A unit that fails does not stop the others: its name and error are reported on one line (stderr) and kept
in :attr:`Executor.failures`; the other units' results are returned. Progress is one stderr line per
finished unit: ``units done / total``.

The command sets the executor for the duration of a run (:func:`using`); runners ask for it with
:func:`current` and hand it their units (:meth:`Executor.map`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mfsg.config import ConfigError, check_int, check_nonneg

__all__ = ["EXECUTORS", "ExecutorConfig", "Unit", "Executor", "UnitsFailed", "current", "using", "add_arguments",
           "from_args", "RAY_INSTALL_HINT"]

EXECUTORS = ("serial", "ray")
RAY_INSTALL_HINT = 'executor "ray" needs the optional Ray extra: pip install -e ".[scale]"'


@dataclass(frozen=True)
class ExecutorConfig:
    """Which executor runs the units. ``address``: a running Ray cluster ("" = start one locally and stop it
    afterwards); ``num_cpus``: CPUs of that local instance (0 = all of this machine's); ``gpus_per_unit``: the
    GPUs (or a fraction) Ray reserves for each unit, which it makes visible to that unit's process only (a
    command sets 1 when its ``--device`` is a GPU; Ray hides GPUs from tasks that reserve none)."""

    kind: str = "serial"
    address: str = ""
    num_cpus: int = 0
    gpus_per_unit: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"executor={self.kind!r} is invalid: allowed one of {', '.join(EXECUTORS)}")
        if not isinstance(self.address, str):
            raise ConfigError(f"address={self.address!r} is invalid: allowed a Ray address string")
        check_int("num_cpus", self.num_cpus, 0)
        check_nonneg("gpus_per_unit", self.gpus_per_unit)
        if self.kind == "serial" and (self.address or self.num_cpus):
            raise ConfigError("address and num_cpus are invalid with executor='serial': allowed only with executor='ray'")
        if self.address and self.num_cpus:
            raise ConfigError("num_cpus is invalid with an address: allowed only for a local Ray instance "
                              "(a cluster has its own CPUs)")


@dataclass(frozen=True)
class Unit:
    """One independent unit of work: ``fn(*args)``; ``fn`` a module-level (picklable) function."""

    name: str
    fn: Callable[..., Any]
    args: tuple = ()


class UnitsFailed(RuntimeError):
    """Raised by :meth:`Executor.raise_failures`: one line per failed unit."""

    def __init__(self, failures: dict[str, str], total: int):
        self.failures = dict(failures)
        lines = [f"{len(failures)} of {total} units failed"] + [f"  {k}: {v}" for k, v in failures.items()]
        super().__init__("\n".join(lines))


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}".rstrip(": ")


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    return fn(*args)


@dataclass
class Executor:
    """Runs lists of units with the configured executor; collects failures across calls."""

    config: ExecutorConfig = field(default_factory=ExecutorConfig)
    failures: dict[str, str] = field(default_factory=dict)
    total: int = 0
    _started_ray: bool = False

    def map(self, units: Sequence[Unit], label: str = "") -> dict[str, Any]:
        """Results of the ``units`` that succeeded, by name, in the units' order."""
        names = [u.name for u in units]
        if len(set(names)) != len(names):
            raise ValueError(f"unit names must be distinct: {names}")
        self.total += len(units)
        run = self._ray if self.config.kind == "ray" else self._serial
        got = run(units, label or "units")
        return {n: got[n] for n in names if n in got}

    # ------------------------------------------------------------------ executors
    def _report(self, label: str, done: int, total: int, name: str, error: str = "") -> None:
        if error:
            self.failures[name] = error
            print(f"{label}: unit {name!r} failed: {error}", file=sys.stderr, flush=True)
        print(f"{label}: {done}/{total} units done ({name})", file=sys.stderr, flush=True)

    def _serial(self, units: Sequence[Unit], label: str) -> dict[str, Any]:
        out = {}
        for i, u in enumerate(units, 1):
            try:
                out[u.name] = u.fn(*u.args)
            except Exception as err:  # noqa: BLE001 - a failed unit is reported, the others go on
                self._report(label, i, len(units), u.name, _describe(err))
                continue
            self._report(label, i, len(units), u.name)
        return out

    def _ray(self, units: Sequence[Unit], label: str) -> dict[str, Any]:
        ray = _import_ray()
        self._start(ray)
        task = ray.remote(num_cpus=1, num_gpus=self.config.gpus_per_unit, max_retries=0)(_call)
        pending = {task.remote(u.fn, u.args): u.name for u in units}
        out, done = {}, 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                name = pending.pop(ref)
                done += 1
                try:
                    out[name] = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - RayTaskError wraps the unit's own exception
                    cause = getattr(err, "cause", None)
                    self._report(label, done, len(units), name, _describe(cause if cause is not None else err))
                    continue
                self._report(label, done, len(units), name)
        return out

    def _start(self, ray) -> None:
        if ray.is_initialized():
            return
        cfg = self.config
        if cfg.address:
            ray.init(address=cfg.address, log_to_driver=True)
        else:
            ray.init(num_cpus=cfg.num_cpus or None, include_dashboard=False, log_to_driver=True)
            self._started_ray = True

    def close(self) -> None:
        """Stop the local Ray instance this executor started (a cluster given by address keeps running)."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

    def raise_failures(self) -> None:
        if self.failures:
            raise UnitsFailed(self.failures, self.total)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_INSTALL_HINT) from None
    return ray


_CURRENT: list[Executor] = []


def current() -> Executor:
    """The executor of the running command (serial when none was set)."""
    return _CURRENT[-1] if _CURRENT else Executor()


@contextlib.contextmanager
def using(config: ExecutorConfig) -> Iterator[Executor]:
    """Make an executor for ``config`` the :func:`current` one for the block; stops a local Ray afterwards."""
    if config.kind == "ray":
        _import_ray()  # fail before any work, with the install hint
    ex = Executor(config)
    _CURRENT.append(ex)
    try:
        yield ex
    finally:
        _CURRENT.pop()
        ex.close()


def add_arguments(parser) -> None:
    """``--executor {serial,ray} [--address ADDR] [--num-cpus N]`` on a command's parser."""
    parser.add_argument("--executor", default="serial", choices=EXECUTORS,
                        help="run independent units one after another (serial) or as Ray tasks (ray)")
    parser.add_argument("--address", default="", help="a running Ray cluster (default: start Ray locally and stop it)")
    parser.add_argument("--num-cpus", type=int, default=0, help="CPUs of the local Ray instance (default: all)")


def from_args(args, device: str = "cpu") -> ExecutorConfig:
    """The :class:`ExecutorConfig` of parsed command-line arguments (flag names in errors); a ``device`` other
    than the CPU reserves one GPU per Ray unit."""
    try:
        return ExecutorConfig(kind=args.executor, address=args.address, num_cpus=args.num_cpus,
                              gpus_per_unit=0.0 if device == "cpu" or args.executor == "serial" else 1.0)
    except ConfigError as err:
        text = str(err).replace("executor=", "--executor=").replace("address", "--address")
        raise ConfigError(text.replace("num_cpus", "--num-cpus")) from None
