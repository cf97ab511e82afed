"""Stackelberg PPO (model §6; LLM4MAC Eqs. 4–6), readable top to bottom like CleanRL's ``ppo.py``.

Two players, each with its own optimizer and its own advantages from its own utility
(model §4): the leader (BS) and the unified follower (all UEs share its parameters; each
UE's advantage is its own). The follower's learning rate is τ × the leader's, and the
follower makes ``follower_updates`` (m) passes per leader pass; τ = 1, m = 1 is simultaneous play.

The leader sends one DCM to every active UE per TTI. ``leader_credit`` (reconstructed) says
which advantage each of these per-UE decisions gets: ``shared``, the leader's advantage at
(e, t), the same for all N decisions of the TTI (the factored policy gradient with the joint
return; its variance grows with N and the signal of one decision drowns in the others'); or
``per_ue``, the advantage of the UE's own share of the leader's utility, ϱ·ξ_n − ϱ·del_unrec_n
plus the fairness term β_fair·J at the horizon (model §4), against a per-UE leader critic:
a decision is credited with what happens to the UE it addresses (its collisions with other
UEs' grants included through the UE's own deliveries), the local-reward approximation of
the joint policy gradient.

Optionally (``anchor_coef`` > 0, reconstructed, not in the papers) each player's loss adds
β_ref · KL(π_ref ‖ π) to frozen reference players (the warm-started ones): the KL-to-reference
regularizer of RL fine-tuning of language models, which keeps what imitation taught (also at the N
that PPO never samples) while PPO moves the policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mfsg.config import ConfigError, check_int, check_nonneg, check_prob, check_real
from mfsg.learn.device import module_device
from mfsg.learn.players import Inputs, Player, entropy_of, masked_log_probs, take_inputs
from mfsg.learn.rollout import Decisions, Rollout

LEADER_CREDITS = ("shared", "per_ue")


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters (model §6 defaults: ε = 0.2, γ from the utility config, λ = 0.9, τ = 4)."""

    lr_leader: float = 1e-3
    tau: float = 4.0  # follower lr = tau * lr_leader
    follower_updates: int = 1  # m follower passes per leader pass
    epochs: int = 4
    minibatches: int = 4
    clip: float = 0.2  # ε of the clipped surrogate
    kl_coef: float = 0.01  # β of the KL(π_old ‖ π) penalty
    anchor_coef: float = 0.0  # β_ref of the KL(π_ref ‖ π) penalty to the reference players (0: none)
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    vf_clip: float = 0.2
    gae_lambda: float = 0.9
    max_grad_norm: float = 1.0
    normalize_advantages: bool = True
    value_warmup: int = 0  # first iterations train the critics only (policies fixed), e.g. after a warm start
    leader_credit: str = "shared"  # advantage of each per-UE leader decision: "shared" or "per_ue" (see above)

    def __post_init__(self) -> None:
        if self.leader_credit not in LEADER_CREDITS:
            raise ConfigError(f"ppo.leader_credit={self.leader_credit!r} is invalid: allowed one of "
                              + ", ".join(LEADER_CREDITS))
        for name in ("lr_leader", "kl_coef", "anchor_coef", "ent_coef", "vf_coef", "vf_clip", "max_grad_norm"):
            check_nonneg(f"ppo.{name}", getattr(self, name))
        check_real("ppo.tau", self.tau, 1.0)
        check_int("ppo.follower_updates", self.follower_updates, 1)
        check_int("ppo.epochs", self.epochs, 1)
        check_int("ppo.minibatches", self.minibatches, 1)
        check_int("ppo.value_warmup", self.value_warmup, 0)
        check_prob("ppo.clip", self.clip, open_low=True, open_high=True)
        check_prob("ppo.gae_lambda", self.gae_lambda)


# --------------------------------------------------------------------------- advantages
def gae(rewards: torch.Tensor, values: torch.Tensor, cont: torch.Tensor, gamma: float, lam: float):
    """Generalized advantage estimation over the last (time) axis (LLM4MAC Eq. 3 returns).

    ``cont[..., t]`` is 1 where step t+1 continues the same trajectory (0 at the horizon, and
    where a UE leaves or its slot gets a new identity). Returns (advantages, returns).
    """
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[..., 0])
    T = rewards.shape[-1]
    for t in reversed(range(T)):
        next_value = values[..., t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[..., t] + gamma * next_value * cont[..., t] - values[..., t]
        last = delta + gamma * lam * cont[..., t] * last
        adv[..., t] = last
    return adv, adv + values


def follower_continues(active: torch.Tensor, ue_id: torch.Tensor) -> torch.Tensor:
    """[E, S, T] 1 where the same UE is still in its slot at t+1 (model §3 churn breaks trajectories)."""
    cont = torch.zeros(active.shape, device=active.device)
    cont[..., :-1] = (active[..., 1:] & (ue_id[..., 1:] == ue_id[..., :-1])).float()
    return cont


# --------------------------------------------------------------------------- the loss
def value_loss(player: Player, state: Inputs, ret: torch.Tensor, old_value: torch.Tensor,
               cfg: PPOConfig, clip: bool = True) -> torch.Tensor:
    """Clipped value loss (LLM4MAC Eq. 6); ``clip`` False: plain squared error (critic warm-up, where
    the values must travel from their initial guess to the returns' scale)."""
    v = player.value(state)
    if not clip:
        return 0.5 * ((v - ret) ** 2).mean()
    v_clipped = old_value + (v - old_value).clamp(-cfg.vf_clip, cfg.vf_clip)
    return 0.5 * torch.max((v - ret) ** 2, (v_clipped - ret) ** 2).mean()


def kl_divergence(logp_p: torch.Tensor, logp_q: torch.Tensor) -> torch.Tensor:
    """[M] KL(p ‖ q) of distributions over the action set given as log-probabilities (−inf = 0)."""
    p = logp_p.exp()
    return (p * (logp_p - logp_q).masked_fill(p == 0, 0.0)).sum(-1)


def ppo_loss(player: Player, dec: Decisions, idx: torch.Tensor, adv: torch.Tensor, state: Inputs,
             ret: torch.Tensor, old_value: torch.Tensor, cfg: PPOConfig,
             policy: bool = True, ref_logp: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Clipped surrogate + KL(π_old‖π) penalty − entropy bonus + clipped value loss (LLM4MAC Eqs. 4–6),
    + β_ref · KL(π_ref‖π) when ``ref_logp`` (the reference players' log π of these decisions) is given;
    ``policy`` False: the value loss alone (critic warm-up, policy untouched)."""
    if not policy:
        v_loss = value_loss(player, state, ret, old_value, cfg, clip=False)
        return cfg.vf_coef * v_loss, {"v_loss": v_loss.item()}
    logp_all = masked_log_probs(player.scores(take_inputs(dec.inputs, idx)), dec.mask[idx])
    old_all = dec.logp[idx]
    action = dec.action[idx, None]
    logratio = logp_all.gather(1, action).squeeze(1) - old_all.gather(1, action).squeeze(1)
    ratio = logratio.exp()
    pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
    kl = kl_divergence(old_all, logp_all).mean()
    entropy = entropy_of(logp_all).mean()
    v_loss = value_loss(player, state, ret, old_value, cfg)
    loss = pg_loss + cfg.kl_coef * kl - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
    stats = {"pg_loss": pg_loss.item(), "kl": kl.item(), "entropy": entropy.item(), "v_loss": v_loss.item(),
             "clipfrac": ((ratio - 1).abs() > cfg.clip).float().mean().item()}
    if ref_logp is not None:
        anchor = kl_divergence(ref_logp, logp_all).mean()
        loss = loss + cfg.anchor_coef * anchor
        stats["anchor_kl"] = anchor.item()
    return loss, stats


def _normalize(x: torch.Tensor, on: bool) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8) if on and x.numel() > 1 else x


# --------------------------------------------------------------------------- one update
class StackelbergPPO:
    """The two optimizers and the update of one iteration."""

    def __init__(self, leader: Player, follower: Player, cfg: PPOConfig, gamma: float):
        self.leader, self.follower, self.cfg, self.gamma = leader, follower, cfg, gamma
        self.opt_leader = torch.optim.Adam(leader.parameters(), lr=cfg.lr_leader, eps=1e-5)
        self.opt_follower = torch.optim.Adam(follower.parameters(), lr=cfg.tau * cfg.lr_leader, eps=1e-5)
        self.reference: tuple[Player, Player] | None = None

    def set_reference(self, leader: Player, follower: Player) -> None:
        """Frozen reference players of the ``anchor_coef`` term (e.g. the warm-started players)."""
        for p in (leader, follower):
            p.eval().requires_grad_(False)
        self.reference = (leader, follower)

    def _reference_logp(self, which: int, dec: Decisions) -> torch.Tensor | None:
        """[M, A] the reference player's log π of every stored decision (None without an anchor)."""
        if not self.cfg.anchor_coef:
            return None
        if self.reference is None:
            raise RuntimeError("ppo.anchor_coef > 0 needs reference players: call set_reference first")
        ref = self.reference[which]
        with torch.no_grad():
            parts = [masked_log_probs(ref.scores(take_inputs(dec.inputs, idx)), dec.mask[idx])
                     for idx in torch.arange(len(dec.action), device=dec.action.device).chunk(self.cfg.minibatches)]
        return torch.cat(parts)

    def update(self, ro: Rollout, gen: torch.Generator, policy: bool = True) -> dict:
        """One iteration's update; ``policy`` False trains the critics only (``value_warmup``). The rollout goes
        to the players' device once; minibatch orders are drawn on the CPU from ``gen`` (the same on every device)."""
        cfg = self.cfg
        dev = module_device(self.leader)
        ro = ro.to(dev)
        # 1. advantages of each player from its own utility (model §4)
        E, T = ro.leader_reward.shape
        L, F = ro.leader, ro.follower
        cont_f = follower_continues(ro.active, ro.ue_id)
        per_ue = ro.leader_value.dim() == 3
        if per_ue != (cfg.leader_credit == "per_ue"):
            raise ConfigError(f"ppo.leader_credit={cfg.leader_credit!r} needs a leader critic with "
                              f"{'per-UE' if cfg.leader_credit == 'per_ue' else 'per-TTI'} values")
        if per_ue:  # each decision: its UE's share of the leader's utility, against the per-UE critic
            adv_l, ret_l = gae(ro.leader_reward_ue, ro.leader_value, cont_f, self.gamma, cfg.gae_lambda)
            dec_adv_l = adv_l[L.e, L.s, L.t]
            state_ret_l, state_old_v_l = ret_l[L.e, L.s, L.t], ro.leader_value[L.e, L.s, L.t]
        else:  # every leader decision of (e, t) shares the leader's advantage at (e, t)
            adv_l, ret_l = gae(ro.leader_reward, ro.leader_value, torch.ones(E, T, device=dev), self.gamma, cfg.gae_lambda)
            dec_adv_l = adv_l[L.e, L.t]
            state_ret_l = ret_l.T.reshape(-1)  # leader states are stored TTI-major
            state_old_v_l = ro.leader_value.T.reshape(-1)
        adv_f, ret_f = gae(ro.follower_reward, ro.follower_value, cont_f, self.gamma, cfg.gae_lambda)
        dec_adv_l = _normalize(dec_adv_l, cfg.normalize_advantages)
        dec_adv_f = _normalize(adv_f[F.e, F.s, F.t], cfg.normalize_advantages)
        ret_f_dec, old_v_f = ret_f[F.e, F.s, F.t], ro.follower_value[F.e, F.s, F.t]
        ref_l, ref_f = (self._reference_logp(0, L), self._reference_logp(1, F)) if policy else (None, None)

        # 2. epochs of minibatch updates; the follower passes m times per leader pass
        stats: dict[str, list] = {}
        for epoch in range(cfg.epochs * cfg.follower_updates):
            f_batches = _order(len(F.action), gen, dev).chunk(cfg.minibatches)
            for idx in f_batches:
                loss, s = ppo_loss(self.follower, F, idx, dec_adv_f[idx], take_inputs(ro.follower_state, idx),
                                   ret_f_dec[idx], old_v_f[idx], cfg, policy, _rows(ref_f, idx))
                self._step(self.opt_follower, self.follower, loss)
                _collect(stats, "follower", s)
            if epoch % cfg.follower_updates != 0:
                continue
            l_batches = _order(len(L.action), gen, dev).chunk(cfg.minibatches)
            v_batches = _order(len(state_ret_l), gen, dev).chunk(cfg.minibatches)
            for idx, vidx in zip(l_batches, v_batches):
                loss, s = ppo_loss(self.leader, L, idx, dec_adv_l[idx], take_inputs(ro.leader_state, vidx),
                                   state_ret_l[vidx], state_old_v_l[vidx], cfg, policy, _rows(ref_l, idx))
                self._step(self.opt_leader, self.leader, loss)
                _collect(stats, "leader", s)
        return {k: sum(v) / len(v) for k, v in stats.items()}

    def _step(self, opt: torch.optim.Optimizer, player: Player, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(player.parameters(), self.cfg.max_grad_norm)
        opt.step()


def _order(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """A random order of n items drawn on the CPU from ``gen``, on ``device``."""
    return torch.randperm(n, generator=gen, device="cpu").to(device)


def _rows(x: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    return None if x is None else x[idx]


def _collect(stats: dict, who: str, s: dict) -> None:
    for k, v in s.items():
        stats.setdefault(f"{who}/{k}", []).append(v)
