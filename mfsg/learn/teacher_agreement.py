"""Where a learned leader departs from its SR/grant teacher (model §6), case by case.

SR/grant grants RBG k to the k-th requesting UE in cyclic order from its round-robin pointer, so
its DCM for UE n is set by three things the BS prompt shows: whether n is ACKed, whether n is
requesting, and how many requesting UEs lie *ahead* of n (cyclic order from the pointer up to n;
only 0, 1 or "at least K" matter). Grouping a leader's disagreements by these cases separates an
unseen *situation* from an unseen *prompt length*: the same case is met at N ≤ 6 and at N = 8.

The teacher plays the episodes (:class:`mfsg.learn.imitation.ObservedSrGrant`, pointer read off
the prompt); the leader is asked every one of its decisions (teacher forcing).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mfsg.config import EnvConfig
from mfsg.env import BatchedEnv, spec
from mfsg.learn import actions
from mfsg.learn.imitation import ObservedSrGrant, greedy_actions
from mfsg.learn.players import Player
from mfsg.protocols.base import acked
from mfsg.protocols.sr_grant import observed_pointer, requesting

Decide = Callable[[spec.LeaderObs, torch.Tensor, torch.Tensor], torch.Tensor]


def requesters_ahead(requesting: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """``[E, S]``: requesting slots in cyclic order from ``ptr`` (inclusive) up to each slot (exclusive)."""
    S = requesting.shape[1]
    cyc = (torch.arange(S)[None, :] - ptr[:, None]) % S  # cyclic position of each slot from ptr
    order = cyc.argsort(dim=1)
    before = requesting.gather(1, order).long().cumsum(dim=1) - requesting.gather(1, order).long()
    return before.gather(1, cyc)


@dataclass(frozen=True)
class Case:
    """A decision's case: ``first_slot`` (UE 1), requesters ``ahead`` (capped at K), ``requesting``, ``acked``."""

    first_slot: bool
    ahead: int
    requesting: bool
    acked: bool


def greedy_leader(player: Player, env_cfg: EnvConfig) -> Decide:
    """The player's greedy DCM (argmax of π over the valid candidates) for slots ``s`` of episodes ``e``."""
    def decide(obs: spec.LeaderObs, e: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return greedy_actions(player, player.encode(obs, None, e, s), actions.leader_mask(env_cfg, len(e)))

    return decide


@torch.no_grad()
def leader_errors(decide: Decide, env_cfg: EnvConfig, episodes: int, seed: int) -> tuple[dict, dict]:
    """Per :class:`Case`: (decisions, disagreements) with SR/grant on ``episodes`` teacher-played episodes.

    Returns ``{case: (total, wrong)}`` and the confusion counts ``{(first_slot, teacher DCM, leader DCM): count}``."""
    env = BatchedEnv(env_cfg, episodes, seed=seed)
    teacher = ObservedSrGrant(seed=seed)
    teacher.reset(env, seed)
    K = env_cfg.n_rbg
    total, wrong, confusion = collections.Counter(), collections.Counter(), collections.Counter()
    while not env.done:
        obs = env.begin_tti()
        dcm = teacher.leader(obs)
        ack = acked(obs)
        req = requesting(obs, ack)
        ahead = requesters_ahead(req, observed_pointer(obs)).clamp(max=K)
        e, s = obs.active.nonzero(as_tuple=True)
        got, want = decide(obs, e, s), dcm[e, s]
        for i in range(len(e)):
            ei, si = e[i].item(), s[i].item()
            case = Case(si == 0, int(ahead[ei, si]), bool(req[ei, si]), bool(ack[ei, si]))
            miss = int(got[i] != want[i])
            total[case] += 1
            wrong[case] += miss
            if miss:
                confusion[(si == 0, int(want[i]), int(got[i]))] += 1
        env.end_tti(*teacher.followers(env.deliver(dcm)))
    return {c: (total[c], wrong[c]) for c in total}, dict(confusion)

