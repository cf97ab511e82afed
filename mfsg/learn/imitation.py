"""Imitation of a rule-based protocol (model §6 "LLM-PL"; also a warm start for any player).

A teacher protocol (:mod:`mfsg.protocols`) plays whole episodes on the batched environment;
each decision it makes, encoded by the student player, becomes a (inputs, action) pair, and
the student minimizes −log π(a_teacher | s) over the fixed action set (masked, model §5).

Prompts repeat a lot (model §5 observations are small), so demonstrations can be *deduplicated*:
one row per distinct (inputs, valid-action mask) with the teacher's action counts, and the loss
is the count-weighted cross-entropy, the same objective as over the raw decisions.

The SR/grant teacher keeps a hidden round-robin pointer (model §6), which the BS's prompt does not
show after a TTI without grants; ``observed_pointer`` re-derives it from the prompt each TTI
(:class:`ObservedSrGrant`), so every teacher decision is a function of what the student sees.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from mfsg.config import ConfigError, EnvConfig, check_int, check_nonneg, check_prob
from mfsg.env import BatchedEnv, spec
from mfsg.learn import actions
from mfsg.learn.device import module_device, to_device
from mfsg.learn.players import Inputs, Player, cat_inputs, masked_log_probs, take_inputs
from mfsg.protocols import make_protocol
from mfsg.protocols.base import Protocol
from mfsg.protocols.sr_grant import SrGrant, observed_pointer
from mfsg.seeds import derive

WEIGHTINGS = ("count", "uniform")
OBJECTIVES = ("policy", "sequence")


@dataclass(frozen=True)
class ImitationConfig:
    """``epochs`` passes for the leader and ``follower_epochs`` (None: same) for the follower;
    the learning rate decays from ``lr`` to ``lr_final`` (None: constant) on a cosine over all steps;
    ``dedup`` trains on distinct decisions with counts; ``weighting`` of a distinct input in the loss:
    ``count`` (the decision-level objective) or ``uniform`` (every distinct input alike, so rare inputs
    such as large N weigh as much as the common ones; same minimizer for a deterministic teacher
    that the player can represent); ``observed_pointer`` uses
    :class:`ObservedSrGrant` as the SR/grant teacher; ``heldout_episodes`` teacher episodes per
    evaluation N measure agreement after fitting (0: skip). ``objective``: ``policy`` fits
    log π(a | s) over the valid candidates (LLM4MAC Eq. 10), which leaves every token probability
    that is common to all candidates (the first word, the end of the action) untrained;
    ``sequence`` fits the language model's own likelihood of the teacher's action text, end token
    included (Eq. 9 without the softmax over candidates): LLM-PL's transcript fitting, the objective
    under which free-form decoding (model §6) is meaningful. Language players only.

    ``dagger_rounds`` (reconstructed; 0: behaviour cloning only): rounds of DAgger (:func:`dagger`)
    after cloning: ``dagger_episodes`` episodes played greedily by the players are labelled by the
    teacher and added to the demonstrations, and both players are refitted for ``dagger_epochs`` at
    the constant rate ``dagger_lr``."""

    episodes: int = 256
    epochs: int = 3
    follower_epochs: int | None = None
    batch_size: int = 512
    lr: float = 1e-3
    lr_final: float | None = None
    dedup: bool = False
    weighting: str = "count"
    objective: str = "policy"
    observed_pointer: bool = False
    heldout_episodes: int = 0
    dagger_rounds: int = 0
    dagger_episodes: int = 256
    dagger_epochs: int = 3
    dagger_lr: float = 2e-4
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("imitation.episodes", self.episodes, 1)
        check_int("imitation.epochs", self.epochs, 1)
        if self.follower_epochs is not None:
            check_int("imitation.follower_epochs", self.follower_epochs, 1)
        check_int("imitation.batch_size", self.batch_size, 1)
        check_nonneg("imitation.lr", self.lr)
        if self.lr_final is not None:
            check_nonneg("imitation.lr_final", self.lr_final)
            if self.lr_final > self.lr:
                raise ConfigError(f"imitation.lr_final={self.lr_final!r} is invalid: allowed a value <= imitation.lr")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"imitation.weighting={self.weighting!r} is invalid: allowed one of {', '.join(WEIGHTINGS)}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"imitation.objective={self.objective!r} is invalid: allowed one of {', '.join(OBJECTIVES)}")
        check_int("imitation.heldout_episodes", self.heldout_episodes, 0)
        check_int("imitation.dagger_rounds", self.dagger_rounds, 0)
        check_int("imitation.dagger_episodes", self.dagger_episodes, 1)
        check_int("imitation.dagger_epochs", self.dagger_epochs, 1)
        check_nonneg("imitation.dagger_lr", self.dagger_lr)
        check_prob("imitation.label_smoothing", self.label_smoothing, open_high=True)
        check_int("imitation.seed", self.seed, 0)

    def epochs_of(self, role: str) -> int:
        return self.follower_epochs if role == "follower" and self.follower_epochs is not None else self.epochs


class ObservedSrGrant(SrGrant):
    """SR/grant whose round-robin pointer is read off the BS's observation (:func:`observed_pointer`)
    instead of kept as memory. Same messages and rules."""

    memoryless = True

    def leader(self, obs: spec.LeaderObs) -> torch.Tensor:
        self.ptr = observed_pointer(obs)
        return super().leader(obs)


def make_teacher(name: str, cfg: ImitationConfig) -> Protocol:
    if name == "sr-grant" and cfg.observed_pointer:
        return ObservedSrGrant(seed=cfg.seed)
    return make_protocol(name, seed=cfg.seed)


@dataclass
class Demonstrations:
    """Decisions (``weight`` all ones) or distinct decisions with teacher-action ``counts`` [M, A]."""

    inputs: Inputs
    mask: torch.Tensor
    counts: torch.Tensor  # [M, A] how often the teacher took each action in this input

    @property
    def action(self) -> torch.Tensor:
        """The teacher's most frequent action of each row."""
        return self.counts.argmax(dim=1)

    def __len__(self) -> int:
        return len(self.mask)


DRIVERS = ("teacher", "student")


@torch.no_grad()
def demonstrations(env_cfg: EnvConfig, teacher: Protocol, leader: Player, follower: Player,
                   episodes: int, seed: int, drive: str = "teacher") -> tuple[Demonstrations, Demonstrations]:
    """The teacher's decisions on ``episodes`` episodes, encoded for the leader and the follower.

    ``drive``: whose actions the episodes follow, the ``teacher``'s (behaviour cloning) or the
    players' greedy ones (``student``: the states the players visit, each labelled with the
    teacher's decision there, as in DAgger, Ross et al. 2011). Labelling a state the teacher did
    not lead to needs a teacher whose decision is a function of the observation
    (:class:`ObservedSrGrant`; SR/grant's followers are)."""
    if drive not in DRIVERS:
        raise ConfigError(f"drive={drive!r} is invalid: allowed one of {', '.join(DRIVERS)}")
    env = BatchedEnv(env_cfg, episodes, seed=seed)
    teacher.reset(env, seed)
    student = drive == "student"
    L: list = []
    F: list = []
    while not env.done:
        obs_l = env.begin_tti()
        dcm = teacher.leader(obs_l)
        e, s = obs_l.active.nonzero(as_tuple=True)
        x, mask = leader.encode(obs_l, None, e, s), actions.leader_mask(env_cfg, len(e))
        L.append((x, mask, dcm[e, s]))
        if student:
            dcm = _scatter(greedy_actions(leader, x, mask), e, s, dcm.shape)
        obs_f = env.deliver(dcm)
        ucm, access = teacher.followers(obs_f)
        x, mask = follower.encode(obs_l, obs_f, e, s), actions.follower_mask(env_cfg, obs_f.buffer[e, s])
        F.append((x, mask, actions.follower_index(env_cfg, ucm[e, s], access[e, s])))
        if student:
            u, acc = actions.follower_action(env_cfg, greedy_actions(follower, x, mask))
            ucm, access = _scatter(u, e, s, ucm.shape), _scatter(acc, e, s, access.shape)
        env.end_tti(ucm, access)
    return _stack(L), _stack(F)


def greedy_actions(player: Player, inputs: Inputs, mask: torch.Tensor) -> torch.Tensor:
    """The player's argmax of π over the valid actions, per decision (computed on the player's device)."""
    dev = module_device(player)
    return masked_log_probs(player.scores(to_device(inputs, dev)), mask.to(dev)).argmax(dim=-1).cpu()


def _scatter(values: torch.Tensor, e: torch.Tensor, s: torch.Tensor, shape) -> torch.Tensor:
    out = torch.zeros(shape, dtype=torch.long)
    out[e, s] = values
    return out


def cat_demonstrations(a: Demonstrations, b: Demonstrations) -> Demonstrations:
    return Demonstrations(cat_inputs([a.inputs, b.inputs]), torch.cat([a.mask, b.mask]), torch.cat([a.counts, b.counts]))


def dagger(env_cfg: EnvConfig, teacher: Protocol, leader: Player, follower: Player,
           demo_l: Demonstrations, demo_f: Demonstrations, cfg: ImitationConfig) -> list[dict]:
    """``cfg.dagger_rounds`` rounds of DAgger (Ross, Gordon and Bagnell 2011) after behaviour cloning on
    ``demo_l``/``demo_f``: each round, the players play ``cfg.dagger_episodes`` episodes of ``env_cfg``
    greedily, the teacher labels every decision they met (:func:`demonstrations` with ``drive="student"``),
    the labelled decisions join the demonstrations, and each player is refitted on all of them. A cloned
    policy's own mistakes lead it to states the teacher never visits; this teaches it the teacher's
    decision there. Returns, per round, the players' agreement with the teacher on the states they
    visited, before the refit."""
    if not teacher.memoryless:
        raise ConfigError(f"imitation.dagger_rounds={cfg.dagger_rounds!r} is invalid with the {teacher.name} teacher "
                          "(its pointer is memory of its own play): allowed 0, or a memoryless teacher (sr-grant with "
                          "imitation.observed_pointer = true, sr-grant-speculative)")
    refit = dataclasses.replace(cfg, lr=cfg.dagger_lr, lr_final=None)
    log = []
    for r in range(cfg.dagger_rounds):
        new_l, new_f = demonstrations(env_cfg, teacher, leader, follower, cfg.dagger_episodes, derive(cfg.seed, "dagger", r),
                                      drive="student")
        log.append({"round": r, "decisions": len(new_l), "leader_agreement": agreement(leader, new_l),
                    "follower_agreement": agreement(follower, new_f)})
        demo_l, demo_f = cat_demonstrations(demo_l, new_l), cat_demonstrations(demo_f, new_f)
        fit(follower, demo_f, refit, epochs=cfg.dagger_epochs)
        fit(leader, demo_l, refit, epochs=cfg.dagger_epochs)
    return log


def _stack(parts) -> Demonstrations:
    x, m, a = zip(*parts)
    mask = torch.cat(m)
    counts = torch.zeros(mask.shape).scatter_(1, torch.cat(a)[:, None], 1.0)
    return Demonstrations(cat_inputs(list(x)), mask, counts)


def deduplicate(demo: Demonstrations) -> Demonstrations:
    """One row per distinct (inputs, mask), with the summed teacher-action counts."""
    key = torch.cat([v.reshape(len(demo), -1).double() for v in demo.inputs.values()]
                    + [demo.mask.double()], dim=1)
    _, inv = torch.unique(key, dim=0, return_inverse=True)
    n = int(inv.max()) + 1
    first = torch.full((n,), len(inv), dtype=torch.long).scatter_reduce(0, inv, torch.arange(len(inv)), reduce="amin")
    counts = torch.zeros(n, demo.counts.shape[1]).index_add_(0, inv, demo.counts)
    return Demonstrations(take_inputs(demo.inputs, first), demo.mask[first], counts)


def imitation_loss(player: Player, demo: Demonstrations, idx: torch.Tensor, weighting: str = "count",
                   objective: str = "policy", label_smoothing: float = 0.0) -> torch.Tensor:
    """Weighted mean −log π(a_teacher | s) over the minibatch ``idx`` (``weighting``, ``objective`` and
    ``label_smoothing`` as in :class:`ImitationConfig`; ``sequence``: −log P(teacher's action text | s))."""
    dev = module_device(player)  # the demonstrations stay on the CPU; each minibatch goes to the player's device
    inputs = to_device(take_inputs(demo.inputs, idx), dev)
    mask = demo.mask[idx].to(dev)
    if objective == "sequence":
        logp = sequence_log_likelihood(player, inputs)
    else:
        logp = masked_log_probs(player.scores(inputs), mask)
    counts = demo.counts[idx].to(dev)
    if weighting == "uniform":
        counts = counts / counts.sum(dim=1, keepdim=True)
    if label_smoothing:
        total = counts.sum(dim=1, keepdim=True)
        uniform = mask.to(counts.dtype) / mask.sum(dim=1, keepdim=True)
        counts = (1 - label_smoothing) * counts + label_smoothing * total * uniform
    return -(counts * logp.masked_fill(counts == 0, 0.0)).sum() / counts.sum()


def cosine_lr(step: int, total: int, lr: float, lr_final: float | None) -> float:
    """Cosine decay from ``lr`` to ``lr_final`` over ``total`` steps (constant if ``lr_final`` is None)."""
    if lr_final is None or total <= 1:
        return lr
    return lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * step / (total - 1)))


def sequence_log_likelihood(player: Player, inputs) -> torch.Tensor:
    """[M, A] log P(action text + end | prompt) of every fixed action (LLM4MAC Eq. 9, no softmax over candidates)."""
    if not hasattr(player, "sequence_scores"):
        raise ConfigError(f"imitation.objective='sequence' is invalid for a {type(player).__name__}: allowed for "
                          "language players only (use 'policy')")
    return player.sequence_scores(inputs)


def fit(player: Player, demo: Demonstrations, cfg: ImitationConfig, epochs: int | None = None) -> list[float]:
    """Behaviour cloning of one player (``epochs`` default: ``cfg.epochs_of(player.role)``);
    returns the mean loss of each epoch."""
    epochs = cfg.epochs_of(getattr(player, "role", "leader")) if epochs is None else epochs
    if cfg.dedup:
        demo = deduplicate(demo)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(player.parameters(), lr=cfg.lr)
    per_epoch = math.ceil(len(demo) / cfg.batch_size)
    history, step = [], 0
    for _ in range(epochs):
        losses = []
        for idx in torch.randperm(len(demo), generator=gen).split(cfg.batch_size):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, epochs * per_epoch, cfg.lr, cfg.lr_final)
            loss = imitation_loss(player, demo, idx, cfg.weighting, cfg.objective, cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
        history.append(sum(losses) / len(losses))
    return history


def agreement(player: Player, demo: Demonstrations, batch_size: int = 4096) -> float:
    """Fraction of the teacher's decisions that the player's greedy choice reproduces (count-weighted)."""
    hits = 0.0
    dev = module_device(player)
    with torch.no_grad():
        for idx in torch.arange(len(demo)).split(batch_size):
            logp = masked_log_probs(player.scores(to_device(take_inputs(demo.inputs, idx), dev)),
                                    demo.mask[idx].to(dev)).cpu()
            hits += demo.counts[idx].gather(1, logp.argmax(-1, keepdim=True)).sum().item()
    return hits / demo.counts.sum().item()
