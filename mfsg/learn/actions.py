"""Fixed, enumerated action sets of the two players and their validity masks (model §2.3–§2.4).

The leader's action for one UE is a DCM in 0..D−1. A follower's action is a joint
(UCM, access) pair, enumerated as index ``ucm * (K + 2) + access``. Every policy, symbolic
or language, scores these fixed sets; invalid entries are masked out (PAG validity rules).
"""

from __future__ import annotations

import torch

from mfsg.config import EnvConfig
from mfsg.env import spec


def n_leader_actions(cfg: EnvConfig) -> int:
    return cfg.dcm_vocab


def n_follower_actions(cfg: EnvConfig) -> int:
    return cfg.ucm_vocab * cfg.n_access


def follower_action(cfg: EnvConfig, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint index -> (ucm, access)."""
    return index // cfg.n_access, index % cfg.n_access


def follower_index(cfg: EnvConfig, ucm: torch.Tensor, access: torch.Tensor) -> torch.Tensor:
    return ucm * cfg.n_access + access


def follower_mask(cfg: EnvConfig, buffer: torch.Tensor) -> torch.Tensor:
    """[M, A] validity: TX and DELETE need a dPDU; IDLE is always valid."""
    access = torch.arange(n_follower_actions(cfg)) % cfg.n_access
    return (access[None, :] == spec.IDLE) | (buffer[:, None] > 0)


def leader_mask(cfg: EnvConfig, m: int) -> torch.Tensor:
    """[M, D]: every DCM is valid."""
    return torch.ones(m, n_leader_actions(cfg), dtype=torch.bool)
