"""SIE prompts (model §5, LLM4MAC Eqs. 7–8) and the protocol tokenizer."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lang_helpers import ENV, agents, random_obs
from transformers import AutoTokenizer

from mfsg.language import grammar, prompts
from mfsg.language.tokenizer import WordEncoder, build_tokenizer

LIM = grammar.Limits.from_env(ENV)
CFG = prompts.PromptConfig()


def _diff_words(a: str, b: str) -> list[tuple[str, str]]:
    wa, wb = a.split(), b.split()
    assert len(wa) == len(wb)
    return [(x, y) for x, y in zip(wa, wb, strict=True) if x != y]


@given(st.integers(0, 10_000))
def test_ue_prompts_differ_only_in_role_and_own_observation(seed):
    _, fobs = random_obs(seed, 1)
    fobs.active[0, :2] = True
    # give UE 1 exactly UE 0's own observation: then only the role may differ
    for f in ("buffer", "prev_ucm", "prev_access", "dcm"):
        getattr(fobs, f)[0, 1] = getattr(fobs, f)[0, 0]
    r = prompts.follower_prompts(fobs, LIM, CFG)
    assert _diff_words(r.texts[0], r.texts[1]) == [("1", "2")]  # "<Role> UE 1" vs "<Role> UE 2"
    no = prompts.follower_prompts(fobs, LIM, prompts.PromptConfig(no_sie=True))
    assert no.texts[0] == no.texts[1]


@given(st.integers(0, 10_000))
def test_bs_prompts_differ_only_in_role_and_grow_with_n(seed):
    lobs, _ = random_obs(seed, 1)
    r = prompts.leader_prompts(lobs, LIM, CFG)
    n = int(lobs.active.sum())
    assert len(r.texts) == n
    for s, text in zip(r.slot, r.texts, strict=True):
        assert f"{prompts.ROLE} BS for UE {s + 1} {prompts.TARGET}" in text
        for other in r.texts:
            assert len(_diff_words(text, other)) <= 1
    for s in range(lobs.active.shape[1]):  # every active UE's last UCM and DCM is listed
        if lobs.active[0, s]:
            assert f"UE {s + 1} ucm {int(lobs.prev_ucm[0, s])} dcm {int(lobs.prev_dcm[0, s])}" in r.texts[0]
    lobs.active[0, :] = True
    longer = prompts.leader_prompts(lobs, LIM, CFG)
    assert len(longer.texts[0].split()) >= len(r.texts[0].split())


def test_no_sie_removes_role_and_target_only():
    lobs, fobs = random_obs(3, 4)
    for fn, obs in ((prompts.leader_prompts, lobs), (prompts.follower_prompts, fobs)):
        full = fn(obs, LIM, CFG).texts
        bare = fn(obs, LIM, prompts.PromptConfig(no_sie=True)).texts
        for a, b in zip(full, bare, strict=True):
            assert prompts.ROLE in a and prompts.TARGET in a
            assert prompts.ROLE not in b and prompts.TARGET not in b
            assert prompts.CANDIDATES in b and b.startswith(a.split(f" {prompts.ROLE}")[0])


def test_ue_candidate_summary_depends_on_the_buffer():
    _, fobs = random_obs(5, 8)
    r = prompts.follower_prompts(fobs, LIM, CFG)
    for text, e, s, cls in zip(r.texts, r.env, r.slot, r.state_class, strict=True):
        assert cls == int(fobs.buffer[e, s] > 0)
        assert ("DELETE" in text.split(prompts.CANDIDATES)[1]) == bool(cls)


@given(st.integers(0, 10_000))
def test_tokenizer_covers_every_prompt_and_state_word(seed):
    tok = build_tokenizer()
    lobs, fobs = random_obs(seed, 3)
    texts = prompts.leader_prompts(lobs, LIM, CFG).texts + prompts.follower_prompts(fobs, LIM, CFG).texts
    texts += prompts.state_prompts(lobs, fobs, LIM, with_dcm=True).texts
    for ids in tok(texts, add_special_tokens=False).input_ids:
        assert tok.unk_token_id not in ids


def test_state_prompt_spans_cover_each_ue_segment():
    lobs, fobs = random_obs(11, 4)
    sp = prompts.state_prompts(lobs, fobs, LIM, with_dcm=True)
    for e, (text, spans) in enumerate(zip(sp.texts, sp.spans, strict=True)):
        assert set(spans) == set(lobs.active[e].nonzero().flatten().tolist())
        for s, (lo, hi) in spans.items():
            seg = text[lo:hi]
            assert seg.startswith(f"UE {s + 1} buf {int(fobs.buffer[e, s])} ") and seg.endswith(
                f"now {int(fobs.dcm[e, s])}"
            )
    assert " now " not in prompts.state_prompts(lobs, fobs, LIM, with_dcm=False).texts[0]


def test_tokenizer_round_trips_offline(tmp_path):
    tok = build_tokenizer()
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.bos_token_id) == (0, 1, 2, 3)
    text = prompts.follower_prompts(random_obs(1, 2)[1], LIM, CFG).texts[0]
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(ids)[-1] == prompts.ACTION  # tags are single tokens
    assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert again(text, add_special_tokens=False).input_ids == ids
    assert len(again) == len(tok) and again.pad_token_id == tok.pad_token_id


@given(st.integers(0, 10_000), st.text(alphabet="UE 0123ab,<>Role", max_size=30))
def test_fast_word_encoder_equals_the_tokenizer(seed, noise):
    tok = build_tokenizer()
    enc = WordEncoder(tok)
    assert WordEncoder.applies(tok)
    lobs, fobs = random_obs(seed, 2)
    texts = prompts.leader_prompts(lobs, LIM, CFG).texts + prompts.follower_prompts(fobs, LIM, CFG).texts
    for text in texts + [texts[0] + " " + noise, noise, "<Action candidate>x 12 <unk>"]:
        assert enc.encode(text) == tok(text, add_special_tokens=False).input_ids


@pytest.fixture(scope="module")
def player():
    return agents("gpt2").follower


@settings(max_examples=30)
@given(seed=st.integers(0, 10_000), no_sie=st.booleans())
def test_prompt_pieces_join_to_the_text_and_encode_like_it(player, seed, no_sie):
    """Piece-wise encoding (each piece once, ids concatenated) equals tokenizing the whole prompt."""
    cfg = prompts.PromptConfig(no_sie=no_sie)
    lobs, fobs = random_obs(seed, 3)
    for r in (prompts.leader_prompts(lobs, LIM, cfg), prompts.follower_prompts(fobs, LIM, cfg)):
        assert len(r.pieces) == len(r.texts) and all(" ".join(p) == t for p, t in zip(r.pieces, r.texts, strict=True))
        ids, mask = player.encode(r.texts, r.pieces)
        want = player.tok(r.texts, add_special_tokens=False, padding=True, return_tensors="pt")
        assert torch.equal(ids, want.input_ids) and torch.equal(mask, want.attention_mask.bool())
        assert all(torch.equal(x, y) for x, y in zip(player.encode(r.texts), (ids, mask), strict=True))


def test_encoding_with_a_tiny_cache_still_equals_the_tokenizer():
    """The text -> ids cache is cleared whenever it would exceed ``tokenize_cache``, also between
    looking pieces up and concatenating them; every call still returns the tokenizer's ids."""
    small = agents("gpt2", tokenize_cache=3).follower
    for seed in range(4):
        lobs, fobs = random_obs(seed, 3)
        cfg = prompts.PromptConfig()
        for r in (prompts.leader_prompts(lobs, LIM, cfg), prompts.follower_prompts(fobs, LIM, cfg)):
            want = small.tok(r.texts, add_special_tokens=False, padding=True, return_tensors="pt")
            for got in (small.encode(r.texts, r.pieces), small.encode(r.texts)):
                assert torch.equal(got[0], want.input_ids) and torch.equal(got[1], want.attention_mask.bool())
            # bounded: what was left after the last clear is at most this call's pieces and prompts
            assert len(small._cache) <= 3 + len({x for p in r.pieces for x in p}) + len(r.texts)
