"""Error bars of stochastic estimates: per-seed samples → mean, standard error, Student-t critical values,
leave-one-seed-out jackknife (model §8, the estimator path)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

__all__ = ["SeedEstimate", "critical_value", "z_max", "jackknife"]


@dataclass
class SeedEstimate:
    """Mean over R seeds, its standard error, and the per-seed samples [R, ...]."""

    mean: np.ndarray
    se: np.ndarray
    samples: np.ndarray

    @staticmethod
    def of(samples) -> SeedEstimate:
        s = np.asarray(samples, dtype=np.float64)
        return SeedEstimate(s.mean(axis=0), s.std(axis=0, ddof=1) / np.sqrt(s.shape[0]), s)

    @property
    def repeats(self) -> int:
        return self.samples.shape[0]


def critical_value(confidence: float, dof: int, tests: int = 1) -> float:
    """Two-sided Student-t critical value, Bonferroni-corrected for ``tests`` coordinates."""
    return float(scipy.stats.t.ppf(1 - (1 - confidence) / (2 * tests), dof))


def z_max(mean: np.ndarray, se: np.ndarray) -> float:
    """max_i |mean_i| / se_i (coordinates with se = 0 count as infinitely significant unless mean = 0)."""
    mean, se = np.atleast_1d(mean), np.atleast_1d(se)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, np.abs(mean) / np.where(se > 0, se, 1), np.where(mean == 0, 0.0, np.inf))
    return float(z.max())


def jackknife(fn, samples: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """fn(means of ``samples`` over all seeds) and its leave-one-seed-out jackknife standard error."""
    R = samples[0].shape[0]
    full = np.asarray(fn(*(s.mean(axis=0) for s in samples)))
    keep = [np.delete(np.arange(R), r) for r in range(R)]
    loo = np.array([fn(*(s[k].mean(axis=0) for s in samples)) for k in keep])
    se = np.sqrt((R - 1) / R * ((loo - loo.mean(axis=0)) ** 2).sum(axis=0))
    return full, se
