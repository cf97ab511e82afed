"""``mfsg protocol``: text and JSON reports, files under --out, trained players by checkpoint, and
one-line errors naming the option with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfsg.cli import main

REPO = Path(__file__).resolve().parents[2]
BASE = ["protocol", "--n-ue", "3", "--p-arrival", "0.5", "--episodes", "10", "--n-boot", "50"]


def test_sr_grant_json(capsys):
    assert main([*BASE, "--protocol", "sr-grant", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert {"dcm_symbols", "ucm_symbols", "mutual_information", "signaling", "card", "config"} <= set(rep)
    assert "card_vs_reference" not in rep  # SR/grant is the reference
    rules = {r["outcome"]: r for r in rep["card"]["rules"]}
    assert rules["access=3"]["condition"] == [["dcm=1", True]] and rules["access=3"]["exact"]
    assert len(rep["mutual_information"]) == 6
    dcm1 = rep["dcm_symbols"][1]
    assert dcm1["p_decoded_prev"] == 1.0 and dcm1["nonempty"]["access"][3] == 1.0
    sig = rep["signaling"]
    assert sig["messages_per_delivered"]["mean"] > 0 and sig["throughput"]["mean"] > 0


def test_genie_text_and_files(tmp_path, capsys):
    out = tmp_path / "genie"
    assert main([*BASE, "--protocol", "genie", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sends no messages" in text and "differences from sr-grant's card" in text
    assert {p.name for p in out.iterdir()} == {"report.json", "report.txt", "action_heatmap.svg", "information.svg"}
    rep = json.loads((out / "report.json").read_text())
    assert rep["card"]["silent"] and rep["signaling"]["messages_per_tti"]["mean"] == 0.0
    assert rep["reference_signaling"]["messages_per_tti"]["mean"] > 0
    assert all(m["corrected"] == 0.0 for m in rep["mutual_information"])


def test_checkpoint(capsys):
    ckpt = REPO / "experiments" / "checkpoints" / "mappo-n6"
    args = ["protocol", "--checkpoint", str(ckpt), "--n-ue", "6", "--p-arrival", "0.48", "--episodes", "4",
            "--n-boot", "20", "--json"]
    assert main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["protocol"] == "mappo-n6" and rep["decisions"] == 4 * 24 * 6
    assert rep["card_vs_reference"]["reference"] == "sr-grant"


@pytest.mark.parametrize(("args", "flag"), [
    (["--protocol", "csma"], "--protocol='csma' is invalid: allowed one of genie, sr-grant, sr-grant-speculative, aloha"),
    ([], "--checkpoint / --protocol: give exactly one"),
    (["--protocol", "genie", "--checkpoint", "x"], "--checkpoint / --protocol: give exactly one"),
    (["--checkpoint", "/nonexistent"], "--checkpoint='/nonexistent' is invalid"),
    (["--protocol", "genie", "--episodes", "0"], "--episodes=0 is invalid"),
    (["--protocol", "genie", "--n-boot", "1"], "--n-boot=1 is invalid"),
])
def test_bad_arguments(args, flag, capsys):
    base = ["protocol", "--n-ue", "2", "--p-arrival", "0.5"]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(("n_ue", "p", "flag"), [("0", "0.5", "--n-ue=0"), ("2", "1.5", "--p-arrival=1.5")])
def test_bad_scenario(n_ue, p, flag, capsys):
    assert main(["protocol", "--protocol", "aloha", "--n-ue", n_ue, "--p-arrival", p]) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and "allowed" in err and len(err.splitlines()) == 1


def test_too_many_ues_for_a_checkpoint(capsys):
    ckpt = REPO / "experiments" / "checkpoints" / "mappo-n6"
    assert main(["protocol", "--checkpoint", str(ckpt), "--n-ue", "7", "--p-arrival", "0.5"]) == 2
    assert "--n-ue=7 is invalid" in capsys.readouterr().err


@pytest.mark.slow
def test_default_players(capsys):
    ckpt = REPO / "experiments" / "checkpoints" / "mfsg-default"
    args = ["protocol", "--checkpoint", str(ckpt), "--n-ue", "2", "--p-arrival", "0.48", "--episodes", "4",
            "--n-boot", "20", "--json"]
    assert main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["decisions"] == 4 * 24 * 2 and rep["card"]["rules"]
