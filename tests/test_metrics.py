"""model §7 metrics: Jain's index, exact histogram statistics, confidence intervals, run summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from mfsg import metrics
from mfsg.config import ChurnConfig, EnvConfig
from mfsg.protocols import make_protocol, run_protocol


def test_jain_edge_cases():
    assert metrics.jain([]) == 1.0
    assert metrics.jain([0, 0, 0]) == 1.0  # all x = 0: J = 1 by definition
    assert metrics.jain([0.3, 0.3, 0.3, 0.3]) == pytest.approx(1.0)
    assert metrics.jain([1.0, 0, 0, 0, 0]) == pytest.approx(1 / 5)  # one UE served: 1/n
    assert metrics.jain([0.5]) == pytest.approx(1.0)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_jain_formula_and_bounds(x):
    j = metrics.jain(x)
    a = np.asarray(x)
    expect = 1.0 if (a * a).sum() == 0 else a.sum() ** 2 / (a.size * (a * a).sum())
    assert j == pytest.approx(expect)
    assert 1 / len(x) - 1e-12 <= j <= 1 + 1e-12


@given(hist=st.lists(st.integers(0, 6), min_size=1, max_size=20).filter(lambda h: sum(h) > 0),
       q=st.floats(0, 100))
def test_hist_percentile_matches_numpy(hist, q):
    samples = np.repeat(np.arange(len(hist)), hist)
    assert metrics.hist_percentile(hist, q) == pytest.approx(np.percentile(samples, q), abs=1e-9)
    assert metrics.hist_mean(hist) == pytest.approx(samples.mean())


def test_hist_stats_of_empty_histogram_are_nan():
    assert math.isnan(metrics.hist_percentile([0, 0, 0], 95))
    assert math.isnan(metrics.hist_mean([0, 0]))


def test_mean_ci_matches_student_t():
    x = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    est = metrics.mean_ci(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert est.mean == pytest.approx(x.mean())
    assert est.ci95 == pytest.approx((hi - lo) / 2)
    assert math.isnan(metrics.mean_ci([3.0]).ci95)


def test_ratio_ci_is_ratio_of_sums():
    num, den = np.array([1.0, 2.0, 3.0, 2.0]), np.array([2.0, 2.0, 4.0, 4.0])
    est = metrics.ratio_ci(num, den)
    assert est.mean == pytest.approx(8 / 12)
    assert est.ci95 > 0
    assert metrics.ratio_ci(num, 2 * num).ci95 == pytest.approx(0.0)  # exact proportionality: no spread
    assert math.isnan(metrics.ratio_ci([1.0], [0.0]).mean)


@pytest.fixture(scope="module")
def runs():
    cfg = EnvConfig(tbler=0.05, churn=ChurnConfig(kind="markov", n_min=2, n_max=6, p_join=0.2, p_leave=0.1))
    return {n: run_protocol(cfg, make_protocol(n), 64, 1) for n in ("genie", "aloha")}


def test_summary_rates_partition_rbg_ttis(runs):
    s = metrics.summarize(runs["aloha"], runs["genie"])
    assert set(metrics.KEYS) <= set(s)
    parts = ("idle_rate", "collision_rate", "erasure_rate", "duplicate_rate", "success_rate")
    assert sum(s[k].mean for k in parts) == pytest.approx(1.0)
    assert s["throughput"].mean == pytest.approx(s["success_rate"].mean * runs["aloha"]["n_rbg"])
    assert 0 < s["genie_fraction"].mean < 1
    assert metrics.summarize(runs["genie"], runs["genie"])["genie_fraction"].mean == pytest.approx(1.0)


def test_summary_latency_from_pooled_histogram(runs):
    run = runs["aloha"]
    hist = run["latency_hist"].numpy()
    samples = np.repeat(np.arange(hist.shape[1]), hist.sum(axis=0))
    s = metrics.summarize(run)
    assert s["latency_mean"].mean == pytest.approx(samples.mean())
    assert s["latency_p95"].mean == pytest.approx(np.percentile(samples, 95))
    assert int(hist.sum()) == int(run["delivered"].sum())  # one latency per delivered dPDU
    assert "genie_fraction" not in s


def test_buffer_occupancy_and_signaling(runs):
    run = runs["genie"]
    s = metrics.summarize(run)
    assert s["buffer_occupancy"].mean == pytest.approx(float(run["buffer_sum"].sum() / run["ue_ttis"].sum()))
    assert s["signaling_rate"].mean == 0.0  # the genie needs no signaling


def test_episode_metrics_of_a_finished_env():
    from mfsg.env import BatchedEnv

    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=3))
    env = BatchedEnv(cfg, 8, seed=0)
    while not env.done:
        env.begin_tti()
        env.deliver(np.zeros((8, 3), dtype=np.int64))
        env.end_tti(np.zeros((8, 3), dtype=np.int64), np.zeros((8, 3), dtype=np.int64))
    m = metrics.episode_metrics(env)
    assert m["throughput"] == 0.0 and m["idle_rate"] == 1.0 and m["jain"] == 1.0
    assert "latency_mean" in m and "buffer_occupancy" not in m
    assert "throughput" in metrics.format_metrics(m)
