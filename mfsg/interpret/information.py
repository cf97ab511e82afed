"""Mutual information in bits between a message stream and a hidden quantity, with a bias correction
and a bootstrap confidence interval (model §7: what the messages carry).

- **Estimate**: the plug-in MI ``H(X) + H(Y) − H(X, Y)`` of the empirical joint distribution, with
  the Miller–Madow correction of each entropy, ``H_MM = H_plugin + (m − 1) / (2 n ln 2)`` bits for
  m occupied bins out of n samples. The plug-in MI of independent variables is biased upwards by
  about ``(m_X − 1)(m_Y − 1) / (2 n ln 2)``; the correction removes that term to first order, so the
  corrected estimate of independent streams scatters around 0 (and may be slightly negative).
- **Interval**: a bootstrap over *groups* (episodes: decisions within an episode are not
  independent), or over single decisions when no groups are given. The replicates of the corrected
  estimator are themselves biased (a resample's empirical distribution lies farther from
  independence than the sample), so the percentile interval is shifted by the bootstrap estimate of
  that bias, ``mean(θ*) − θ̂``: the interval is ``[q_lo(θ*) − b, q_hi(θ*) − b]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mfsg.config import check_int, check_prob

LN2 = math.log(2.0)


@dataclass(frozen=True)
class InformationConfig:
    """``n_boot`` bootstrap replicates; ``confidence`` level of the interval; ``seed`` of the resampling."""

    n_boot: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("information.n_boot", self.n_boot, 2)
        check_prob("information.confidence", self.confidence, open_low=True, open_high=True)
        check_int("information.seed", self.seed, 0)


@dataclass(frozen=True)
class MutualInformation:
    """MI estimate in bits: ``plugin``, bias-corrected ``corrected`` with its interval [``lo``, ``hi``];
    ``h_y`` the plug-in entropy of the hidden quantity (the most any message could carry about it)."""

    plugin: float
    corrected: float
    lo: float
    hi: float
    h_y: float
    n: int

    def as_dict(self) -> dict:
        return {"plugin": self.plugin, "corrected": self.corrected, "lo": self.lo, "hi": self.hi,
                "h_y": self.h_y, "n": self.n}


def _entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Plug-in entropy (bits) of each row of ``counts`` [..., m]."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=-1, keepdims=True)
    p = np.divide(counts, n, out=np.zeros_like(counts), where=n > 0)
    logp = np.log2(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logp).sum(axis=-1)


def mi_from_counts(joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(plug-in, Miller–Madow) MI in bits of joint count tables ``[..., m_x, m_y]``."""
    joint = np.asarray(joint, dtype=np.float64)
    n = joint.sum(axis=(-2, -1))
    px, py = joint.sum(axis=-1), joint.sum(axis=-2)
    flat = joint.reshape(*joint.shape[:-2], -1)
    plugin = _entropy_bits(px) + _entropy_bits(py) - _entropy_bits(flat)
    occupied = lambda c: (c > 0).sum(axis=-1)  # noqa: E731
    extra = (occupied(px) - 1) + (occupied(py) - 1) - (occupied(flat) - 1)
    corrected = plugin + np.divide(extra, 2 * n * LN2, out=np.zeros_like(plugin), where=n > 0)
    return plugin, corrected


def _codes(v: np.ndarray) -> tuple[np.ndarray, int]:
    values, codes = np.unique(np.asarray(v), return_inverse=True)
    return codes.reshape(-1), max(1, values.size)


def mutual_information(x, y, groups=None, cfg: InformationConfig | None = None) -> MutualInformation:
    """I(X; Y) in bits of paired samples ``x``, ``y`` (any discrete values), bias-corrected, with a
    bootstrap interval over ``groups`` (e.g. episode indices; ``None``: over single samples)."""
    cfg = cfg or InformationConfig()
    x, y = np.asarray(x).reshape(-1), np.asarray(y).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} and {y.size}")
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return MutualInformation(nan, nan, nan, nan, nan, 0)
    cx, mx = _codes(x)
    cy, my = _codes(y)
    cell = cx * my + cy
    joint = np.bincount(cell, minlength=mx * my).reshape(mx, my)
    plugin, corrected = (float(v) for v in mi_from_counts(joint))
    rng = np.random.default_rng(cfg.seed)
    if groups is None:
        boot = rng.multinomial(n, joint.reshape(-1) / n, size=cfg.n_boot)
    else:
        g, n_groups = _codes(groups)
        if g.size != n:
            raise ValueError(f"groups has {g.size} entries, x has {n}")
        per_group = np.zeros((n_groups, mx * my), dtype=np.int64)
        np.add.at(per_group, (g, cell), 1)
        weights = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=cfg.n_boot)
        boot = weights @ per_group
    _, reps = mi_from_counts(boot.reshape(cfg.n_boot, mx, my))
    bias = float(reps.mean()) - corrected
    alpha = 1.0 - cfg.confidence
    lo, hi = (float(q) - bias for q in np.quantile(reps, [alpha / 2, 1 - alpha / 2]))
    h_y = float(_entropy_bits(joint.sum(axis=0)))
    return MutualInformation(plugin, corrected, lo, hi, h_y, n)


__all__ = ["InformationConfig", "MutualInformation", "mi_from_counts", "mutual_information"]
