"""Every case of the verification suite runs under pytest in its quick form: a broken case fails the tests.

A row may be inconclusive (the quick budgets are small; the full suite decides more), but no row may fail
and every case must produce rows."""

import pytest

from verification.suite import CASES


@pytest.mark.parametrize("name", list(CASES))
def test_case_runs_quick_and_nothing_fails(name):
    case, _ = CASES[name]
    rows = case(True, lambda _msg: None)
    assert rows, f"{name} produced no rows"
    failed = [r for r in rows if r.failed]
    assert not failed, "\n".join(f"{r.game} {r.check}: {r.value} {r.op} {r.tolerance} ({r.detail})" for r in failed)
