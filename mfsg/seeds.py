"""Every derived seed of the package, in one place.

A run has one root seed (``run.seed``, ``imitation.seed``, ``pretrain.seed``, …). Each use of
randomness under it is named by a path, e.g. ``derive(seed, "rollout", iteration)``, and gets its
seed from :class:`numpy.random.SeedSequence` with that path as its ``spawn_key``: the same child
that ``SeedSequence(root).spawn`` would hand out, addressable by name. Distinct paths give
statistically independent streams (no strides that could collide), equal paths give equal seeds,
and adding a new use never shifts the seeds of the existing ones.

Names are hashed with CRC-32 (stable across processes and platforms, unlike ``hash``).
"""

from __future__ import annotations

import zlib

import numpy as np


def _word(part: int | str) -> int:
    if isinstance(part, str):
        return zlib.crc32(part.encode())
    if isinstance(part, bool) or not isinstance(part, int | np.integer) or part < 0:
        raise ValueError(f"seed path part {part!r} is invalid: allowed a non-negative int or a str")
    return int(part)


def derive(root: int, *path: int | str) -> int:
    """A 63-bit seed for the use named by ``path`` under the root seed ``root``.

    Valid for ``torch.Generator.manual_seed``, ``numpy.random.default_rng`` and the environments."""
    seq = np.random.SeedSequence(_word(root), spawn_key=tuple(_word(p) for p in path))
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))
