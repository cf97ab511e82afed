"""Imitation of a rule-based protocol (SPEC §6 "LLM-PL"; also a warm start for any player).

A teacher protocol (:mod:`mfsg.protocols`) plays whole episodes on the batched environment;
each decision it makes, encoded by the student player, becomes a (inputs, action) pair, and
the student minimizes −log π(a_teacher | s) over the fixed action set (masked, SPEC §5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mfsg.config import EnvConfig, check_int, check_nonneg
from mfsg.env import BatchedEnv
from mfsg.learn import actions
from mfsg.learn.players import Inputs, Player, cat_inputs, masked_log_probs, take_inputs
from mfsg.protocols.base import Protocol


@dataclass(frozen=True)
class ImitationConfig:
    episodes: int = 256
    epochs: int = 3
    batch_size: int = 512
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("imitation.episodes", self.episodes, 1)
        check_int("imitation.epochs", self.epochs, 1)
        check_int("imitation.batch_size", self.batch_size, 1)
        check_nonneg("imitation.lr", self.lr)
        check_int("imitation.seed", self.seed, 0)


@dataclass
class Demonstrations:
    inputs: Inputs
    mask: torch.Tensor
    action: torch.Tensor


@torch.no_grad()
def demonstrations(env_cfg: EnvConfig, teacher: Protocol, leader: Player, follower: Player,
                   episodes: int, seed: int) -> tuple[Demonstrations, Demonstrations]:
    """The teacher's decisions on ``episodes`` episodes, encoded for the leader and the follower."""
    env = BatchedEnv(env_cfg, episodes, seed=seed)
    teacher.reset(env, seed)
    L: list = []
    F: list = []
    while not env.done:
        obs_l = env.begin_tti()
        dcm = teacher.leader(obs_l)
        e, s = obs_l.active.nonzero(as_tuple=True)
        L.append((leader.encode(obs_l, None, e, s), actions.leader_mask(env_cfg, len(e)), dcm[e, s]))
        obs_f = env.deliver(dcm)
        ucm, access = teacher.followers(obs_f)
        F.append((follower.encode(obs_l, obs_f, e, s), actions.follower_mask(env_cfg, obs_f.buffer[e, s]),
                  actions.follower_index(env_cfg, ucm[e, s], access[e, s])))
        env.end_tti(ucm, access)
    return _stack(L), _stack(F)


def _stack(parts) -> Demonstrations:
    x, m, a = zip(*parts)
    return Demonstrations(cat_inputs(list(x)), torch.cat(m), torch.cat(a))


def imitation_loss(player: Player, demo: Demonstrations, idx: torch.Tensor) -> torch.Tensor:
    """Mean −log π(a_teacher | s) over the minibatch ``idx``."""
    logp = masked_log_probs(player.scores(take_inputs(demo.inputs, idx)), demo.mask[idx])
    return -logp.gather(1, demo.action[idx, None]).mean()


def fit(player: Player, demo: Demonstrations, cfg: ImitationConfig) -> list[float]:
    """Behaviour cloning of one player; returns the mean loss of each epoch."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(player.parameters(), lr=cfg.lr)
    history = []
    for _ in range(cfg.epochs):
        losses = []
        for idx in torch.randperm(len(demo.action), generator=gen).split(cfg.batch_size):
            loss = imitation_loss(player, demo, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append(sum(losses) / len(losses))
    return history


def agreement(player: Player, demo: Demonstrations) -> float:
    """Fraction of the teacher's decisions that the player's greedy choice reproduces."""
    with torch.no_grad():
        logp = masked_log_probs(player.scores(demo.inputs), demo.mask)
    return (logp.argmax(-1) == demo.action).float().mean().item()
