"""``mfsg simulate``: the metrics table, ``--json`` keys, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from mfsg.cli import main
from mfsg.metrics import KEYS

BASE = ["simulate", "--n-ue", "4", "--p-arrival", "0.48", "--episodes", "40", "--seed", "1"]


@pytest.mark.parametrize("protocol", ["genie", "sr-grant", "aloha"])
def test_json_keys(protocol, capsys):
    assert main([*BASE, "--protocol", protocol, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(KEYS) <= set(out)
    assert all(isinstance(out[k], float) for k in KEYS)
    assert 0 < out["genie_fraction"] <= 1 + 1e-12
    if protocol == "genie":
        assert out["genie_fraction"] == pytest.approx(1.0) and out["signaling_rate"] == 0.0


def test_table(capsys):
    assert main([*BASE, "--protocol", "aloha", "--churn", "markov", "--n-min", "2", "--n-max", "5"]) == 0
    out = capsys.readouterr().out
    for key in KEYS:
        assert key in out


def test_deterministic(capsys):
    args = [*BASE, "--protocol", "aloha", "--churn", "per_episode", "--json"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    "extra, option",
    [
        (["--protocol", "aloha", "--n-ue", "0"], "--n-ue"),
        (["--protocol", "aloha", "--p-arrival", "2"], "--p-arrival"),
        (["--protocol", "csma"], "--protocol"),
        (["--protocol", "aloha", "--churn", "sometimes"], "--churn"),
        (["--protocol", "aloha", "--episodes", "0"], "--episodes"),
        (["--protocol", "aloha", "--q", "0"], "--q"),
        (["--protocol", "aloha", "--churn", "markov", "--n-min", "5", "--n-max", "3"], "--n-max"),
    ],
)
def test_bad_values_exit_2_with_one_line(extra, option, capsys):
    assert main(["simulate", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert option in err and "allowed" in err and "Traceback" not in err
