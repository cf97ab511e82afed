import argparse
import json
import math

import pytest

from mfsg.bench import verify as bench_verify
from mfsg.cli import main
from mfsg.verify.report import EXIT_INCONCLUSIVE, all_passed, check, format_table, inconclusive, ratio_check, to_json


def test_verdicts_and_table():
    rows = [
        check("g", "a", 1e-12, 1e-8),
        check("g", "b", 0.5, 0.0, "<"),
        check("g", "c", float("nan"), 1.0),
        inconclusive("g", "d", "unconverged solve: solver diverged"),
    ]
    assert [r.verdict for r in rows] == ["pass", "fail", "inconclusive", "inconclusive"]
    assert not all_passed(rows) and all_passed(rows[:1])
    table = format_table(rows)
    assert "4 checks, 1 passed, 1 failed, 2 inconclusive" in table and "solver diverged" in table
    data = json.loads(to_json(rows))
    assert data[2]["value"] is None and data[0]["verdict"] == "pass"
    with pytest.raises(ValueError, match="op"):
        check("g", "e", 1.0, 1.0, "==")
    assert math.isnan(rows[3].value)


def test_verify_command_runs_a_case(capsys):
    assert main(["verify", "--case", "scalar_tau", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["check"] for r in rows} >= {"tau_critical_known", "hurwitz"} and all(r["verdict"] == "pass" for r in rows)


def test_verify_command_rejects_unknown_case(capsys):
    assert main(["verify", "--case", "nope"]) == 2
    assert "--case='nope' is invalid" in capsys.readouterr().err


def test_bench_measure_small():
    args = argparse.Namespace(quick=True, dense_params=20, mf_params=400, rank=2, threads=1, checkpoint="")
    result = bench_verify.measure(args)
    assert result["dense"]["params"] == 20 and result["matrix_free"]["params"] == 400
    assert len(result["matrix_free"]["top6_real"]) == 6 and result["matrix_free"]["matvecs"] > 0
    assert "matrix-free top-6" in bench_verify.format_result(result)


def test_verify_command_exits_nonzero_on_a_failed_check(monkeypatch, capsys):
    from mfsg.commands.verify import _suite

    suite = _suite()
    monkeypatch.setitem(suite.CASES, "always_fails", (lambda quick, say: [check("g", "x", 1.0, 0.0)], True))
    assert main(["verify", "--case", "always_fails"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_verify_command_exit_status_for_inconclusive_rows(monkeypatch, capsys):
    from mfsg.commands.verify import _suite

    suite = _suite()
    monkeypatch.setitem(suite.CASES, "zero_over_zero", (lambda quick, say: [ratio_check("g", "x", 0.0, 0.0, 1.0)], True))
    assert main(["verify", "--case", "zero_over_zero"]) == EXIT_INCONCLUSIVE == 3
    assert "INCONCLUSIVE" in capsys.readouterr().out


def test_verify_help_documents_the_exit_status(capsys):
    import pytest as _pytest

    with _pytest.raises(SystemExit):
        main(["verify", "--help"])
    out = capsys.readouterr().out
    assert "exit status" in out and "3 none" in out
