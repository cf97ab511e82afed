"""The committed checkpoints score the fixed prompts of ``checkpoint_scores.json`` as they did when
the fixture was written (candidate log-probabilities, model §5 LLM4MAC Eq. 9, and log π, Eq. 10),
with every scorer engine. The pretrained LM is always compared; the trained default players only
while their weight files are the ones the fixture was written from (their hash)."""

from __future__ import annotations

import json

import pytest
import torch
from score_fixture import ENGINE, FIXTURE, players, weights_hash

TOL = 1e-5
OTHER_ENGINE_RTOL = 2e-6  # another engine's float32 sums differ by rounding, relative to the score (|score| up to ~20)
FIX = json.loads(FIXTURE.read_text())
ENGINES = ("hf", "fast", "numpy")


def _compare(name: str, engine: str) -> int:
    """Decisions compared: the fixture's engine within TOL, the others within TOL + rounding."""
    rtol = 0.0 if engine == ENGINE else OTHER_ENGINE_RTOL
    compared, built = 0, {}
    for case in FIX[name]["cases"]:
        if case["n"] not in built:
            built[case["n"]] = players(name, case["n"], engine=engine)
        leader, follower, _ = built[case["n"]]
        player = leader if case["role"] == "leader" else follower
        inputs = player.inputs_of(case["texts"], case["state_class"])
        with torch.no_grad():
            log_pi, seq = player.scores(inputs), player.sequence_scores(inputs)
        want_pi, want_seq = torch.tensor(case["log_pi"]), torch.tensor(case["sequence_scores"])
        assert log_pi.shape == want_pi.shape and seq.shape == want_seq.shape
        finite = torch.isfinite(want_pi)
        assert torch.equal(finite, torch.isfinite(log_pi)), f"{name} {case['role']} N={case['n']}: masks differ"
        torch.testing.assert_close(log_pi[finite], want_pi[finite], atol=TOL, rtol=rtol)
        torch.testing.assert_close(seq, want_seq, atol=TOL, rtol=rtol)
        compared += len(case["texts"])
    return compared


@pytest.mark.parametrize("engine", ENGINES)
def test_pretrained_lm_scores_unchanged(engine):
    name = "lm-gpt2-ue_set-log_n"
    assert weights_hash(name) == FIX[name]["sha256"], f"{name}'s weights changed: rewrite the fixture on purpose"
    assert _compare(name, engine) > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_default_players_scores_unchanged_while_committed(engine):
    name = "mfsg-default"
    if weights_hash(name) != FIX[name]["sha256"]:
        pytest.skip(f"{name} was replaced after the fixture was written (the pretrained LM is still compared)")
    assert _compare(name, engine) > 0
