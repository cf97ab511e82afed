"""PAG (model §5): candidates, validity, parse/format, token trie."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mfsg.env import spec
from mfsg.language import grammar
from mfsg.language.scoring import encode_candidates
from mfsg.language.tokenizer import build_tokenizer

limits = st.builds(grammar.Limits, n_ucm=st.integers(1, 4), n_rbg=st.integers(1, 12), n_dcm=st.integers(1, 14))


@given(limits)
def test_candidates_match_the_spec_action_sets(lim):
    ue = grammar.ue_table(lim)
    assert ue.n == lim.n_ucm * (lim.n_rbg + 2)
    expect = {(u, a) for u in range(lim.n_ucm) for a in range(lim.n_rbg + 2)}
    assert set(ue.actions) == expect
    idle_only = {ue.actions[c] for c in ue.valid[0].nonzero().flatten().tolist()}
    assert idle_only == {(u, spec.IDLE) for u in range(lim.n_ucm)}  # TX/DELETE need a dPDU
    assert bool(ue.valid[1].all())
    bs = grammar.bs_table(lim)
    assert [a for (a,) in bs.actions] == list(range(lim.n_dcm))


@given(limits)
def test_format_and_parse_are_inverse(lim):
    for (u, a), text in zip(grammar.ue_table(lim).actions, grammar.ue_table(lim).texts, strict=True):
        assert grammar.format_ue(u, a, lim.n_rbg) == text
        assert grammar.parse_ue(text, lim, has_dpdu=True) == (u, a)
        ok = a == spec.IDLE
        assert grammar.parse_ue(text, lim, has_dpdu=False) == ((u, a) if ok else (grammar.INVALID, grammar.INVALID))
    for (d,), text in zip(grammar.bs_table(lim).actions, grammar.bs_table(lim).texts, strict=True):
        assert grammar.format_bs(d) == text and grammar.parse_bs(text, lim) == d


@pytest.mark.parametrize(
    "text",
    [
        "",
        "UCM",
        "UCM 2 IDLE",
        "UCM 0 TX RBG 3",
        "UCM 0 TX RBG 0",
        "UCM 0 IDLE IDLE",
        "UCM 01 IDLE",
        "DCM 0",
        "UCM 0 TX 1",
        "ucm 0 idle",
    ],
)
def test_malformed_ue_actions_are_invalid(text):
    lim = grammar.Limits(2, 2, 4)
    assert grammar.parse_ue(text, lim, has_dpdu=True) == (grammar.INVALID, grammar.INVALID)


@pytest.mark.parametrize("text", ["DCM 4", "DCM", "DCM 1 2", "UCM 0 IDLE", "DCM -1"])
def test_malformed_bs_actions_are_invalid(text):
    assert grammar.parse_bs(text, grammar.Limits(2, 2, 4)) == grammar.INVALID


@given(limits)
def test_trie_accepts_exactly_the_valid_candidates(lim):
    tok = build_tokenizer()
    table = grammar.ue_table(lim)
    cands = encode_candidates(tok, table.texts)
    seqs = [cands.ids[c, : cands.length[c]].tolist() for c in range(table.n)]
    trie = grammar.TokenTrie(seqs, table.valid, len(tok))
    for cls in range(2):
        for c, seq in enumerate(seqs):
            node = int(trie.root[cls])
            for t in seq:
                node = int(trie.child[node, t]) if node >= 0 else -1
            reached = node >= 0 and int(trie.leaf[node]) == c
            assert reached == bool(table.valid[cls, c])
        # every walk that follows allowed tokens ends in a valid candidate's leaf
        allowed = trie.step_allowed(cands.ids, torch.tensor(cls))
        for c in table.valid[cls].nonzero().flatten().tolist():
            for j in range(int(cands.length[c])):
                assert bool(allowed[c, j, cands.ids[c, j]])


def test_trie_rejects_a_set_that_is_not_prefix_free():
    with pytest.raises(ValueError, match="prefix"):
        grammar.TokenTrie([[5, 6], [5, 6, 7]], torch.ones(1, 2, dtype=torch.bool), 10)
