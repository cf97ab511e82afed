"""Churn processes (model §3) as small strategy objects, in the manner of mobile-env's arrival module.

Each process answers two questions from the TTI's draws (:mod:`mfsg.env.draws`):
which slots are active at the start of an episode, and which slots leave and which join
at TTI t > 0. Each rule is written twice side by side: ``*_plain`` on Python lists for the
reference environment, ``*_batched`` on ``[E, S]`` tensors for the batched one; the
differential test proves the two agree.

Slot placement (``ChurnConfig.placement``, reconstructed): UEs at reset and joiners take the
free slots in *priority order*: slot index order (``lowest``), or the order of the TTI's
``place`` draws (``random``: uniformly random free slots; ties have probability zero and
break by index in both versions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from mfsg.config import ChurnConfig


def _uniform_count(u: float, lo: int, hi: int) -> int:
    """Map a uniform in [0, 1) to an integer uniform in [lo, hi]."""
    return lo + min(int(u * (hi - lo + 1)), hi - lo)


def _uniform_count_batched(u: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    return lo + torch.clamp((u * (hi - lo + 1)).long(), max=hi - lo)


def _order_plain(n_slots: int, place) -> list[int]:
    """Slots in priority order (index order, or ascending ``place`` draw, ties by index)."""
    if place is None:
        return list(range(n_slots))
    return sorted(range(n_slots), key=lambda s: float(place[s]))


def _rank_batched(n_slots: int, place: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``[E, S]`` position of each slot in its episode's priority order (see :func:`_order_plain`)."""
    if place is None:
        return torch.arange(n_slots, device=like.device)[None, :].expand(like.shape[0], -1)
    order = torch.argsort(torch.as_tensor(place), dim=1, stable=True)
    return torch.argsort(order, dim=1, stable=True)


def _first_free_plain(active: list[bool], place=None) -> int:
    return next(s for s in _order_plain(len(active), place) if not active[s])


def _first_free_batched(active: torch.Tensor, place: torch.Tensor | None = None) -> torch.Tensor:
    """One-hot [E, S] of the first inactive slot in priority order (all False where every slot is active)."""
    rank = _rank_batched(active.shape[1], place, active)
    big = active.shape[1]
    free_rank = torch.where(active, torch.full_like(rank, big), rank)
    first = free_rank.argmin(dim=1, keepdim=True)
    onehot = torch.zeros_like(active).scatter_(1, first, True)
    return onehot & ~active


class Churn(ABC):
    """A churn process; the base rule never changes the active set after reset."""

    def __init__(self, cfg: ChurnConfig, n_slots: int):
        self.cfg, self.n_slots = cfg, n_slots

    # -- reset -----------------------------------------------------------------
    def initial_plain(self, n_init: float, place=None) -> list[bool]:
        """Active slots at reset: the first N slots in priority order."""
        n = self.initial_count_plain(n_init)
        chosen = set(_order_plain(self.n_slots, place)[:n])
        return [s in chosen for s in range(self.n_slots)]

    def initial_batched(self, n_init: torch.Tensor, place: torch.Tensor | None = None) -> torch.Tensor:
        n = self.initial_count_batched(n_init)
        return _rank_batched(self.n_slots, place, n_init) < n[:, None]

    @abstractmethod
    def initial_count_plain(self, n_init: float) -> int:
        """Number of UEs at reset (they take the first N slots in priority order)."""

    @abstractmethod
    def initial_count_batched(self, n_init: torch.Tensor) -> torch.Tensor:
        """Batched :meth:`initial_count_plain`."""

    # -- TTI t > 0: returns (leaving, joining) masks ------------------------------
    def step_plain(self, t: int, active: list[bool], join: float, leave, place=None) -> tuple[list[bool], list[bool]]:
        none = [False] * self.n_slots
        return none, list(none)

    def step_batched(self, t: int, active: torch.Tensor, join: torch.Tensor, leave: torch.Tensor, place=None):
        none = torch.zeros_like(active)
        return none, none


class Fixed(Churn):
    """``fixed(N)``: N UEs the whole episode."""

    def initial_count_plain(self, n_init: float) -> int:
        return self.cfg.n

    def initial_count_batched(self, n_init: torch.Tensor) -> torch.Tensor:
        return torch.full_like(n_init, self.cfg.n, dtype=torch.long)


class PerEpisode(Churn):
    """``per_episode(N_min, N_max)``: N uniform at reset, fixed within the episode (LLM4MAC)."""

    def initial_count_plain(self, n_init: float) -> int:
        return _uniform_count(float(n_init), self.cfg.n_min, self.cfg.n_max)

    def initial_count_batched(self, n_init: torch.Tensor) -> torch.Tensor:
        return _uniform_count_batched(n_init, self.cfg.n_min, self.cfg.n_max)


class Markov(PerEpisode):
    """``markov(N_min, N_max, p_join, p_leave)``: starts like per_episode, then each TTI
    active UEs leave with p_leave (lowest slots first while above N_min), then one UE
    joins with p_join if below N_max, in the first free slot in priority order."""

    def step_plain(self, t, active, join, leave, place=None):
        n = sum(active)
        leaving = [False] * self.n_slots
        for s in range(self.n_slots):
            if active[s] and leave[s] < self.cfg.p_leave and n > self.cfg.n_min:
                leaving[s], n = True, n - 1
        joining = [False] * self.n_slots
        if join < self.cfg.p_join and n < self.cfg.n_max:
            after = [a and not gone for a, gone in zip(active, leaving)]
            joining[_first_free_plain(after, place)] = True
        return leaving, joining

    def step_batched(self, t, active, join, leave, place=None):
        n = active.sum(dim=1, keepdim=True)
        want = active & (leave < self.cfg.p_leave)
        allowed = (n - self.cfg.n_min).clamp(min=0)
        leaving = want & (want.long().cumsum(dim=1) <= allowed)
        remaining = active & ~leaving
        n_after = remaining.sum(dim=1, keepdim=True)
        may_join = (join[:, None] < self.cfg.p_join) & (n_after < self.cfg.n_max)
        joining = _first_free_batched(remaining, place) & may_join
        return leaving, joining


class Trace(Churn):
    """``trace(schedule)``: replays the active sets in ``schedule[t]`` (tests, figures); placement is the schedule's."""

    def _mask(self, t: int) -> list[bool]:
        slots = set(self.cfg.schedule[t])
        return [s in slots for s in range(self.n_slots)]

    def initial_count_plain(self, n_init):
        return len(self.cfg.schedule[0])

    def initial_count_batched(self, n_init):
        return torch.full_like(n_init, len(self.cfg.schedule[0]), dtype=torch.long)

    def initial_plain(self, n_init, place=None):
        return self._mask(0)

    def initial_batched(self, n_init, place=None):
        return torch.tensor(self._mask(0), device=n_init.device).expand(n_init.shape[0], -1).clone()

    def step_plain(self, t, active, join, leave, place=None):
        target = self._mask(t)
        return [a and not b for a, b in zip(active, target)], [b and not a for a, b in zip(active, target)]

    def step_batched(self, t, active, join, leave, place=None):
        target = torch.tensor(self._mask(t), device=active.device)[None, :]
        return active & ~target, target & ~active


_KINDS = {"fixed": Fixed, "per_episode": PerEpisode, "markov": Markov, "trace": Trace}


def make_churn(cfg: ChurnConfig, n_slots: int | None = None) -> Churn:
    """Build the churn process named by ``cfg.kind``."""
    return _KINDS[cfg.kind](cfg, cfg.n_slots if n_slots is None else n_slots)
