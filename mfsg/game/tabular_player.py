"""The tabular softmax policies of :class:`mfsg.game.exact.ExactMacGame` as :class:`~mfsg.learn.players.Player`
objects, so that estimators over rollouts can be validated against the exact game (model §8)."""

from __future__ import annotations

import torch

from mfsg.config import ConfigError
from mfsg.env import spec
from mfsg.game.base import DTYPE
from mfsg.learn.players import Inputs, Player

__all__ = ["TabularPlayer"]


class TabularPlayer(Player):
    """The tabular softmax policy of :class:`mfsg.game.exact.ExactMacGame` as a :class:`Player`.

    ``theta`` (the game's x or y: the free entries of the table) is the only parameter; the
    value is zero (no critic is needed for estimates)."""

    def __init__(self, role: str, game, theta: torch.Tensor):
        super().__init__()
        if role not in ("leader", "follower"):
            raise ConfigError(f"role={role!r} is invalid: allowed 'leader' or 'follower'")
        self.role, self.coder = role, game.policies.coder
        self.rows = game.policies.leader if role == "leader" else game.policies.follower
        self.theta = torch.nn.Parameter(theta.detach().to(DTYPE).clone())

    def encode(self, obs_l: spec.LeaderObs, obs_f: spec.FollowerObs | None, e_idx, s_idx) -> Inputs:
        codes = self.coder.leader_codes(obs_l) if self.role == "leader" else self.coder.follower_codes(obs_f)
        return {"row": self.rows.rows_of(codes[e_idx, s_idx])}

    def scores(self, inputs: Inputs) -> torch.Tensor:
        return self.rows.log_probs(self.theta)[inputs["row"]]

    def encode_state(self, obs_l, obs_f, e_idx, s_idx) -> Inputs:
        return {"row": torch.zeros(len(e_idx), dtype=torch.long)}

    def value(self, inputs: Inputs) -> torch.Tensor:
        return torch.zeros(len(inputs["row"]))
