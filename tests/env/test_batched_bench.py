"""``mfsg bench env`` (mfsg/bench/env.py) runs and reports both timing statistics for every row."""

from __future__ import annotations

import argparse

from mfsg.bench import env as bench_env


def test_bench_env_quick_rows():
    parser = argparse.ArgumentParser()
    bench_env.add_arguments(parser)
    result = bench_env.measure(parser.parse_args(["--quick", "--min-seconds", "0.01"]))
    rows = result["rows"]
    assert [(r["env"], r["batch"]) for r in rows] == [("reference", 1)] + [("batched", E) for E in bench_env.QUICK_SIZES]
    ref = rows[0]
    assert ref["vs_reference"] == ref["vs_reference_best"] == 1.0
    for r in rows:
        assert r["repeats"] >= 3
        assert 0 < r["ue_tti_per_s"] <= r["ue_tti_per_s_best"]  # the median episode is never faster than the fastest
        assert r["vs_reference_best"] == r["ue_tti_per_s_best"] / ref["ue_tti_per_s_best"]
    text = bench_env.format_result(result)
    assert "ue_tti_per_s_best" in text and "vs_reference_best" in text
    assert "met" not in result  # the target batch size is not among the quick sizes
