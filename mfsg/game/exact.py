"""Exact expected utilities of small model §2 instances with tabular softmax policies (model §8).

The game: the leader's parameters x are logits per *leader observation row* (the BS-for-UE-n view
of o_b(t), model §5 roles: the per-RBG outcome of t−1 seen relative to UE n — idle, decoded
this UE, decoded another UE, undecodable — and UE n's last UCM and DCM), one DCM per active UE;
the followers share logits y per *follower observation row* o_n(t) = (buffer, own last UCM,
own last access, DCM just received) over the valid (UCM, access) pairs (model §2.4). In each row
the first valid action's logit is fixed at 0, so parameters are identifiable.

Exactness without a second copy of the rules: the transitions are *enumerated by running*
:class:`mfsg.env.reference.ReferenceEnv` itself. From every reachable state, every combination
of the TTI's random events (arrival or not per UE, erasure or not per RBG — forced through the
environment's :class:`~mfsg.env.draws.Draws`) and of the players' actions is stepped once; the
branch records its constant probability, which table entries multiply it, the next state and
the rewards the environment returned. The forward pass then propagates the exact state
distribution with gathers and ``index_add`` — differentiable in (x, y) — and sums the
discounted rewards (model §4, γ of the utility config). Churn is ``fixed(n)`` per support value
of P_N (the ``per_episode`` process of model §3 is the mixture over P_N).
"""

from __future__ import annotations

import copy
import itertools
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.env import spec
from mfsg.env.draws import Draws
from mfsg.env.reference import ReferenceEnv
from mfsg.game.base import DTYPE, NO_REGULARIZATION, ChurnDist, Game, Regularization

__all__ = ["ObsCoder", "TabularPolicies", "ExactMacGame", "MAX_BRANCHES", "enumerate_branches", "propagate",
           "monte_carlo_utilities"]

# Refuse instances whose enumeration would exceed this many branches per TTI (keeps CPU use sane).
MAX_BRANCHES = 2_000_000
_FORCE_YES, _FORCE_NO = 0.0, 1.0  # a uniform draw u makes "u < p" true (p > 0) or false (p ≤ 1)
_REL_CODES = 4  # per-RBG outcome relative to a UE: idle, decoded this UE, decoded another, undecodable


class ObsCoder:
    """Integer codes of the tabular observation rows, for reference and batched observations."""

    def __init__(self, cfg: EnvConfig):
        self.K, self.U, self.D, self.A = cfg.n_rbg, cfg.ucm_vocab, cfg.dcm_vocab, cfg.n_access

    @staticmethod
    def _batched(v) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
        return t[None] if t.dim() == 0 or (t.dim() == 1) else t

    def leader_codes(self, obs: spec.LeaderObs) -> torch.Tensor:
        """[E, S] row code of the BS's decision for each slot (batched obs; a reference obs gives E = 1)."""
        outcome, dec = self._batched(obs.outcome).long(), self._batched(obs.decoded_id).long()
        ue = self._batched(obs.ue_id).long()
        mine = dec[:, None, :] == ue[:, :, None]  # [E, S, K]
        rel = torch.where(
            outcome[:, None, :] == spec.OUT_DECODED,
            torch.where(mine, 1, 2),
            torch.where(outcome[:, None, :] == spec.OUT_UNDECODABLE, 3, 0),
        )
        code = (rel * (_REL_CODES ** torch.arange(self.K))).sum(dim=2)
        code = code * self.U + self._batched(obs.prev_ucm).long()
        return code * self.D + self._batched(obs.prev_dcm).long()

    def follower_codes(self, obs: spec.FollowerObs) -> torch.Tensor:
        """[E, S] row code of each UE's decision."""
        code = self._batched(obs.buffer).long() * self.U + self._batched(obs.prev_ucm).long()
        code = code * self.A + self._batched(obs.prev_access).long()
        return code * self.D + self._batched(obs.dcm).long()

    def follower_valid(self, buffer: int) -> list[int]:
        """Valid joint actions a = ucm·A + access (model §2.4: TX and DELETE need a dPDU)."""
        return [u * self.A + acc for u in range(self.U) for acc in range(self.A) if buffer > 0 or acc == spec.IDLE]

    def follower_buffer(self, code: int) -> int:
        return code // (self.D * self.A * self.U)


@dataclass
class _Rows:
    """A table of softmax rows: code → row, the free (row, column) entries, and the valid mask."""

    n_actions: int
    codes: dict = field(default_factory=dict)
    valid: list = field(default_factory=list)

    def row(self, code: int, valid: list[int]) -> int:
        if code not in self.codes:
            self.codes[code] = len(self.valid)
            self.valid.append(valid)
        return self.codes[code]

    def freeze(self) -> None:
        free = [(r, a) for r, v in enumerate(self.valid) for a in v[1:]]
        self.free_rows = torch.tensor([r for r, _ in free], dtype=torch.long)
        self.free_cols = torch.tensor([a for _, a in free], dtype=torch.long)
        base = torch.full((len(self.valid), self.n_actions), float("-inf"), dtype=DTYPE)
        for r, v in enumerate(self.valid):
            base[r, v] = 0.0
        self.base = base
        self.lookup_size = max(self.codes) + 1
        self.lookup = torch.full((self.lookup_size,), -1, dtype=torch.long)
        for c, r in self.codes.items():
            self.lookup[c] = r

    @property
    def dim(self) -> int:
        return len(self.free_rows)

    def log_probs(self, theta: torch.Tensor) -> torch.Tensor:
        """[rows, actions] log-softmax table (−inf at invalid actions)."""
        logits = self.base.index_put((self.free_rows, self.free_cols), theta)
        return torch.log_softmax(logits, dim=1)

    def rows_of(self, codes: torch.Tensor) -> torch.Tensor:
        rows = self.lookup[codes.clamp(0, self.lookup_size - 1)]
        bad = (codes >= self.lookup_size) | (rows < 0)
        if bool(bad.any()):
            raise KeyError(f"observation code {int(codes[bad][0])} was never reached by the exact enumeration")
        return rows


class TabularPolicies:
    """The leader's and the followers' tabular softmax policies over the enumerated rows.

    As the enumeration's row keyer (see :func:`enumerate_branches`), a decision's row is its
    tabular observation code."""

    def __init__(self, cfg: EnvConfig):
        self.coder = ObsCoder(cfg)
        self.D = cfg.dcm_vocab
        self.leader = _Rows(cfg.dcm_vocab)
        self.follower = _Rows(cfg.ucm_vocab * cfg.n_access)

    def freeze(self) -> None:
        self.leader.freeze()
        self.follower.freeze()

    def leader_rows(self, obs_b: spec.LeaderObs) -> list[int]:
        return [self.leader.row(int(c), list(range(self.D))) for c in self.coder.leader_codes(obs_b)[0]]

    def follower_rows(self, obs_b: spec.LeaderObs, obs_u: spec.FollowerObs, valid: list[list[int]]) -> list[int]:
        codes = self.coder.follower_codes(obs_u)[0]
        return [self.follower.row(int(c), v) for c, v in zip(codes, valid, strict=True)]

    def act(self, obs_b: spec.LeaderObs, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Sample DCMs [E, S] for batched leader observations."""
        return self._sample(self.leader, self.coder.leader_codes(obs_b), x, gen)

    def respond(
        self, obs_u: spec.FollowerObs, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (UCM, access) [E, S] for batched follower observations (inactive slots: row of an empty buffer)."""
        codes = self.coder.follower_codes(obs_u)
        active = torch.as_tensor(obs_u.active)
        codes = torch.where(active, codes, self.coder.follower_codes(_idle_obs(obs_u)))
        a = self._sample(self.follower, codes, y, gen)
        return a // self.coder.A, a % self.coder.A

    @staticmethod
    def _sample(rows: _Rows, codes: torch.Tensor, theta: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        probs = rows.log_probs(theta.detach()).exp()[rows.rows_of(codes)]  # [E, S, A]
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=gen).reshape(codes.shape)


def _idle_obs(obs: spec.FollowerObs) -> spec.FollowerObs:
    z = torch.zeros_like(torch.as_tensor(obs.buffer))
    return spec.FollowerObs(t=obs.t, active=obs.active, buffer=z, prev_ucm=z, prev_access=z, dcm=z)


@dataclass
class _Step:
    """Branches of one TTI: from state ``src`` to ``dst`` with probability const·Π policy factors."""

    src: torch.Tensor  # [M]
    dst: torch.Tensor  # [M]
    log_const: torch.Tensor  # [M]
    l_row: torch.Tensor  # [M, n] leader row of each slot's DCM decision
    l_act: torch.Tensor  # [M, n] DCM sent
    f_row: torch.Tensor  # [M, n]
    f_act: torch.Tensor  # [M, n] joint action index ucm·A + access
    r_leader: torch.Tensor  # [M]
    r_follower: torch.Tensor  # [M, n]


def _state_key(env: ReferenceEnv, track_counts: bool):
    ues = tuple(
        None
        if ue is None
        else (
            tuple(p.received for p in ue.buffer),
            ue.prev_ucm,
            ue.prev_access,
            ue.prev_dcm,
            *((ue.generated, ue.delivered) if track_counts else ()),
        )
        for ue in env.ues
    )
    return ues, tuple(env.outcome), tuple(env.decoded_id)


_ATOMIC = (int, float, bool, str, type(None), tuple, np.int64, np.float64, np.bool_)


def _copy(v):
    """Structural copy of lists, deques and mutable dataclasses; everything else is shared
    (numbers, strings, tuples, frozen dataclasses such as the config and the draws, the generator)."""
    t = type(v)
    if t in _ATOMIC:
        return v
    if t is list:
        return [_copy(i) for i in v]
    if t is deque:
        return deque(_copy(i) for i in v)
    params = getattr(t, "__dataclass_params__", None)
    if params is not None and not params.frozen:
        new = copy.copy(v)
        for name in t.__dataclass_fields__:
            item = getattr(v, name)
            if type(item) not in _ATOMIC:
                setattr(new, name, _copy(item))
        return new
    return v


def _clone(env: ReferenceEnv) -> ReferenceEnv:
    """An independent copy of a reference environment (much faster than ``copy.deepcopy``)."""
    new = copy.copy(env)
    new.__dict__.update({k: _copy(v) for k, v in vars(env).items()})
    return new


def _bernoulli_branches(probs: tuple[float, ...]):
    """Every yes/no pattern with its probability (patterns of probability 0 skipped) and forcing draws."""
    for pattern in itertools.product((True, False), repeat=len(probs)):
        p = 1.0
        for yes, q in zip(pattern, probs, strict=True):
            p *= q if yes else 1 - q
        if p > 0:
            yield p, np.array([_FORCE_YES if yes else _FORCE_NO for yes in pattern])


def enumerate_branches(cfg: EnvConfig, rows) -> tuple[list[_Step], list[list]]:
    """All reachable branches of every TTI of ``cfg`` (fixed churn), stepping ReferenceEnv.

    ``rows`` names each decision's policy row: ``rows.leader_rows(obs_b)`` (one per slot) and
    ``rows.follower_rows(obs_b, obs_u, valid)`` (``valid``: each slot's valid joint actions).
    Returns the steps and, per TTI boundary t = 0..T, the list of state keys (index = state id).
    """
    S, K, D = cfg.n_slots, cfg.n_rbg, cfg.dcm_vocab
    coder, track = ObsCoder(cfg), cfg.utility.beta_fair > 0
    env = ReferenceEnv(cfg, seed=0)
    states = {_state_key(env, track): (0, env)}
    steps, keys = [], [list(states)]
    for _ in range(cfg.horizon):
        branches: dict = {}
        nxt: dict = {}
        for _key, (si, s_env) in states.items():
            for p_arr, arr in _bernoulli_branches(cfg.arrival_probs()):
                for p_dec, dec in _bernoulli_branches((cfg.tbler,) * K):
                    draws = Draws(n_init=0.0, join=_FORCE_NO, leave=np.full(S, _FORCE_NO), arrival=arr, decode=dec)
                    e1 = _clone(s_env)
                    obs_b = e1.begin_tti(draws)
                    l_rows = rows.leader_rows(obs_b)
                    for dcm in itertools.product(range(D), repeat=S):
                        e2 = _clone(e1)
                        obs_u = e2.deliver(dcm)
                        valid = [coder.follower_valid(int(b)) for b in obs_u.buffer]
                        f_rows = rows.follower_rows(obs_b, obs_u, valid)
                        for acts in itertools.product(*valid):
                            e3 = _clone(e2)
                            rew = e3.end_tti([a // coder.A for a in acts], [a % coder.A for a in acts])
                            nkey = _state_key(e3, track)
                            if nkey not in nxt:
                                nxt[nkey] = (len(nxt), e3)
                            bkey = (
                                si,
                                nxt[nkey][0],
                                tuple(l_rows),
                                dcm,
                                tuple(f_rows),
                                acts,
                                float(rew.leader),
                                tuple(float(r) for r in rew.follower),
                            )
                            branches[bkey] = branches.get(bkey, 0.0) + p_arr * p_dec
            if len(branches) > MAX_BRANCHES:
                raise ConfigError(f"exact game has over {MAX_BRANCHES} branches per TTI: allowed smaller instances")
        steps.append(_pack(branches))
        states = nxt
        keys.append(list(nxt))
    return steps, keys


def _pack(branches: dict) -> _Step:
    keys = list(branches)
    col = lambda i, dt=torch.long: torch.tensor([k[i] for k in keys], dtype=dt)  # noqa: E731
    return _Step(
        src=col(0),
        dst=col(1),
        log_const=torch.log(torch.tensor(list(branches.values()), dtype=DTYPE)),
        l_row=col(2),
        l_act=col(3),
        f_row=col(4),
        f_act=col(5),
        r_leader=col(6, DTYPE),
        r_follower=col(7, DTYPE),
    )


class ExactMacGame(Game):
    """Exact expected discounted utilities of model §2 with tabular softmax policies."""

    def __init__(
        self,
        cfg: EnvConfig,
        churn: ChurnDist,
        *,
        reg: Regularization = NO_REGULARIZATION,
        name: str = "exact_mac",
        bound: float = 6.0,
    ):
        self.cfg, self.churn, self.reg, self.name, self.bound = cfg, churn, reg, name, bound
        self.policies = TabularPolicies(cfg)
        self.steps: dict[int, list[_Step]] = {}
        self.state_keys: dict[int, list[list]] = {}
        for n in churn.support:
            self.steps[n], self.state_keys[n] = enumerate_branches(self.config_for(n), self.policies)
        self.policies.freeze()
        self.dim_x, self.dim_y = self.policies.leader.dim, self.policies.follower.dim
        self.gamma = cfg.utility.gamma

    def config_for(self, n: int) -> EnvConfig:
        """The model §2 instance with ``fixed(n)`` churn (a per-UE ``p_arrival`` must have n entries)."""
        return self.cfg.replace(churn=ChurnConfig(kind="fixed", n=n))

    # ------------------------------------------------------------------ propagation
    def _propagate(self, x, y_own, y_others, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(J_L with all followers on y_others, [n] J_i when follower i alone plays y_own)."""
        lp_l = self.policies.leader.log_probs(x)
        lp_own, lp_oth = self.policies.follower.log_probs(y_own), self.policies.follower.log_probs(y_others)
        return propagate(self.steps[n], self.state_keys[n], lp_l, lp_own, lp_oth, n, self.gamma)

    def leader_utility(self, x, y, n):
        return self._propagate(x, y, y, n)[0]

    def follower_utility(self, x, y_own, y_others, n):
        return self._propagate(x, y_own, y_others, n)[1].mean()

    def follower_utilities(self, x, y_own, y_others, n) -> torch.Tensor:
        """[n] J_i(x, y_i = y_own, y_−i = y_others) per deviating follower i."""
        return self._propagate(x, y_own, y_others, n)[1]

    def first_tti(self, x, y, n: int) -> tuple[dict, float, torch.Tensor]:
        """After the first TTI with all followers on y: ({state key: probability}, E r_L, [n] E r_n).

        State keys are those of :func:`state_key` on a :class:`ReferenceEnv` (tests sample it).
        """
        st = self.steps[n][0]
        lp_l, lp_f = self.policies.leader.log_probs(x), self.policies.follower.log_probs(y)
        prob = (st.log_const + lp_l[st.l_row, st.l_act].sum(1) + lp_f[st.f_row, st.f_act].sum(1)).exp()
        dist = torch.zeros(len(self.state_keys[n][1]), dtype=DTYPE).index_add(0, st.dst, prob)
        keys = self.state_keys[n][1]
        return (
            {keys[i]: float(p) for i, p in enumerate(dist)},
            float((prob * st.r_leader).sum()),
            (prob[:, None] * st.r_follower).sum(0),
        )

    def state_key(self, env: ReferenceEnv):
        """The key under which the enumeration stores ``env``'s state."""
        return _state_key(env, self.cfg.utility.beta_fair > 0)


def propagate(steps: list[_Step], state_keys: list[list], lp_l, lp_own, lp_oth, n: int, gamma: float):
    """Exact discounted utilities from log-probability tables (rows × actions, −inf where invalid):
    (J_L with all followers on ``lp_oth``, [n] J_i when follower i alone plays ``lp_own``).

    The state distribution is propagated TTI by TTI with gathers and ``index_add``, so the result
    is differentiable in the tables (and through them in whatever parameters produced them)."""
    eye = torch.eye(n, dtype=torch.bool)
    p_sym = torch.ones(1, dtype=DTYPE)
    p_dev = torch.ones(1, n, dtype=DTYPE)
    j_leader = torch.zeros((), dtype=DTYPE)
    j_follow = torch.zeros(n, dtype=DTYPE)
    for t, st in enumerate(steps):
        disc = gamma**t
        base = st.log_const + lp_l[st.l_row, st.l_act].sum(dim=1)
        oth = lp_oth[st.f_row, st.f_act]  # [M, n]
        own = lp_own[st.f_row, st.f_act]
        sym = base + oth.sum(dim=1)
        dev = base[:, None] + torch.where(eye[None], own[:, :, None], oth[:, :, None]).sum(dim=1)  # [M, n]
        prob_sym = p_sym[st.src] * sym.exp()
        prob_dev = p_dev[st.src] * dev.exp()
        j_leader = j_leader + disc * (prob_sym * st.r_leader).sum()
        j_follow = j_follow + disc * (prob_dev * st.r_follower).sum(dim=0)
        n_next = len(state_keys[t + 1])
        p_sym = torch.zeros(n_next, dtype=DTYPE).index_add(0, st.dst, prob_sym)
        p_dev = torch.zeros(n_next, n, dtype=DTYPE).index_add(0, st.dst, prob_dev)
    return j_leader, j_follow


def monte_carlo_utilities(game: ExactMacGame, x, y, n: int, episodes: int, seed: int) -> dict:
    """Monte Carlo estimates of J_L and of the mean follower utility from :class:`mfsg.env.BatchedEnv`
    driven by the same tabular policies (all followers on y); means and standard errors."""
    from mfsg.env.batched import BatchedEnv

    env = BatchedEnv(game.config_for(n), episodes, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    ret_l = torch.zeros(episodes, dtype=DTYPE)
    ret_f = torch.zeros(episodes, dtype=DTYPE)
    for t in range(env.T):
        obs_b = env.begin_tti()
        obs_u = env.deliver(game.policies.act(obs_b, x, gen))
        rew = env.end_tti(*game.policies.respond(obs_u, y, gen))
        ret_l += game.gamma**t * rew.leader
        ret_f += game.gamma**t * rew.follower.sum(dim=1) / n
    se = lambda r: float(r.std() / episodes**0.5)  # noqa: E731
    return {
        "leader": float(ret_l.mean()),
        "leader_se": se(ret_l),
        "follower": float(ret_f.mean()),
        "follower_se": se(ret_f),
    }
