"""Symbolic MAPPO baseline (model §6, LLM4MAC's "Sym. MAPPO"): MLP actors and critics on
fixed-size numeric observations, sized for ``n_model_slots`` UEs.

The leader's input lists every slot up to ``n_model_slots``; at another N, slots are padded
(fewer UEs) or truncated (more UEs: slots beyond the last one are seen as the last one),
which is why it needs retraining when N changes. It trains with the same Stackelberg PPO.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.functional import one_hot

from mfsg.config import EnvConfig, check_int
from mfsg.env import spec
from mfsg.learn import actions
from mfsg.learn.players import Inputs, Player


@dataclass(frozen=True)
class MLPConfig:
    n_model_slots: int = 6
    hidden: int = 64

    def __post_init__(self) -> None:
        check_int("mappo.n_model_slots", self.n_model_slots, 1)
        check_int("mappo.hidden", self.hidden, 1)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, n_out))


def _fit_slots(x: torch.Tensor, n: int) -> torch.Tensor:
    """Pad or truncate the slot axis (dim 1) to ``n``."""
    if x.shape[1] >= n:
        return x[:, :n]
    return nn.functional.pad(x, (0, 0, 0, n - x.shape[1]) if x.dim() == 3 else (0, n - x.shape[1]))


class SymbolicFeatures:
    """Numeric features of model §2 observations (one-hots and scaled counts)."""

    def __init__(self, env_cfg: EnvConfig, n_model_slots: int):
        self.cfg, self.n = env_cfg, n_model_slots

    def slot_table(self, obs_l: spec.LeaderObs, obs_f: spec.FollowerObs | None) -> torch.Tensor:
        """[E, S, F] per-slot leader view: active, last UCM, last DCM, RBG its UE was decoded on (or none)."""
        c = self.cfg
        decoded_on = (obs_l.decoded_id[:, None, :] == obs_l.ue_id[:, :, None]) & obs_l.active[..., None]
        rbg = torch.where(decoded_on.any(-1), decoded_on.long().argmax(-1) + 1, 0)
        parts = [obs_l.active[..., None].float(), one_hot(obs_l.prev_ucm, c.ucm_vocab).float(),
                 one_hot(obs_l.prev_dcm, c.dcm_vocab).float(), one_hot(rbg, c.n_rbg + 1).float()]
        if obs_f is not None:
            parts += [obs_f.buffer[..., None].float() / c.buffer, one_hot(obs_f.prev_access, c.n_access).float()]
        return torch.cat(parts, dim=-1)

    def time(self, t: int, m: int) -> torch.Tensor:
        return torch.full((m, 1), t / self.cfg.horizon)

    def outcome(self, obs_l: spec.LeaderObs) -> torch.Tensor:
        return one_hot(obs_l.outcome, 3).float().flatten(1)

    def target(self, s_idx: torch.Tensor) -> torch.Tensor:
        return one_hot(s_idx.clamp(max=self.n - 1), self.n).float()

    def leader(self, obs_l, e_idx, s_idx) -> torch.Tensor:
        table = _fit_slots(self.slot_table(obs_l, None), self.n).flatten(1)
        return torch.cat([table[e_idx], self.target(s_idx), self.outcome(obs_l)[e_idx], self.time(obs_l.t, len(e_idx))], 1)

    def follower(self, obs_f, e_idx, s_idx) -> torch.Tensor:
        c, b = self.cfg, obs_f.buffer[e_idx, s_idx]
        return torch.cat([
            b[:, None].float() / c.buffer, one_hot(b.clamp(max=2), 3).float(),  # empty / last dPDU / more
            one_hot(obs_f.prev_ucm[e_idx, s_idx], c.ucm_vocab).float(),
            one_hot(obs_f.prev_access[e_idx, s_idx], c.n_access).float(), one_hot(obs_f.dcm[e_idx, s_idx], c.dcm_vocab).float(),
            self.time(obs_f.t, len(e_idx)),
        ], 1)

    def state(self, obs_l, obs_f, e_idx, s_idx) -> torch.Tensor:
        table = _fit_slots(self.slot_table(obs_l, obs_f), self.n).flatten(1)
        own = self.target(s_idx) if s_idx is not None else torch.zeros(len(e_idx), self.n)
        return torch.cat([table[e_idx], own, self.outcome(obs_l)[e_idx], self.time(obs_l.t, len(e_idx))], 1)


class MLPPlayer(Player):
    """An MLP actor over the fixed action set and an MLP critic over the centralized state
    (``value_per_ue``: the leader's critic values the state seen for one UE, marked by its slot)."""

    def __init__(self, role: str, env_cfg: EnvConfig, cfg: MLPConfig = MLPConfig(), value_per_ue: bool = False):
        super().__init__()
        if role not in ("leader", "follower"):
            raise ValueError(f"role={role!r} is invalid: allowed 'leader' or 'follower'")
        self.role, self.feat = role, SymbolicFeatures(env_cfg, cfg.n_model_slots)
        self.value_per_ue = value_per_ue
        probe = _probe_obs(env_cfg)
        e, s = torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
        n_in = (self.feat.leader(probe[0], e, s) if role == "leader" else self.feat.follower(probe[1], e, s)).shape[1]
        n_state = self.feat.state(probe[0], probe[1], e, s).shape[1]
        n_act = actions.n_leader_actions(env_cfg) if role == "leader" else actions.n_follower_actions(env_cfg)
        self.actor = _mlp(n_in, cfg.hidden, n_act)
        self.critic = _mlp(n_state, cfg.hidden, 1)

    def encode(self, obs_l, obs_f, e_idx, s_idx) -> Inputs:
        x = self.feat.leader(obs_l, e_idx, s_idx) if self.role == "leader" else self.feat.follower(obs_f, e_idx, s_idx)
        return {"x": x}

    def scores(self, inputs: Inputs) -> torch.Tensor:
        return self.actor(inputs["x"])

    def encode_state(self, obs_l, obs_f, e_idx, s_idx) -> Inputs:
        return {"x": self.feat.state(obs_l, obs_f, e_idx, s_idx)}

    def value(self, inputs: Inputs) -> torch.Tensor:
        return self.critic(inputs["x"]).squeeze(-1)


def _probe_obs(cfg: EnvConfig) -> tuple[spec.LeaderObs, spec.FollowerObs]:
    """Zero observations of one episode, to size the networks."""
    from mfsg.env import BatchedEnv

    env = BatchedEnv(cfg, 1, seed=0)
    obs_l = env.begin_tti()
    return obs_l, env.deliver(torch.zeros(1, env.S, dtype=torch.long))
