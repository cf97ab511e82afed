"""The interface PPO trains through: a player scores a fixed action set (model §6).

A player turns the observations of one TTI into per-decision *inputs* (a dict of
tensors with a leading decision dim, so PPO can store, concatenate and minibatch them),
scores them into ``[M, A]`` log-scores over the fixed action set of
:mod:`mfsg.learn.actions` (masked by PPO), and values centralized *state inputs*.
The symbolic MLP players (:mod:`mfsg.learn.mappo`) and the language players
(:mod:`mfsg.learn.language_players`) implement it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from mfsg.env import spec

Inputs = dict[str, torch.Tensor]


def cat_inputs(parts: list[Inputs]) -> Inputs:
    """Concatenate per-decision inputs along the decision dim (right-padding dim 1 where lengths differ)."""
    out = {}
    for key in parts[0]:
        xs = [p[key] for p in parts]
        if xs[0].dim() >= 2 and len({x.shape[1] for x in xs}) > 1:
            width = max(x.shape[1] for x in xs)
            xs = [nn.functional.pad(x, (0, width - x.shape[1])) for x in xs]
        out[key] = torch.cat(xs)
    return out


def take_inputs(inputs: Inputs, index: torch.Tensor) -> Inputs:
    return {k: v[index] for k, v in inputs.items()}


class Player(nn.Module, ABC):
    """One player of the MFSG: the leader (BS) or the unified follower (all UEs).

    ``encode`` is called for the decisions of one TTI at ``(e_idx, s_idx)`` (active slots);
    the leader's state is valued once per episode-TTI, a follower's once per decision.
    """

    role: str  # "leader" or "follower"

    @abstractmethod
    def encode(self, obs_l: spec.LeaderObs, obs_f: spec.FollowerObs | None, e_idx, s_idx) -> Inputs:
        """Per-decision policy inputs (``obs_f`` is None for the leader, who moves first)."""

    @abstractmethod
    def scores(self, inputs: Inputs) -> torch.Tensor:
        """[M, A] log-scores of every action of the fixed set (masked and normalized by the caller)."""

    @abstractmethod
    def encode_state(self, obs_l: spec.LeaderObs, obs_f: spec.FollowerObs, e_idx, s_idx) -> Inputs:
        """Centralized-state value inputs: per episode (leader, ``s_idx`` None) or per decision (follower).

        For the leader, ``obs_f`` is the UEs' state before the leader moves (its ``dcm`` is last TTI's)."""

    @abstractmethod
    def value(self, inputs: Inputs) -> torch.Tensor:
        """[M] value estimates of the player's own utility."""

    def parameters_changed(self) -> None:
        """Call after writing the player's parameters other than by an optimizer step or
        ``load_state_dict`` (e.g. in place under ``torch.no_grad()``): players that cache values
        computed from their parameters (the language players' score memo,
        :mod:`mfsg.language.versions`) drop them. Nothing to do for players without such caches."""

    def forget_cached(self) -> None:
        """Drop values memoized from earlier calls (still valid ones too). :func:`~mfsg.learn.rollout.rollout`
        calls it first, so that a rollout's numbers never depend on what was scored before it: a memoized
        score equals a fresh one only up to the rounding of the batch it was computed in, and a run resumed
        from a checkpoint starts with no memo. Nothing to do for players without caches."""


def masked_log_probs(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log π over the valid actions (LLM4MAC Eq. 10): softmax of the scores restricted to ``mask``; −inf elsewhere."""
    return torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def entropy_of(logp: torch.Tensor) -> torch.Tensor:
    p = logp.exp()
    return -(p * logp.masked_fill(p == 0, 0.0)).sum(dim=-1)
