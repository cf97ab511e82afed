"""model §8 games: leader/follower utilities of flat parameters, differentiable in torch.

- :mod:`mfsg.game.base`: the :class:`Game` interface, P_N (:class:`ChurnDist`), :class:`SubsetGame`;
- :mod:`mfsg.game.closed_form`: quadratic games with closed-form Stackelberg and Nash points;
- :mod:`mfsg.game.bimatrix`: exact Stackelberg LP, Nash support enumeration, soft bimatrix game;
- :mod:`mfsg.game.mac_stage`: the analytic one-TTI MAC game (sympy);
- :mod:`mfsg.game.exact`: exact expected utilities of small model §2 instances (tabular policies).
"""

from mfsg.game.base import DTYPE, ChurnDist, Game, Regularization, SubsetGame

__all__ = ["DTYPE", "ChurnDist", "Game", "Regularization", "SubsetGame"]
