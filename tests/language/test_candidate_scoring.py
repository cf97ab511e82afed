"""Candidate scoring (model §5, LLM4MAC Eq. 9) for every backbone: equals naive concatenated
scoring, log-softmax (not logits), deduplication, gradients, constrained generation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lang_helpers import ENV, random_obs

from mfsg.language import grammar, prompts
from mfsg.language.backbones import FAMILIES, BackboneConfig, build_backbone
from mfsg.language.positions import PositionRule
from mfsg.language.scoring import encode_candidates, make_scorer

LIM = grammar.Limits.from_env(ENV)
TOL = 1e-5


BACKBONES = {**{f: BackboneConfig(family=f, seed=7) for f in FAMILIES},
             "gpt2-ue_set": BackboneConfig(family="gpt2", seed=7, positions="ue_set"),
             "gpt2-ue_set-log_n": BackboneConfig(family="gpt2", seed=7, positions="ue_set", attention_scale="log_n",
                                                 log_n_ref=16)}


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def backbone(request):
    return build_backbone(BACKBONES[request.param])


def _prompts(tok, n_env=3, seed=0):
    lobs, fobs = random_obs(seed, n_env)
    texts = prompts.follower_prompts(fobs, LIM, prompts.PromptConfig()).texts
    texts += prompts.leader_prompts(lobs, LIM, prompts.PromptConfig()).texts[:3]
    texts += texts[:2]  # duplicates
    enc = tok(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    return texts, enc.input_ids, enc.attention_mask.bool()


def naive_reference(model, tok, texts, cands):
    """Prompt + candidate through the full model, one pair at a time, no padding, no reuse."""
    out = torch.zeros(len(texts), cands.ids.shape[0])
    for i, text in enumerate(texts):
        p = tok(text, add_special_tokens=False).input_ids
        for c in range(cands.ids.shape[0]):
            w = cands.ids[c, : cands.length[c]].tolist()
            if model.config.is_encoder_decoder:
                dec = [model.config.decoder_start_token_id] + w[:-1]
                logits = model(
                    input_ids=torch.tensor([p]), decoder_input_ids=torch.tensor([dec]), use_cache=False
                ).logits[0]
                pos = torch.arange(len(w))
            else:
                seq = torch.tensor([p + w[:-1]])
                full = torch.ones_like(seq, dtype=torch.bool)
                ids_pos = PositionRule.of(model)(seq, full)  # the rule over the whole line
                # (with attention_mask None, transformers reads a position reset as a packed-sequence boundary)
                logits = model(input_ids=seq, attention_mask=full, position_ids=ids_pos, use_cache=False).logits[0]
                pos = torch.arange(len(p) - 1, len(p) - 1 + len(w))
            out[i, c] = F.log_softmax(logits, dim=-1)[pos, w].sum()
    return out


def test_scores_equal_naive_concatenated_scoring(backbone):
    model, tok = backbone
    texts, ids, mask = _prompts(tok, n_env=2)
    cands = encode_candidates(tok, grammar.ue_table(LIM).texts)
    with torch.no_grad():
        ref = naive_reference(model, tok, texts, cands)
        for reuse in (True, False):
            for dedup in (True, False):
                got = make_scorer(model, "hf", reuse=reuse, dedup=dedup).score(ids, mask, cands)
                torch.testing.assert_close(got, ref, atol=TOL, rtol=0, msg=f"reuse={reuse} dedup={dedup}")


def test_dedup_gives_the_same_scores(backbone):
    model, tok = backbone
    _, ids, mask = _prompts(tok, n_env=4, seed=1)
    cands = encode_candidates(tok, grammar.bs_table(LIM).texts)
    with torch.no_grad():
        a = make_scorer(model, "hf", dedup=True).logprobs(ids, mask, cands)
        b = make_scorer(model, "hf", dedup=False).logprobs(ids, mask, cands)
    torch.testing.assert_close(a, b, atol=TOL, rtol=0)


def test_constant_logit_shift_leaves_scores_unchanged(backbone):
    model, tok = backbone
    _, ids, mask = _prompts(tok)
    cands = encode_candidates(tok, grammar.ue_table(LIM).texts)
    head = model.get_output_embeddings()
    shifted = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        shifted.weight.copy_(head.weight)
        shifted.bias.fill_(37.5)
        before = make_scorer(model, "hf").score(ids, mask, cands)
        model.set_output_embeddings(shifted)
        try:
            after = make_scorer(model, "hf").score(ids, mask, cands)
        finally:
            model.set_output_embeddings(head)
    torch.testing.assert_close(after, before, atol=TOL, rtol=0)


def test_scores_are_log_probabilities_not_logits(backbone):
    model, tok = backbone
    _, ids, mask = _prompts(tok)
    cands = encode_candidates(tok, grammar.bs_table(LIM).texts)
    with torch.no_grad():
        full = make_scorer(model, "hf").logprobs(ids, mask, cands)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(full.shape[:-1]), atol=1e-5, rtol=0)


def test_scores_are_differentiable(backbone):
    model, tok = backbone
    _, ids, mask = _prompts(tok)
    cands = encode_candidates(tok, grammar.ue_table(LIM).texts)
    model.zero_grad()
    make_scorer(model, "hf").score(ids, mask, cands).logsumexp(-1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads)
    model.zero_grad()


def test_free_generation_log_probability_equals_teacher_forcing(backbone):
    model, tok = backbone
    _, ids, mask = _prompts(tok)
    s = make_scorer(model, "hf")
    with torch.no_grad():
        toks, total, _, _ = s.generate(
            ids, mask, 5, tok.eos_token_id, sample=True, generator=torch.Generator().manual_seed(3)
        )
        full = s.logprobs_rows(ids, mask, toks)
    eos = (toks == tok.eos_token_id).long()
    upto = (eos.cumsum(1) - eos) == 0
    tf = (full.gather(-1, toks[..., None]).squeeze(-1) * upto).sum(-1)
    torch.testing.assert_close(tf, total, atol=TOL, rtol=0)
