"""Rollouts: whole episodes on the batched environment, leader first, then followers (model §2, §6).

Every decision of a TTI is made in one batched call per player. What PPO needs later
(inputs, masks, actions, log-probabilities, values, rewards, who is who) is stored per TTI
and stacked at the end into a :class:`Rollout`.

The environment and the stored rollout stay on the CPU; each player scores and values on its own
device (:mod:`mfsg.learn.device`): one transfer of the inputs there per batched decision, one of the
log-probabilities (and values) back, and actions are sampled on the CPU with the rollout's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mfsg.env import BatchedEnv
from mfsg.learn import actions
from mfsg.learn.device import module_device, to_device
from mfsg.learn.players import Inputs, Player, cat_inputs, masked_log_probs


@dataclass
class Decisions:
    """Stored decisions of one player over a rollout (leading dim M)."""

    e: torch.Tensor  # episode
    s: torch.Tensor  # UE slot the decision is for
    t: torch.Tensor  # TTI
    inputs: Inputs
    mask: torch.Tensor  # [M, A] valid actions
    action: torch.Tensor  # [M] index into the fixed action set
    logp: torch.Tensor  # [M, A] log π_old over the whole set (for the exact KL term)

    def to(self, device: torch.device) -> Decisions:
        """These decisions on ``device`` (themselves when they are there)."""
        return Decisions(**{f: _to(getattr(self, f), device) for f in self.__dataclass_fields__})


@dataclass
class Rollout:
    leader: Decisions
    follower: Decisions
    leader_state: Inputs  # [T*E] value inputs, TTI-major; per leader decision with per-UE leader values
    follower_state: Inputs  # per follower decision
    leader_value: torch.Tensor  # [E, T]; [E, S, T] with per-UE leader values (0 where no decision)
    follower_value: torch.Tensor  # [E, S, T] (0 where no decision)
    leader_reward: torch.Tensor  # [E, T]
    leader_reward_ue: torch.Tensor  # [E, S, T] each UE's share of the team reward + the leader's fairness term
    follower_reward: torch.Tensor  # [E, S, T]
    active: torch.Tensor  # [E, S, T]
    ue_id: torch.Tensor  # [E, S, T]
    env: BatchedEnv  # the finished episodes (counters for metrics)

    def to(self, device: torch.device) -> Rollout:
        """The rollout's tensors on ``device`` (the environment stays where it is)."""
        return Rollout(**{f: getattr(self, f) if f == "env" else _to(getattr(self, f), device)
                          for f in self.__dataclass_fields__})


def _to(x, device: torch.device):
    if isinstance(x, dict):
        return to_device(x, device)
    return x.to(device) if isinstance(x, (torch.Tensor, Decisions)) else x


def _scores(player: Player, x: Inputs, mask: torch.Tensor) -> torch.Tensor:
    """log π of a batched decision: inputs to the player's device, log-probabilities back to the CPU."""
    dev = module_device(player)
    return masked_log_probs(player.scores(to_device(x, dev)), mask.to(dev)).cpu()


def _values(player: Player, xs: Inputs) -> torch.Tensor:
    return player.value(to_device(xs, module_device(player))).cpu()


def _choose(logp: torch.Tensor, greedy: bool, gen: torch.Generator) -> torch.Tensor:
    if greedy:
        return logp.argmax(dim=-1)
    return torch.multinomial(logp.exp(), 1, generator=gen).squeeze(-1)


def _no_comm(mask: torch.Tensor, n_zero: int) -> torch.Tensor:
    """Keep only actions whose message is 0 (the first ``n_zero`` entries of the set)."""
    keep = torch.zeros_like(mask)
    keep[:, :n_zero] = True
    return mask & keep


@torch.no_grad()
def rollout(env: BatchedEnv, leader: Player, follower: Player, *, seed: int, greedy: bool = False,
            no_comm: bool = False) -> Rollout:
    """Run ``env.E`` whole episodes; actions sampled with a generator seeded by ``seed``.

    A leader with ``value_per_ue`` (the per-UE credit of ``ppo.leader_credit``) is valued once per
    decision, like a follower; otherwise once per episode-TTI."""
    cfg, E, S = env.cfg, env.E, env.S
    per_ue = getattr(leader, "value_per_ue", False)
    gen = torch.Generator().manual_seed(seed)
    env.reset(seed)
    for player in (leader, follower):
        player.forget_cached()  # the same numbers whatever was scored before (a resumed run included)
    store: dict[str, list] = {k: [] for k in ("L", "F", "LS", "FS", "LV", "FV", "rL", "rLU", "rF", "act", "uid")}
    while not env.done:
        t = env.t
        obs_l = env.begin_tti()
        e_idx, s_idx = obs_l.active.nonzero(as_tuple=True)
        store["act"].append(obs_l.active)
        store["uid"].append(obs_l.ue_id)
        # §2.3 the leader decides a DCM for every active UE
        x = leader.encode(obs_l, None, e_idx, s_idx)
        mask = actions.leader_mask(cfg, len(e_idx))
        if no_comm:
            mask = _no_comm(mask, 1)
        logp = _scores(leader, x, mask)
        a = _choose(logp, greedy, gen)
        store["L"].append((e_idx, s_idx, torch.full_like(e_idx, t), x, mask, a, logp))
        if per_ue:
            xs = leader.encode_state(obs_l, env.follower_observation(), e_idx, s_idx)
            lv = torch.zeros(E, S)
            lv[e_idx, s_idx] = _values(leader, xs)
        else:
            xs = leader.encode_state(obs_l, env.follower_observation(), torch.arange(E), None)
            lv = _values(leader, xs)
        store["LS"].append(xs)
        store["LV"].append(lv)
        dcm = torch.zeros(E, S, dtype=torch.long)
        dcm[e_idx, s_idx] = a
        obs_f = env.deliver(dcm)
        # §2.4 every active UE chooses (UCM, access)
        x = follower.encode(obs_l, obs_f, e_idx, s_idx)
        mask = actions.follower_mask(cfg, obs_f.buffer[e_idx, s_idx])
        if no_comm:
            mask = _no_comm(mask, cfg.n_access)
        logp = _scores(follower, x, mask)
        a = _choose(logp, greedy, gen)
        store["F"].append((e_idx, s_idx, torch.full_like(e_idx, t), x, mask, a, logp))
        xs = follower.encode_state(obs_l, obs_f, e_idx, s_idx)
        store["FS"].append(xs)
        fv = torch.zeros(E, S)
        fv[e_idx, s_idx] = _values(follower, xs)
        store["FV"].append(fv)
        ucm, access = actions.follower_action(cfg, a)
        u = torch.zeros(E, S, dtype=torch.long)
        acc = torch.zeros(E, S, dtype=torch.long)
        u[e_idx, s_idx], acc[e_idx, s_idx] = ucm, access
        r = env.end_tti(u, acc)
        store["rL"].append(r.leader.float())
        fairness = (r.leader - r.team).float()  # β_fair·J at the last TTI, else 0
        store["rLU"].append((r.team_ue.float() + fairness[:, None]) * obs_l.active)
        store["rF"].append(r.follower.float())
    return Rollout(
        leader=_stack(store["L"]),
        follower=_stack(store["F"]),
        leader_state=cat_inputs(store["LS"]),
        follower_state=cat_inputs(store["FS"]),
        leader_value=torch.stack(store["LV"], dim=-1),
        follower_value=torch.stack(store["FV"], dim=2),
        leader_reward=torch.stack(store["rL"], dim=1),
        leader_reward_ue=torch.stack(store["rLU"], dim=2),
        follower_reward=torch.stack(store["rF"], dim=2),
        active=torch.stack(store["act"], dim=2),
        ue_id=torch.stack(store["uid"], dim=2),
        env=env,
    )


def _stack(parts: list[tuple]) -> Decisions:
    e, s, t, x, mask, a, logp = zip(*parts)
    return Decisions(
        e=torch.cat(e), s=torch.cat(s), t=torch.cat(t), inputs=cat_inputs(list(x)),
        mask=torch.cat(mask), action=torch.cat(a), logp=torch.cat(logp),
    )
