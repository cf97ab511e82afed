"""Protocol cards: SR/grant's known rules recovered exactly, the genie's silence, ALOHA's ACK, and the
comparison of cards (model §6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.env import spec
from mfsg.interpret.card import CardConfig, card_text, compare_cards, evaluate_rule, protocol_card
from mfsg.interpret.transcripts import record_protocol

HORIZON = 16


def _record(protocol: str, n: int, p: float, seed: int, n_rbg: int = 2, episodes: int = 12):
    cfg = EnvConfig(p_arrival=p, horizon=HORIZON, n_rbg=n_rbg, churn=ChurnConfig(kind="fixed", n=n))
    return record_protocol(cfg, protocol, episodes, seed)


def _exact(card, outcome, condition):
    rule = card.rule(outcome)
    assert rule is not None, f"no rule for {outcome}"
    assert rule.condition == condition, f"{outcome}: {rule.condition} instead of {condition}"
    assert rule.exact and rule.confidence == rule.coverage == 1.0


@given(n=st.integers(1, 6), n_rbg=st.integers(1, 3), p=st.floats(0.3, 1.0), seed=st.integers(0, 2**16))
def test_sr_grant_card_recovers_its_rules(n, n_rbg, p, seed):
    tr = _record("sr-grant", n, p, seed, n_rbg)
    card = protocol_card(tr)
    assert not card.silent
    K = n_rbg
    # ACK → DELETE and the BS ACKs exactly what it decoded in t−1
    _exact(card, f"access={spec.delete_action(K)}", (("dcm=1", True),))
    _exact(card, "dcm=1", (("decoded_prev", True),))
    # grant k → TX on RBG k, for every RBG that was granted at all
    granted = [k for k in range(1, K + 1) if (tr.dcm == k + 1).any()]
    assert granted
    for k in granted:
        _exact(card, f"access={spec.tx_action(k)}", ((f"dcm={k + 1}", True),))
    # SR iff still holding data after this TTI's action
    _exact(card, "ucm=1", (("holding_after", True),))
    text = "\n".join(card_text(card, tr))
    assert "if DCM 1 received then DELETE — 100 % of such cases" in text
    assert "if it still holds data after its action then sends UCM 1 — 100 %" in text


def test_genie_card_says_it_sends_no_messages():
    tr = _record("genie", 4, 0.6, 1)
    card = protocol_card(tr)
    assert card.silent and card.n_ucm_nonzero == card.n_dcm_nonzero == 0
    assert not any(r.outcome.startswith(("dcm=", "ucm=")) for r in card.rules)
    assert f"sends no messages: all {tr.n_decisions} UCMs and DCMs are 0" in card_text(card, tr)
    # the genie deletes exactly what the BS already holds (a hidden atom)
    _exact(card, f"access={spec.delete_action(2)}", (("hol_rx", True),))


def test_aloha_card_acks_and_transmits_without_grants():
    tr = _record("aloha", 3, 0.6, 2)
    card = protocol_card(tr)
    _exact(card, "dcm=1", (("decoded_prev", True),))
    _exact(card, "access=3", (("dcm=1", True),))
    tx = card.rule("access=1")
    assert tx.coverage == 1.0 and tx.confidence < 1.0  # random access: not every backlogged UE transmits


def test_compare_cards():
    ref_tr = _record("sr-grant", 3, 0.6, 4)
    ref = protocol_card(ref_tr)
    same = compare_cards(ref, ref_tr, ref)
    assert {c.verdict for c in same} == {"same rule"}
    tr = _record("genie", 3, 0.6, 4)
    comp = {c.outcome: c for c in compare_cards(protocol_card(tr), tr, ref)}
    assert comp["dcm=1"].verdict == "reference only" and comp["ucm=1"].verdict == "reference only"
    assert comp["access=1"].verdict == "differs"  # the genie transmits without a grant
    assert comp["access=1"].reference_here.coverage == 0.0
    aloha_tr = _record("aloha", 3, 0.6, 4)
    comp = {c.outcome: c for c in compare_cards(protocol_card(aloha_tr), aloha_tr, ref)}
    assert comp["dcm=1"].verdict == "same rule" and comp["access=3"].verdict == "same rule"


def test_evaluate_rule_counts():
    tr = _record("sr-grant", 2, 0.5, 0)
    rule = evaluate_rule("UE access", "access=3", (("buffer>0", True),), tr)
    assert rule.support == int((tr.buffer > 0).sum())
    assert rule.n_outcome == rule.hits == int((tr.access == 3).sum())
    assert 0 < rule.confidence < 1 and rule.coverage == 1.0


def test_card_config_checks():
    with pytest.raises(ConfigError, match="card.max_literals"):
        CardConfig(max_literals=3)
    with pytest.raises(ConfigError, match="card.holds"):
        CardConfig(holds=0.0)
    tr = _record("sr-grant", 2, 0.5, 0)
    single = protocol_card(tr, CardConfig(max_literals=1))
    assert all(len(r.condition) == 1 for r in single.rules)


def test_percent_never_rounds_a_near_miss_to_100():
    from mfsg.interpret.card import percent

    assert percent(1.0) == "100 %" and percent(0.5) == "50.0 %"
    assert percent(3689 / 3690) == "99.97 %"
