"""``mfsg bench policy`` latency rows (mfsg/bench/policy.py) under both position rules and attention scales."""

from mfsg.bench import policy as bench_policy


def test_latency_rows_name_their_position_rule_and_attention_scale():
    rows = bench_policy._latency("gpt2", "numpy", [2, 8], ttis=12, positions="ue_set", attention_scale="log_n")
    rows += bench_policy._latency("gpt2", "numpy", [8], ttis=12)
    assert [(r["N"], r["positions"], r["attention_scale"]) for r in rows] == [
        (2, "ue_set", "log_n"), (8, "ue_set", "log_n"), (8, "absolute", "standard")]
    assert all(0 < r["min_ms"] <= r["p50_ms"] <= r["p99_ms"] for r in rows)
    text = bench_policy.format_result({"scoring": [], "summary": {}, "latency": rows, "validity": [], "targets": {}})
    assert "ue_set" in text and "positions" in text and "log_n" in text and "attention_scale" in text
