"""The random draws of one TTI (model §2, last paragraph).

Every random quantity of a TTI is a uniform number in [0, 1) drawn in one block, so that
the reference and the batched environment can be driven by *the same* draws
(the differential test does exactly that). Layout of one block, per episode:
``[n_init, join, leave[S], arrival[S], decode[K]]``, followed by ``place[S]`` only under
random slot placement (``ChurnConfig.placement``), so that the default layout and every
seeded trajectory without it are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def block_size(n_slots: int, n_rbg: int, place: bool = False) -> int:
    """Number of uniforms one TTI consumes per episode (``place``: random slot placement)."""
    return 2 + (3 if place else 2) * n_slots + n_rbg


@dataclass(frozen=True)
class Draws:
    """Uniforms of one TTI; arrays are numpy (reference env) or torch with a leading episode dim (batched)."""

    n_init: object  # scalar per episode: initial number of UEs (per_episode, markov)
    join: object  # scalar per episode: does a UE join (markov)
    leave: object  # [S]: does active slot s leave (markov)
    arrival: object  # [S]: does slot s get a dPDU
    decode: object  # [K]: is a collision-free transmission on RBG k erased (tbler)
    place: object = None  # [S]: slot priorities under random placement (lowest free draw is taken), else None

    @staticmethod
    def split(block, n_slots: int, n_rbg: int, place: bool = False) -> Draws:
        """Cut a block of uniforms (last axis = :func:`block_size`) into named draws."""
        s, k = n_slots, n_rbg
        assert block.shape[-1] == block_size(s, k, place), "draw block has the wrong size"
        end = 2 + 2 * s + k
        return Draws(
            n_init=block[..., 0],
            join=block[..., 1],
            leave=block[..., 2 : 2 + s],
            arrival=block[..., 2 + s : 2 + 2 * s],
            decode=block[..., 2 + 2 * s : end],
            place=block[..., end : end + s] if place else None,
        )

    def episode(self, e: int) -> Draws:
        """The numpy draws of episode ``e`` of a batched block (to drive a reference env)."""
        def pick(x):
            if x is None:
                return None
            x = x[e]
            return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return Draws(*(pick(getattr(self, f)) for f in ("n_init", "join", "leave", "arrival", "decode", "place")))
