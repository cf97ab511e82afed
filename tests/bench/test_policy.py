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


def test_device_option_on_the_cpu_and_bad_device():
    """``--device cpu`` runs the players where asked (the same latency rows' shape as the default); a bad name
    is a one-line usage error naming the option."""
    import subprocess
    import sys

    from mfsg.learn import device as devices

    with devices.using("cpu"):
        rows = bench_policy._latency("gpt2", "fast", [2], ttis=4)
    assert len(rows) == 1 and rows[0]["p50_ms"] > 0
    out = subprocess.run([sys.executable, "-m", "mfsg", "bench", "policy", "--quick", "--device", "gpu7"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--device='gpu7' is invalid" in out.stderr and "Traceback" not in out.stderr
