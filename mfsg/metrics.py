"""model §7 metrics from per-episode results (:func:`mfsg.protocols.run_protocol`, or any dict with
the env's counters, ``latency_hist``, ``jain`` and ``buffer_sum``).

Definitions (per episode of horizon T with K RBGs; "RBG-TTIs" are the K·T channel uses):

- ``throughput``: S = delivered / T, new dPDUs received per TTI (LLM4MAC Eq. 12).
- ``genie_fraction``: mean S over mean S of the genie on the same seeds. The env draws its
  randomness (churn, arrivals, erasures) from its own generator, never from the protocol's,
  and the runner seeds it from ``(seed, n_episodes, chunk)`` only, so both runs see the same
  arrivals whatever the actions.
- ``jain``: Jain's index over the UEs active in the episode (model §7; 1 when all x_n are 0).
- ``collision_rate``, ``idle_rate``, ``erasure_rate``: fractions of RBG-TTIs with ≥ 2
  transmitters, none, or one transmitter that was not decoded; ``duplicate_rate``: fraction of
  RBG-TTIs that decoded a dPDU the BS already had; ``success_rate``: fraction that decoded a new
  one. The five rates sum to 1.
- ``drop_rate``: dropped on overflow / generated; ``loss_rate``: (deleted unreceived + lost on
  departure) / generated (pooled over episodes); ``dropped``, ``deleted_unreceived`` and
  ``lost_on_departure`` are also reported as means per episode.
- ``buffer_occupancy``: mean over active UE-TTIs of the buffer at the end of the TTI.
- ``latency_mean``, ``latency_p95``: TTIs from arrival to first reception (0 = received in the
  TTI of arrival), pooled over all received dPDUs, exact from the histogram (p95 uses NumPy's
  default "linear" percentile rule).
- ``signaling_rate``: non-zero UCMs plus non-zero DCMs per TTI.

Aggregates are the mean over episodes with a 95 % confidence half-width (Student t); ratios
(genie_fraction, latency_mean, pooled rates) use the delta method of the ratio estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from mfsg.env import spec

CONFIDENCE = 0.95
P95 = 95.0

KEYS = (
    "throughput", "genie_fraction", "jain", "collision_rate", "idle_rate", "duplicate_rate",
    "latency_mean", "latency_p95", "signaling_rate",
)


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95 % confidence half-width (``nan`` when it cannot be estimated)."""

    mean: float
    ci95: float

    def as_dict(self) -> dict:
        return {"mean": self.mean, "ci95": self.ci95}


def _t_quantile(n: int) -> float:
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) if n > 1 else math.nan


def mean_ci(x) -> Estimate:
    """Mean of per-episode values and its 95 % half-width."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n == 0:
        return Estimate(math.nan, math.nan)
    half = _t_quantile(n) * x.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    return Estimate(float(x.mean()), float(half))


def ratio_ci(num, den) -> Estimate:
    """R = Σnum / Σden over episodes, with the ratio estimator's (delta-method) 95 % half-width."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    n, total = num.size, den.sum()
    if n == 0 or total == 0:
        return Estimate(math.nan, math.nan)
    r = num.sum() / total
    if n < 2:
        return Estimate(float(r), math.nan)
    resid = num - r * den
    half = _t_quantile(n) * resid.std(ddof=1) / (math.sqrt(n) * den.mean())
    return Estimate(float(r), float(half))


def jain(x) -> float:
    """Jain's index (Σx)² / (n·Σx²) of a vector (model §7); 1 when every x is 0 or x is empty."""
    x = np.asarray(x, dtype=np.float64)
    return float(spec.jain_from_sums(x.size, x.sum(), (x * x).sum())) if x.size else 1.0


def hist_mean(hist) -> float:
    """Mean of the samples a histogram counts (bin l = value l); nan when empty."""
    h = np.asarray(hist, dtype=np.float64)
    total = h.sum()
    return float((h * np.arange(h.size)).sum() / total) if total else math.nan


def hist_percentile(hist, q: float) -> float:
    """Exact ``numpy.percentile(samples, q)`` ("linear" rule) of the samples a histogram counts."""
    h = np.asarray(hist, dtype=np.int64)
    n = int(h.sum())
    if n == 0:
        return math.nan
    cum = np.cumsum(h)
    pos = q / 100.0 * (n - 1)  # position in the sorted samples
    lo, hi = math.floor(pos), math.ceil(pos)
    value = lambda i: int(np.searchsorted(cum, i, side="right"))  # noqa: E731  sample i (0-based)
    return float(value(lo) + (pos - lo) * (value(hi) - value(lo)))


def _np(run: dict, key: str) -> np.ndarray:
    v = run[key]
    return v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def per_episode(run: dict) -> dict[str, np.ndarray]:
    """Per-episode values of the metrics that are means over episodes."""
    T, K = run["horizon"], run["n_rbg"]
    g = lambda k: _np(run, k).astype(np.float64)  # noqa: E731
    rbg_ttis = K * T
    return {
        "throughput": g("delivered") / T,
        "jain": g("jain"),
        "collision_rate": g("collisions") / rbg_ttis,
        "idle_rate": g("idle") / rbg_ttis,
        "erasure_rate": g("erasures") / rbg_ttis,
        "duplicate_rate": g("duplicates") / rbg_ttis,
        "success_rate": g("delivered") / rbg_ttis,
        "signaling_rate": (g("ucm_nonzero") + g("dcm_nonzero")) / T,
        "dropped": g("dropped_overflow"),
        "deleted_unreceived": g("deleted_unreceived"),
        "lost_on_departure": g("lost_on_departure"),
        "generated": g("generated"),
    }


def summarize(run: dict, genie: dict | None = None) -> dict[str, Estimate]:
    """All model §7 metrics of a run; ``genie`` is the genie's run on the same seeds (or omitted)."""
    out = {k: mean_ci(v) for k, v in per_episode(run).items()}
    hist = _np(run, "latency_hist").astype(np.int64)
    lat_sum = (hist * np.arange(hist.shape[1])).sum(axis=1)
    out["latency_mean"] = ratio_ci(lat_sum, hist.sum(axis=1))
    out["latency_p95"] = Estimate(hist_percentile(hist.sum(axis=0), P95), math.nan)
    if "buffer_sum" in run:
        out["buffer_occupancy"] = ratio_ci(_np(run, "buffer_sum"), _np(run, "ue_ttis"))
    gen = _np(run, "generated")
    out["drop_rate"] = ratio_ci(_np(run, "dropped_overflow"), gen)
    out["loss_rate"] = ratio_ci(_np(run, "deleted_unreceived") + _np(run, "lost_on_departure"), gen)
    if genie is not None:
        if genie["n_episodes"] != run["n_episodes"]:
            raise ValueError("genie run has a different number of episodes: it must use the same seeds")
        out["genie_fraction"] = ratio_ci(_np(run, "delivered"), _np(genie, "delivered"))
    return {k: out[k] for k in (*[k for k in KEYS if k in out], *sorted(set(out) - set(KEYS)))}


def run_from_env(env) -> dict:
    """The per-episode results of a finished :class:`~mfsg.env.BatchedEnv` (no ``buffer_sum``)."""
    out = {k: v.clone() for k, v in env.c.as_dict().items()}
    out.update(latency_hist=env.latency_hist.clone(), jain=env.jain().clone(),
               horizon=env.T, n_rbg=env.K, n_episodes=env.E)
    return out


def episode_metrics(env) -> dict[str, float]:
    """Means over the episodes of a finished :class:`~mfsg.env.BatchedEnv` (no genie_fraction)."""
    return {k: est.mean for k, est in summarize(run_from_env(env)).items()}


def genie_throughput(env_cfg, episodes: int, seed: int) -> float:
    """Mean genie throughput on the draws of ``BatchedEnv(env_cfg, episodes, seed=seed)``."""
    from mfsg.protocols import Genie, run_protocol

    run = run_protocol(env_cfg, Genie(), episodes, seed, chunk=episodes)
    return float(run["delivered"].double().mean()) / env_cfg.horizon


def format_metrics(metrics: dict, keys=KEYS) -> str:
    """A two- or three-column table (metric, mean[, ±95 % CI]); ``keys`` first, then the rest."""
    order = [k for k in keys if k in metrics] + [k for k in metrics if k not in keys]
    width = max(len(k) for k in order)
    lines = []
    for k in order:
        v = metrics[k]
        mean, ci = (v.mean, v.ci95) if isinstance(v, Estimate) else (v, math.nan)
        cell = f"{mean:>10.4f}" if isinstance(mean, (int, float)) else f"{mean!s:>10}"
        lines.append(f"{k:<{width}}  {cell}" + ("" if math.isnan(ci) else f"  ± {ci:.4f}"))
    return "\n".join(lines)
