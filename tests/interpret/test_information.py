"""Mutual information: plug-in and Miller–Madow values, a message drawn independently of the state has
MI ≈ 0 within its interval, a copy of the state carries its entropy (model §7)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mfsg.config import ConfigError
from mfsg.interpret.information import InformationConfig, mi_from_counts, mutual_information


def test_values_of_a_known_table():
    joint = np.array([[30, 10], [5, 55]])
    n = joint.sum()
    px, py = joint.sum(1) / n, joint.sum(0) / n
    expected = stats.entropy(px, base=2) + stats.entropy(py, base=2) - stats.entropy(joint.ravel() / n, base=2)
    plugin, corrected = mi_from_counts(joint)
    assert plugin == pytest.approx(expected)
    # Miller–Madow: (m_x − 1) + (m_y − 1) − (m_xy − 1) = 1 + 1 − 3 bins, over 2 n ln 2
    assert corrected == pytest.approx(expected - 1 / (2 * n * math.log(2)))


@settings(derandomize=True)
@given(n=st.integers(200, 3000), k=st.integers(1, 5), p=st.floats(0.05, 0.95), grouped=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_independent_message_has_mi_zero_within_its_interval(n, k, p, grouped, seed):
    rng = np.random.default_rng(seed)
    message = rng.integers(0, k, n)
    state = rng.random(n) < p  # drawn independently of the message
    groups = np.arange(n) // 24 if grouped else None
    mi = mutual_information(message, state, groups, InformationConfig(n_boot=300, confidence=0.99, seed=seed % 1000))
    assert mi.lo <= 0.0 <= mi.hi
    assert abs(mi.corrected) < mi.h_y + 1e-12


def test_independent_coverage_and_bias():
    """Over many independent draws the 95 % interval covers 0 nearly always, and the corrected
    estimate is far less biased than the plug-in one."""
    rng = np.random.default_rng(7)
    covered, plugin, corrected = 0, [], []
    reps = 200
    for r in range(reps):
        message, state = rng.integers(0, 4, 500), rng.random(500) < 0.3
        mi = mutual_information(message, state, np.arange(500) // 24, InformationConfig(n_boot=200, seed=r))
        covered += mi.lo <= 0.0 <= mi.hi
        plugin.append(mi.plugin)
        corrected.append(mi.corrected)
    assert covered / reps >= 0.9
    assert abs(np.mean(corrected)) < 0.25 * np.mean(plugin)


@given(n=st.integers(100, 2000), p=st.floats(0.1, 0.9), seed=st.integers(0, 2**16))
def test_a_copy_of_the_state_carries_its_entropy(n, p, seed):
    rng = np.random.default_rng(seed)
    state = rng.random(n) < p
    if state.all() or not state.any():
        return
    mi = mutual_information(np.where(state, 3, 1), state, np.arange(n) // 10, InformationConfig(n_boot=200))
    assert mi.plugin == pytest.approx(mi.h_y)
    assert mi.lo > 0 and mi.lo <= mi.corrected <= mi.hi


def test_constant_stream_carries_nothing():
    mi = mutual_information(np.zeros(100, dtype=int), np.arange(100) % 2 == 0)
    assert mi.plugin == mi.corrected == mi.lo == mi.hi == 0.0
    assert mi.h_y == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        mutual_information([0, 1], [0])
    with pytest.raises(ConfigError, match="information.n_boot"):
        InformationConfig(n_boot=1)
    with pytest.raises(ConfigError, match="information.confidence"):
        InformationConfig(confidence=1.0)
    assert math.isnan(mutual_information([], []).corrected)
