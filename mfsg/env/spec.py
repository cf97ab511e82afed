"""What the reference and batched environments share: codes, observation and counter
records, and the reward formulas (model §2, §4). Formulas here are written with operators
only, so they apply alike to Python numbers, numpy arrays and torch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from mfsg.config import UtilityConfig

# Access actions (model §2.4): 0 = IDLE, k = TX on RBG k (1..K), K + 1 = DELETE.
IDLE = 0

# What the BS sees per RBG (model §2.5).
OUT_IDLE, OUT_DECODED, OUT_UNDECODABLE = 0, 1, 2
NO_UE = -1


def tx_action(k: int) -> int:
    """Access code of TX on RBG k (1-based, as in model §2.4)."""
    return k


def delete_action(n_rbg: int) -> int:
    return n_rbg + 1


@dataclass
class LeaderObs:
    """o_b(t) (model §2.3): per-RBG outcome of t−1, last UCM/DCM per slot, who is attached."""

    t: object
    active: object  # [S] bool
    ue_id: object  # [S] identity of the UE in each slot (-1 if empty)
    outcome: object  # [K] OUT_* of TTI t−1
    decoded_id: object  # [K] identity of the UE decoded on each RBG in t−1 (-1 if none)
    prev_ucm: object  # [S] UCM each UE sent in t−1 (0 for a new UE)
    prev_dcm: object  # [S] DCM the BS sent each UE in t−1 (0 for a new UE)


@dataclass
class FollowerObs:
    """o_n(t) (model §2.4) for every slot: buffer, own last UCM and access, the DCM just received."""

    t: object
    active: object  # [S] bool
    buffer: object  # [S] dPDUs in the FIFO
    prev_ucm: object  # [S]
    prev_access: object  # [S]
    dcm: object  # [S] d_n(t)


@dataclass
class Rewards:
    """Rewards of one TTI (model §4): team r(t), leader r_L(t), followers r_n(t) per slot (0 if inactive),
    and each slot's share of the team reward, ϱ·ξ_n(t) − ϱ·del_unrec_n(t) (Σ over slots = r(t)): the
    per-UE credit of the leader's decisions (``ppo.leader_credit``)."""

    team: object
    leader: object
    follower: object  # [S]
    team_ue: object  # [S]


COUNTER_FIELDS = (
    "generated",
    "dropped_overflow",
    "in_buffer",
    "deleted",
    "deleted_unreceived",
    "lost_on_departure",
    "delivered",
    "duplicates",
    "collisions",
    "erasures",
    "idle",
    "tx",
    "ucm_nonzero",
    "dcm_nonzero",
    "ue_ttis",
    "joins",
    "fair_n",
    "fair_sum",
    "fair_sumsq",
)


@dataclass
class Counters:
    """Episode counters (model §2–§3, §7). ``collisions``/``erasures``/``idle`` count RBG-TTIs;
    ``fair_*`` accumulate Jain's index terms of UEs that have left (and, at the end, all)."""

    generated: object = 0
    dropped_overflow: object = 0
    in_buffer: object = 0
    deleted: object = 0
    deleted_unreceived: object = 0
    lost_on_departure: object = 0
    delivered: object = 0
    duplicates: object = 0
    collisions: object = 0
    erasures: object = 0
    idle: object = 0
    tx: object = 0
    ucm_nonzero: object = 0
    dcm_nonzero: object = 0
    ue_ttis: object = 0
    joins: object = 0
    fair_n: object = 0
    fair_sum: object = 0.0
    fair_sumsq: object = 0.0

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def delivery_ratio(delivered, generated):
    """x_n = delivered_n / max(1, generated_n) (model §7)."""
    if hasattr(generated, "clamp"):
        return delivered / generated.clamp(min=1)
    if hasattr(generated, "clip"):
        return delivered / generated.clip(min=1)
    return delivered / max(1, generated)


def jain_from_sums(n, s, s2):
    """Jain's index (Σx)² / (n·Σx²) from n, Σx, Σx²; 1 where Σx² = 0 (model §7)."""
    if hasattr(s2, "clamp"):
        import torch

        return torch.where(s2 > 0, s * s / (n * s2).clamp(min=1e-300), torch.ones_like(s2))
    return s * s / (n * s2) if s2 > 0 else 1.0


def follower_reward(u: UtilityConfig, new, del_unrec, buffer, tx, capacity: int):
    """r_n(t) = ϱξ_n − ϱ·del_unrec_n − κ_buf·b_n/B − c_tx·1[tx] (model §4, reconstructed)."""
    return u.reward_scale * (new - del_unrec) - u.kappa_buf * buffer / capacity - u.c_tx * tx


def team_reward(u: UtilityConfig, new_total, del_unrec_total):
    """r(t) = ϱ·(new dPDUs received) − ϱ·(unreceived dPDUs deleted) (LLM4MAC Eq. 2)."""
    return u.reward_scale * (new_total - del_unrec_total)
