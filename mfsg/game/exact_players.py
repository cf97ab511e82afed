"""The exact game of a small model §2 instance played by two trained players (model §8).

:class:`ExactPlayersGame` enumerates the instance exactly as :class:`mfsg.game.exact.ExactMacGame`
does (every branch of :class:`~mfsg.env.reference.ReferenceEnv`), but a decision's policy row is
the *player's own input* for it: the leader's and the followers' observations of each reachable
decision are encoded once by the players (``Player.encode``, e.g. SIE prompts), identical inputs
share a row, and π is ``softmax`` of the players' candidate scores over the valid actions
(``Player.scores``, model §5) on every row. The exact utilities J_L and J_n are then
differentiable functions of **every** parameter of both policies (autograd through the scores),
which is what :mod:`mfsg.verify.parameters` differentiates.

Only the public :class:`~mfsg.learn.players.Player` interface is used, so any trained players work
(language or MLP); the instance must keep the players' action sets (K, U and D of their run).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import torch

from mfsg.config import ChurnConfig, ConfigError, EnvConfig, check_int
from mfsg.env import spec
from mfsg.game.base import DTYPE, ChurnDist
from mfsg.game.exact import enumerate_branches, propagate
from mfsg.learn import actions
from mfsg.learn.players import Inputs, Player, cat_inputs, masked_log_probs

__all__ = ["instance_config", "ExactPlayersGame"]


def instance_config(env: EnvConfig, *, buffer: int, horizon: int, n: int) -> EnvConfig:
    """The run's environment shrunk to an exact instance: B, T and ``fixed(n)`` churn; K, U, D, the
    traffic, the channel and the utilities stay the run's (the players' action sets depend on them)."""
    check_int("instance.buffer", buffer, 1)
    check_int("instance.horizon", horizon, 1)
    check_int("instance.n", n, 1)
    return env.replace(buffer=buffer, horizon=horizon, churn=ChurnConfig(kind="fixed", n=n))


def _obs_key(obs) -> tuple:
    return tuple((k, v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in vars(obs).items())


def _stack(cls, group: list) -> object:
    """A batched observation (episode dim first) of reference observations that share t, as torch tensors
    like :class:`~mfsg.env.batched.BatchedEnv` hands them out (any player encodes them)."""
    fields = {k: torch.from_numpy(np.stack([np.asarray(getattr(o, k)) for o in group])) for k in vars(group[0]) if k != "t"}
    return cls(t=group[0].t, **fields)


class _PlayerRows:
    """The enumeration's row keyer: provisional rows per (observation, slot), deduplicated by the
    players' inputs after the enumeration (:meth:`finalize`)."""

    def __init__(self, cfg: EnvConfig):
        self.n_follower_actions = actions.n_follower_actions(cfg)
        self.lead: dict = {}  # obs key -> (obs, first provisional row)
        self.foll: dict = {}  # (obs_b key, obs_u key) -> (obs_b, obs_u, first provisional row)
        self.n_lead = self.n_foll = 0
        self.f_valid: dict[int, list[int]] = {}

    def leader_rows(self, obs_b: spec.LeaderObs) -> list[int]:
        key = _obs_key(obs_b)
        if key not in self.lead:
            self.lead[key] = (obs_b, self.n_lead)
            self.n_lead += len(obs_b.active)
        first = self.lead[key][1]
        return [first + s for s in range(len(obs_b.active))]

    def follower_rows(self, obs_b, obs_u, valid: list[list[int]]) -> list[int]:
        key = (_obs_key(obs_b), _obs_key(obs_u))
        if key not in self.foll:
            self.foll[key] = (obs_b, obs_u, self.n_foll)
            for s, v in enumerate(valid):
                self.f_valid[self.n_foll + s] = v
            self.n_foll += len(obs_u.active)
        first = self.foll[key][2]
        return [first + s for s in range(len(obs_u.active))]

    def finalize(self, leader: Player, follower: Player):
        """(leader inputs, leader remap, follower inputs, follower mask, follower remap): unique inputs,
        provisional row → unique row, and the followers' valid actions per unique row."""
        li, lrows = self._encode(leader, [(o, None, r) for o, r in self.lead.values()], self.n_lead)
        fi, frows = self._encode(follower, list(self.foll.values()), self.n_foll)
        l_in, l_remap, l_first = _dedup(li, lrows, self.n_lead)
        f_in, f_remap, f_first = _dedup(fi, frows, self.n_foll)
        f_mask = torch.zeros(len(f_first), self.n_follower_actions, dtype=torch.bool)
        for u, prov in enumerate(f_first):
            f_mask[u, self.f_valid[prov]] = True
        return l_in, l_remap, f_in, f_mask, f_remap

    @staticmethod
    def _encode(player: Player, items: list[tuple], n_rows: int) -> tuple[Inputs, list[int]]:
        """Encode every (obs_b, obs_u, first row) item in batches of equal t and slot count; the rows in input order."""
        by_t: dict = {}
        for it in items:
            by_t.setdefault((int(it[0].t), len(it[0].active)), []).append(it)
        parts, order = [], []
        for _, group in sorted(by_t.items()):
            obs_b = _stack(spec.LeaderObs, [g[0] for g in group])
            obs_u = None if group[0][1] is None else _stack(spec.FollowerObs, [g[1] for g in group])
            e_idx, s_idx = torch.nonzero(obs_b.active, as_tuple=True)
            if not bool(obs_b.active.all()):
                raise ConfigError("exact players game: every slot must be active (fixed churn)")
            with torch.no_grad():
                parts.append(player.encode(obs_b, obs_u, e_idx, s_idx))
            order += [g[2] + int(s) for g, s in zip((group[int(e)] for e in e_idx), s_idx, strict=True)]
        inputs = {k: v.to(DTYPE) if v.is_floating_point() else v for k, v in cat_inputs(parts).items()}  # float64 players
        assert sorted(order) == list(range(n_rows)), "every provisional row is encoded once"
        return inputs, order


def _dedup(inputs: Inputs, order: list[int], n_rows: int) -> tuple[Inputs, torch.Tensor, list[int]]:
    """Unique rows of ``inputs`` (row i is provisional row ``order[i]``): (unique inputs, provisional →
    unique index, the first provisional row of each unique row)."""
    keys = [b"".join(inputs[k][i].contiguous().numpy().tobytes() for k in sorted(inputs)) for i in range(len(order))]
    unique: dict[bytes, int] = {}
    keep, first = [], []
    remap = torch.empty(n_rows, dtype=torch.long)
    for i, key in enumerate(keys):
        if key not in unique:
            unique[key] = len(keep)
            keep.append(i)
            first.append(order[i])
        remap[order[i]] = unique[key]
    idx = torch.tensor(keep, dtype=torch.long)
    return {k: v[idx] for k, v in inputs.items()}, remap, first


def _policy_parameters(player: Player, inputs: Inputs, mask: torch.Tensor) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters π depends on: those the scores of ``inputs`` reach (a critic's do not)."""
    named = [(n, p) for n, p in player.named_parameters() if p.requires_grad]
    out = masked_log_probs(player.scores(inputs), mask)
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype)
    grads = torch.autograd.grad((out.masked_fill(~mask, 0) * probe).sum(), [p for _, p in named], allow_unused=True)
    return [(n, p) for (n, p), g in zip(named, grads, strict=True) if g is not None]


class ExactPlayersGame:
    """Exact expected utilities of an instance played by a leader and a unified follower :class:`Player`.

    The players are copied to float64 in eval mode (no dropout); ``params_x`` and ``params_y`` are every
    parameter their policies depend on. ``churn`` is P_N over the instance's numbers of followers."""

    def __init__(self, leader: Player, follower: Player, cfg: EnvConfig, churn: ChurnDist, *, name: str = "exact_players"):
        self.cfg, self.churn, self.name, self.gamma = cfg, churn, name, cfg.utility.gamma
        self.played = (leader, follower)  # as trained (float32): Monte Carlo plays these
        self.leader = copy.deepcopy(leader).to(DTYPE).eval()
        self.follower = copy.deepcopy(follower).to(DTYPE).eval()
        # the deviating follower's own copy: g_F differentiates J_n in it alone (model §8)
        self.follower_own = copy.deepcopy(self.follower)
        rows = _PlayerRows(cfg)
        self.steps, self.state_keys = {}, {}
        for n in churn.support:
            self.steps[n], self.state_keys[n] = enumerate_branches(self.config_for(n), rows)
        l_in, l_remap, f_in, f_mask, f_remap = rows.finalize(self.leader, self.follower)
        for steps in self.steps.values():
            for st in steps:
                st.l_row, st.f_row = l_remap[st.l_row], f_remap[st.f_row]
        self.leader_inputs, self.follower_inputs = l_in, f_in
        self.leader_mask = actions.leader_mask(cfg, len(next(iter(l_in.values()))))
        self.follower_mask = f_mask
        self.x_named = _policy_parameters(self.leader, l_in, self.leader_mask)
        self.y_named = _policy_parameters(self.follower, f_in, f_mask)
        self.params_x = [p for _, p in self.x_named]
        self.params_y = [p for _, p in self.y_named]
        own = dict(self.follower_own.named_parameters())
        self.params_own = [own[n] for n, _ in self.y_named]
        self.dim_x = sum(p.numel() for p in self.params_x)
        self.dim_y = sum(p.numel() for p in self.params_y)
        self.branches = sum(len(st.src) for steps in self.steps.values() for st in steps)

    def config_for(self, n: int) -> EnvConfig:
        return self.cfg.replace(churn=ChurnConfig(kind="fixed", n=n))

    @property
    def rows(self) -> tuple[int, int]:
        """(leader rows, follower rows): the distinct player inputs of the reachable decisions."""
        return len(self.leader_mask), len(self.follower_mask)

    def describe(self) -> str:
        c = self.cfg
        return (f"{self.name}: K={c.n_rbg}, B={c.buffer}, T={c.horizon}, N~{dict(zip(self.churn.support, self.churn.probs))}"
                f"; {self.rows[0]} leader and {self.rows[1]} follower input rows, {self.branches} branches; "
                f"{self.dim_x} + {self.dim_y} policy parameters")

    # ------------------------------------------------------------------ policies and utilities
    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """log π tables [rows, actions] of the leader and the follower (−inf at invalid actions), with autograd."""
        return (masked_log_probs(self.leader.scores(self.leader_inputs), self.leader_mask),
                masked_log_probs(self.follower.scores(self.follower_inputs), self.follower_mask))

    def own_table(self) -> torch.Tensor:
        """log π table of the deviating follower's copy (equal to the follower's at every point)."""
        return masked_log_probs(self.follower_own.scores(self.follower_inputs), self.follower_mask)

    def probs(self, probs=None) -> torch.Tensor:
        if probs is None:
            return self.churn.tensor()
        return probs.on_support(self.churn.support) if isinstance(probs, ChurnDist) else probs

    def utilities(self, lp_l, lp_own, lp_oth, probs=None) -> tuple[torch.Tensor, torch.Tensor]:
        """E_{N~P_N} of (J_L with all followers on ``lp_oth``, J_n of a follower on ``lp_own`` against ``lp_oth``
        averaged over the deviating follower) (model §8)."""
        w = self.probs(probs)
        jl, jf = torch.zeros((), dtype=DTYPE), torch.zeros((), dtype=DTYPE)
        for i, n in enumerate(self.churn.support):
            a, b = propagate(self.steps[n], self.state_keys[n], lp_l, lp_own, lp_oth, n, self.gamma)
            jl, jf = jl + w[i] * a, jf + w[i] * b.mean()
        return jl, jf

    def values(self, probs=None) -> tuple[float, float]:
        """(J_L, J_F) at the players' current parameters."""
        with torch.no_grad():
            lp_l, lp_f = self.tables()
            jl, jf = self.utilities(lp_l, lp_f, lp_f, probs)
        return float(jl), float(jf)

    # ------------------------------------------------------------------ flat parameter vectors
    def point(self) -> tuple[torch.Tensor, torch.Tensor]:
        flat = lambda ps: torch.cat([p.detach().reshape(-1) for p in ps])  # noqa: E731
        return flat(self.params_x), flat(self.params_y)

    @torch.no_grad()
    def _set(self, params, flat: torch.Tensor) -> None:
        i = 0
        for p in params:
            p.copy_(flat[i : i + p.numel()].view_as(p))
            i += p.numel()

    @contextmanager
    def at(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        """Temporarily move the players to (x, y); restored on exit."""
        x0, y0 = self.point()
        try:
            if x is not None:
                self._set(self.params_x, x)
            if y is not None:
                self._set(self.params_y, y)
                self._set(self.params_own, y)
            yield
        finally:
            self._set(self.params_x, x0)
            self._set(self.params_y, y0)
            self._set(self.params_own, y0)

    # ------------------------------------------------------------------ Monte Carlo with the same players
    def monte_carlo(self, n: int, episodes: int, seed: int) -> dict:
        """J_L and the mean follower utility from :class:`mfsg.env.BatchedEnv` episodes of the instance with
        ``n`` followers, played by the same players as trained (:func:`mfsg.learn.rollout.rollout`; the exact
        game uses their float64 copies): means and standard errors."""
        from mfsg.env import BatchedEnv
        from mfsg.learn.rollout import rollout

        env = BatchedEnv(self.config_for(n), episodes, seed=seed)
        with torch.no_grad():
            ro = rollout(env, *self.played, seed=seed)
        disc = self.gamma ** torch.arange(ro.leader_reward.shape[1], dtype=DTYPE)
        ret_l = (ro.leader_reward.to(DTYPE) * disc).sum(1)
        ret_f = (ro.follower_reward.to(DTYPE) * disc).sum(2).sum(1) / n
        se = lambda r: float(r.std() / episodes**0.5)  # noqa: E731
        return {"leader": float(ret_l.mean()), "leader_se": se(ret_l), "follower": float(ret_f.mean()),
                "follower_se": se(ret_f), "episodes": episodes}
