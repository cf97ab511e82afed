"""Seed replicates: start / final / gain per N over seeds, and Welch comparison of two recipes."""

import json

import numpy as np
import pytest
from scipy import stats

from mfsg.config import ConfigError
from mfsg.experiments.replicates import compare, summary


def _write(folder, seed, rows):
    d = folder / f"seed{seed}"
    d.mkdir(parents=True)
    lines = [json.dumps({"iteration": it, "n_ue": n, "mode": mode, "genie_fraction": v}) for it, n, mode, v in rows]
    (d / "eval.jsonl").write_text("\n".join(lines) + "\n")


def test_summary_reads_the_starting_and_last_iteration_of_each_seed(tmp_path):
    finals = [0.9, 0.95, 1.0]
    for k, f in enumerate(finals):
        _write(tmp_path, k, [(-1, 2, "greedy", 0.8), (-1, 2, "sampled", 0.1), (9, 2, "greedy", 0.85),
                             (19, 2, "greedy", f), (19, 2, "sampled", 0.2)])
    (row,) = summary(tmp_path)
    assert row["seeds"] == 3 and row["start"] == pytest.approx(0.8)
    assert row["final"] == pytest.approx(np.mean(finals))
    half = stats.t.ppf(0.975, 2) * np.std(finals, ddof=1) / np.sqrt(3)
    assert row["final_ci95"] == pytest.approx(half)
    assert row["gain"] == pytest.approx(np.mean(finals) - 0.8)


def test_a_folder_without_seeds_or_without_the_starting_players_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no seed<k>/eval.jsonl"):
        summary(tmp_path)
    _write(tmp_path, 0, [(5, 2, "greedy", 0.9)])
    with pytest.raises(ConfigError, match="no iteration -1"):
        summary(tmp_path)


def test_compare_is_welchs_interval():
    a, b = [1.0, 1.2, 0.9], [0.5, 0.7, 0.6, 0.4]
    out = compare(a, b)
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert out["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert out["ci95"] == pytest.approx((ci.high - ci.low) / 2)
    assert np.isnan(compare([1.0], [2.0, 3.0])["ci95"])


def test_e5_tau_comparison_reads_each_tau_s_replicates_and_names_bad_labels(tmp_path):
    from mfsg.experiments.e5_ablations import E5Config as Config
    from mfsg.experiments.e5_ablations import tau_comparison

    for label, finals in (("1", [0.9, 0.92, 0.94]), ("4", [0.8, 0.82, 0.84])):
        for k, f in enumerate(finals):
            _write(tmp_path / label, k, [(-1, 3, "greedy", 0.7), (9, 3, "greedy", f)])
    cfg = Config(checkpoints={"mfsg": "experiments/checkpoints/mfsg-default"},
                 tau_replicates={"1": str(tmp_path / "1"), "4": str(tmp_path / "4")})
    rows, out = tau_comparison(cfg)
    assert {(r["tau"], r["n_ue"]) for r in rows} == {(1.0, 3), (4.0, 3)}
    assert out["final_minus_reference"]["1"]["3"]["diff"] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="e5.tau_replicates.fast is invalid"):
        Config(checkpoints={"mfsg": "x"}, tau_replicates={"fast": str(tmp_path / "1")})
    with pytest.raises(ConfigError, match="e5.tau_reference='4' is invalid"):
        Config(checkpoints={"mfsg": "x"}, tau_replicates={"1": str(tmp_path / "1")})
