"""PettingZoo ``ParallelEnv`` over the reference environment: the BS and the UEs as agents that
come and go (model §2–§4).

Agents are ``"bs"`` and ``"ue_<identity>"``; the identity is the UE's ``ue_id``, so a UE that
leaves and a new one that joins the same slot are different agents (model §3).

**Two parallel steps per TTI.** model §2 is sequential (the leader moves, then the followers
observe its DCM), so one TTI is played as two ``step`` calls, and every observation carries
the ``phase``:

- *leader phase* (``phase=0``): ``"bs"`` acts with one DCM per UE slot
  (``MultiDiscrete([D] * S)``; entries of empty slots are ignored); UEs' actions are ignored.
- *follower phase* (``phase=1``): each UE acts with ``[ucm, access]``
  (``MultiDiscrete([U, K + 2])``, access 0 = IDLE, k = TX on RBG k, K + 1 = DELETE);
  the BS's action is ignored. This step returns the TTI's rewards (model §4): ``r_L(t)`` to
  the BS and ``r_n(t)`` to each UE; the leader-phase step returns 0 to everyone.

A missing action of a live agent is its no-op (DCM 0 everywhere, resp. UCM 0 and IDLE);
actions for agents that are not live are ignored.

**Invalid actions (this adapter's policy).** Every observation has an ``action_mask``
(a tuple of int8 masks, one per action component, as ``MultiDiscrete.sample(mask=...)``
expects): out-of-phase agents may only pick the no-op, empty slots only DCM 0, and a UE with
an empty buffer only IDLE. A UE that nevertheless sends TX or DELETE with an empty buffer
(model §2.4) is played as IDLE, and the event is counted in ``infos[ue]["invalid_actions"]``
(that UE, this episode) and ``infos["bs"]["invalid_actions"]`` (all UEs, this episode).
Actions outside the action space still raise :class:`~mfsg.env.reference.InvalidActionError`,
and the core environments always raise on every invalid action.

**Churn.** Departures and joins happen when a TTI begins (model §2.1), i.e. inside the
follower-phase step of the previous TTI: a departing UE gets ``terminated=True`` (with its last
reward and an observation of its state at the end of its last TTI) and is absent from
``agents`` afterwards; a joining UE appears in the returned dicts and in ``agents``.
After ``horizon`` TTIs every live agent gets ``truncated=True`` and ``agents`` becomes empty.
``possible_agents`` lists every identity one episode can create (:func:`max_identities`).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from mfsg.config import EnvConfig
from mfsg.env import spec
from mfsg.env.reference import InvalidActionError, ReferenceEnv

LEADER_PHASE, FOLLOWER_PHASE = 0, 1
BS = "bs"
N_OUTCOMES = len((spec.OUT_IDLE, spec.OUT_DECODED, spec.OUT_UNDECODABLE))  # per RBG (model §2.5)
_MASK = np.int8


def ue_agent(ue_id: int) -> str:
    """Agent name of the UE with identity ``ue_id``."""
    return f"ue_{ue_id}"


def max_identities(cfg: EnvConfig) -> int:
    """The largest number of UE identities one episode can create (model §3), attained with
    positive probability: every UE at reset plus at most one joiner per later TTI."""
    c, horizon = cfg.churn, cfg.horizon
    if c.kind == "fixed":
        return c.n
    if c.kind == "trace":
        sets = [set(s) for s in c.schedule[:horizon]]
        return len(sets[0]) + sum(len(now - before) for before, now in zip(sets, sets[1:], strict=False))
    if c.kind == "per_episode" or c.p_join == 0 or c.p_leave == 0 or c.n_min == c.n_max:
        return c.n_max  # nobody can leave, or nobody can join: at most n_max UEs ever
    return c.n_max + horizon - 1


def _only(n: int, allowed: int | None = 0) -> np.ndarray:
    """Mask of ``n`` actions: all allowed if ``allowed`` is None, else only ``allowed``."""
    if allowed is None:
        return np.ones(n, dtype=_MASK)
    mask = np.zeros(n, dtype=_MASK)
    mask[allowed] = 1
    return mask


class MacParallelEnv(ParallelEnv):
    """One episode of the reference env (:class:`~mfsg.env.reference.ReferenceEnv`) as a ParallelEnv."""

    metadata = {"name": "mfsg_uplink_mac_v0", "render_modes": []}

    def __init__(self, config: EnvConfig | None = None, seed: int | None = None, **overrides):
        cfg = config if config is not None else EnvConfig()
        self.cfg = cfg.replace(**overrides) if overrides else cfg
        self.env = ReferenceEnv(self.cfg, seed=seed)
        S, K, U, D = self.cfg.n_slots, self.cfg.n_rbg, self.cfg.ucm_vocab, self.cfg.dcm_vocab
        self.n_identities = max_identities(self.cfg)
        self.possible_agents = [BS] + [ue_agent(i) for i in range(self.n_identities)]
        self._known = set(self.possible_agents)
        identities = lambda n: spaces.Box(spec.NO_UE, self.n_identities - 1, (n,), np.int64)  # noqa: E731
        self._bs_obs_space = spaces.Dict({
            "phase": spaces.Discrete(2),
            "t": spaces.Discrete(self.cfg.horizon + 1),
            "active": spaces.MultiBinary(S),
            "ue_id": identities(S),
            "outcome": spaces.MultiDiscrete([N_OUTCOMES] * K),
            "decoded_id": identities(K),
            "prev_ucm": spaces.MultiDiscrete([U] * S),
            "prev_dcm": spaces.MultiDiscrete([D] * S),
            "dcm": spaces.MultiDiscrete([D] * S),
            "action_mask": spaces.Tuple([spaces.MultiBinary(D)] * S),
        })
        self._ue_obs_space = spaces.Dict({
            "phase": spaces.Discrete(2),
            "t": spaces.Discrete(self.cfg.horizon + 1),
            "buffer": spaces.Discrete(self.cfg.buffer + 1),
            "prev_ucm": spaces.Discrete(U),
            "prev_access": spaces.Discrete(self.cfg.n_access),
            "dcm": spaces.Discrete(D),
            "action_mask": spaces.Tuple((spaces.MultiBinary(U), spaces.MultiBinary(self.cfg.n_access))),
        })
        self._bs_act_space = spaces.MultiDiscrete([D] * S)
        self._ue_act_space = spaces.MultiDiscrete([U, self.cfg.n_access])
        self.agents: list[str] = []
        self.phase = LEADER_PHASE

    # ------------------------------------------------------------------ spaces
    def _check_agent(self, agent: str) -> None:
        if agent not in self._known:
            raise KeyError(f"agent={agent!r} is unknown: allowed 'bs' or 'ue_<i>' with i < {self.n_identities}")

    def observation_space(self, agent: str) -> spaces.Dict:
        self._check_agent(agent)
        return self._bs_obs_space if agent == BS else self._ue_obs_space

    def action_space(self, agent: str) -> spaces.MultiDiscrete:
        self._check_agent(agent)
        return self._bs_act_space if agent == BS else self._ue_act_space

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None, options: dict | None = None):
        self.env.reset(seed)
        if seed is not None:
            self._bs_act_space.seed(seed)
            self._ue_act_space.seed(seed + 1)
        self.invalid = {}  # agent -> access actions played as IDLE this episode
        self.env.begin_tti()
        self.phase = LEADER_PHASE
        self.agents = [BS] + self._ue_agents()
        return self._observations(self.agents), self._infos(self.agents)

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("step() called after the episode ended: call reset() first")
        if self.phase == LEADER_PHASE:
            return self._leader_step(actions)
        return self._follower_step(actions)

    def _leader_step(self, actions: dict):
        """model §2.3: the BS's DCMs reach the UEs."""
        dcm = self._action(BS, actions)
        self.env.deliver(dcm)
        self.phase = FOLLOWER_PHASE
        agents = self.agents
        return (
            self._observations(agents),
            dict.fromkeys(agents, 0.0),
            dict.fromkeys(agents, False),
            dict.fromkeys(agents, False),
            self._infos(agents),
        )

    def _follower_step(self, actions: dict):
        """model §2.4–§2.8, then §2.1–§2.2 of the next TTI (churn and traffic)."""
        S = self.cfg.n_slots
        ucm, access = np.zeros(S, dtype=np.int64), np.zeros(S, dtype=np.int64)
        buffers, slots = self.env.follower_observation().buffer, self._slots()
        chosen = {s: self._action(agent, actions) for s, agent in slots.items()}  # raises before any change
        for s, agent in slots.items():
            ucm[s], access[s] = chosen[s]
            if access[s] != spec.IDLE and buffers[s] == 0:  # adapter policy: played as IDLE
                access[s] = spec.IDLE
                self.invalid[agent] = self.invalid.get(agent, 0) + 1
        r = self.env.end_tti(ucm, access)
        before = self.agents
        rewards = {BS: float(r.leader)}
        rewards.update({agent: float(r.follower[s]) for s, agent in self._slots().items()})
        self.phase = LEADER_PHASE
        obs = self._observations(before)  # end-of-TTI state: the last observation of leavers
        infos = self._infos(before, team_reward=float(r.team))
        if self.env.done:
            self.agents = []
            return obs, rewards, dict.fromkeys(before, False), dict.fromkeys(before, True), infos
        self.env.begin_tti()
        self.agents = [BS] + self._ue_agents()
        left = set(before) - set(self.agents)
        joined = [a for a in self.agents if a not in rewards]
        obs.update(self._observations(self.agents))  # the next TTI's leader phase
        infos.update(self._infos(joined))
        rewards.update(dict.fromkeys(joined, 0.0))
        everyone = before + joined
        terminated = {a: a in left for a in everyone}
        return obs, rewards, terminated, dict.fromkeys(everyone, False), infos

    # ------------------------------------------------------------------ helpers
    def _slots(self) -> dict[int, str]:
        """Slot -> agent name of every attached UE."""
        return {s: ue_agent(ue.ue_id) for s, ue in enumerate(self.env.ues) if ue is not None}

    def _ue_agents(self) -> list[str]:
        return list(self._slots().values())

    def _action(self, agent: str, actions: dict) -> np.ndarray:
        """The agent's action (its no-op if missing), checked against its action space."""
        space = self.action_space(agent)
        a = actions.get(agent)
        if a is None:
            return np.zeros(space.shape, dtype=np.int64)
        a = np.asarray(a, dtype=np.int64)
        if not space.contains(a):
            raise InvalidActionError(f"action[{agent}]={a.tolist()} is invalid: allowed {space}")
        return a

    def _observations(self, agents: list[str]) -> dict[str, dict]:
        """Observations of attached ``agents`` now (model §2.3 o_b for the BS, §2.4 o_n for UEs)."""
        follow, slot_of = self.env.follower_observation(), {a: s for s, a in self._slots().items()}
        return {a: self._observe_bs() if a == BS else self._observe_ue(follow, slot_of[a]) for a in agents}

    def _observe_bs(self) -> dict:
        lead, S, D = self.env.leader_observation(), self.cfg.n_slots, self.cfg.dcm_vocab
        acting = self.phase == LEADER_PHASE
        dcm = np.zeros(S, dtype=np.int64) if acting else np.asarray(self.env.dcm, dtype=np.int64)
        return {
            "phase": np.int64(self.phase),
            "t": np.int64(lead.t),
            "active": lead.active.astype(np.int8),
            "ue_id": lead.ue_id.astype(np.int64),
            "outcome": lead.outcome.astype(np.int64),
            "decoded_id": lead.decoded_id.astype(np.int64),
            "prev_ucm": lead.prev_ucm.astype(np.int64),
            "prev_dcm": lead.prev_dcm.astype(np.int64),
            "dcm": dcm,
            "action_mask": tuple(_only(D, None if acting and lead.active[s] else 0) for s in range(S)),
        }

    def _observe_ue(self, follow: spec.FollowerObs, slot: int) -> dict:
        acting = self.phase == FOLLOWER_PHASE
        buffer = int(follow.buffer[slot])
        return {
            "phase": np.int64(self.phase),
            "t": np.int64(self.env.t),
            "buffer": np.int64(buffer),
            "prev_ucm": np.int64(follow.prev_ucm[slot]),
            "prev_access": np.int64(follow.prev_access[slot]),
            "dcm": np.int64(follow.dcm[slot] if acting else 0),  # d_n(t) is known only once delivered
            "action_mask": (
                _only(self.cfg.ucm_vocab, None if acting else 0),
                _only(self.cfg.n_access, None if acting and buffer > 0 else spec.IDLE),
            ),
        }

    def _infos(self, agents: list[str], **extra) -> dict[str, dict]:
        slot_of = {a: s for s, a in self._slots().items()}
        bs = {"phase": self.phase, "t": self.env.t, "invalid_actions": sum(self.invalid.values()), **extra}
        ue = lambda a: {"slot": slot_of[a], "invalid_actions": self.invalid.get(a, 0), **extra}  # noqa: E731
        return {a: dict(bs) if a == BS else ue(a) for a in agents}
