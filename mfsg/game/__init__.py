"""model §8 games: leader/follower utilities of flat parameters, differentiable in torch.

- :mod:`mfsg.game.base`: the :class:`Game` interface, P_N (:class:`ChurnDist`), :class:`SubsetGame`;
- :mod:`mfsg.game.closed_form`: quadratic games with closed-form Stackelberg and Nash points;
- :mod:`mfsg.game.bimatrix`: exact Stackelberg LP, Nash support enumeration, soft bimatrix game;
- :mod:`mfsg.game.mac_stage`: the analytic one-TTI MAC game (sympy);
- :mod:`mfsg.game.exact`: exact expected utilities of small model §2 instances (tabular policies);
- :mod:`mfsg.game.exact_players`: the same instances played by trained players (π from their scores);
- :mod:`mfsg.game.tabular_player`: the tabular policies behind the Player interface;
- :mod:`mfsg.game.policy_game`: rollout estimates of trained players' utilities and gradients on a
  parameter subset (:mod:`mfsg.game.params`), with error bars (:mod:`mfsg.game.statistics`).
"""

from mfsg.game.base import DTYPE, ChurnDist, Game, Regularization, SubsetGame

__all__ = ["DTYPE", "ChurnDist", "Game", "Regularization", "SubsetGame"]
