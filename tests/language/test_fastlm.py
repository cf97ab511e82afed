"""The packed-tree GPT-2 scorer (mfsg.language.fastlm) equals the Hugging Face scorer: scores,
next-token tables, rows, gradients w.r.t. the HF parameters, policy decisions (model §5)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lang_helpers import ENV, agents, random_obs, rendered_inputs

from mfsg.config import ConfigError
from mfsg.language import grammar, prompts
from mfsg.language.backbones import BackboneConfig, build_backbone
from mfsg.language.fastlm import FastGPT2, supports
from mfsg.language.packing import candidate_tree
from mfsg.language.policy import LanguagePolicyConfig
from mfsg.language.pretrain import default_checkpoint
from mfsg.language.scoring import encode_candidates, make_scorer, sequence_logprob

LIM = grammar.Limits.from_env(ENV)
TOL = 1e-5  # float32 comparisons (gradients, shifts); engine equality itself is tested in float64
CKPT = Path(default_checkpoint("gpt2"))
WEIGHTS = ["random", "random-ue_set", "random-log_n"] + (["pretrained"] if (CKPT / "config.json").is_file() else [])
TABLES = {"leader": grammar.bs_table(LIM), "follower": grammar.ue_table(LIM)}


@pytest.fixture(scope="module", params=WEIGHTS)
def backbone(request):
    cfgs = {"random": BackboneConfig(seed=7), "random-ue_set": BackboneConfig(seed=7, positions="ue_set"),
            "random-log_n": BackboneConfig(seed=7, attention_scale="log_n", log_n_ref=16)}
    return build_backbone(cfgs.get(request.param) or BackboneConfig(path=str(CKPT)))


def _batch(tok, seed: int, which: str, n_env: int):
    """Right-padded prompts: follower prompts of several envs (varied lengths), leader prompts of
    one env (a long shared prefix) or of several, or a mix with duplicates."""
    lobs, fobs = random_obs(seed, n_env)
    cfg = prompts.PromptConfig()
    fol, lead = prompts.follower_prompts(fobs, LIM, cfg).texts, prompts.leader_prompts(lobs, LIM, cfg).texts
    texts = {"follower": fol, "leader": lead, "mixed": fol[:3] + lead[:3] + fol[:2]}[which]
    enc = tok(list(texts), padding=True, return_tensors="pt", add_special_tokens=False)
    return enc.input_ids, enc.attention_mask.bool()


def _masked(full, cands):
    return full * cands.mask[None, :, :, None]


EXACT_TOL = 1e-10  # float64: the two engines are the same algorithm up to summation order


@pytest.fixture(scope="module")
def backbone64(backbone):
    """The backbone in float64, so engine differences are not hidden by (or blamed on) float32 rounding:
    in float32, log-probabilities near −32 carry ~1e-5 of summation noise whichever engine computes them."""
    model, tok = backbone
    return copy.deepcopy(model).double(), tok


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), which=st.sampled_from(["follower", "leader", "mixed"]), n_env=st.integers(1, 3))
def test_scores_equal_the_hf_scorer(backbone64, seed, which, n_env):
    model, tok = backbone64
    ids, mask = _batch(tok, seed, which, n_env)
    fast = make_scorer(model, "fast")
    assert fast.engine == "fast"
    with torch.no_grad():
        for table in TABLES.values():
            cands = encode_candidates(tok, table.texts)
            got = fast.score(ids, mask, cands)
            for reuse in (True, False):
                ref = make_scorer(model, "hf", reuse=reuse).score(ids, mask, cands)
                torch.testing.assert_close(got, ref, atol=EXACT_TOL, rtol=0)
            full_ref = make_scorer(model, "hf", dedup=False).logprobs(ids, mask, cands)
            full = make_scorer(model, "fast", dedup=False).logprobs(ids, mask, cands)
            torch.testing.assert_close(_masked(full, cands), _masked(full_ref, cands), atol=EXACT_TOL, rtol=0)


def test_single_prompt_and_padding_only_differences(backbone64):
    """P = 1 (no shared prefix) and a prompt that is a prefix of another (padding inside the
    shared part is never shared)."""
    model, tok = backbone64
    ids, mask = _batch(tok, 3, "leader", 1)
    short = ids.clone()
    n = int(mask[0].sum()) - 5
    short[0, n:] = tok.pad_token_id
    ids2 = torch.cat([ids[:1], short[:1]])
    mask2 = torch.cat([mask[:1], torch.arange(ids.shape[1])[None] < n])
    cands = encode_candidates(tok, TABLES["leader"].texts)
    with torch.no_grad():
        for x, m in ((ids[:1], mask[:1]), (ids2, mask2)):
            ref = make_scorer(model, "hf").score(x, m, cands)
            torch.testing.assert_close(make_scorer(model, "fast").score(x, m, cands), ref, atol=EXACT_TOL, rtol=0)


def test_rows_and_prompt_pass_equal_the_hf_scorer(backbone64):
    model, tok = backbone64
    ids, mask = _batch(tok, 5, "mixed", 2)
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(0, len(tok), (ids.shape[0], 4), generator=g)
    hf, fast = make_scorer(model, "hf"), make_scorer(model, "fast")
    with torch.no_grad():
        rows, ref = fast.logprobs_rows(ids, mask, toks), hf.logprobs_rows(ids, mask, toks)
        torch.testing.assert_close(rows, ref, atol=EXACT_TOL, rtol=0)
        first, ref = fast.prompt_logprobs(ids, mask), hf.prompt_logprobs(ids, mask)
        torch.testing.assert_close(first, ref, atol=EXACT_TOL, rtol=0)


@pytest.mark.parametrize("which", ["follower", "leader"])
def test_gradients_wrt_hf_parameters_equal(which):
    model, tok = build_backbone(BackboneConfig(seed=3))
    ids, mask = _batch(tok, 11, which, 1 if which == "leader" else 3)
    cands = encode_candidates(tok, TABLES[which].texts)
    grads = []
    for engine in ("hf", "fast"):
        model.zero_grad()
        s = make_scorer(model, engine).score(ids, mask, cands)
        (torch.log_softmax(s, -1)[:, 0].sum() + 0.1 * s.sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(model.parameters()))
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=TOL, rtol=0, msg=n)


def test_constant_logit_shift_leaves_scores_unchanged():
    model, tok = build_backbone(BackboneConfig(seed=5))
    ids, mask = _batch(tok, 2, "mixed", 2)
    cands = encode_candidates(tok, TABLES["follower"].texts)
    shifted = copy.deepcopy(model)
    head = torch.nn.Linear(model.config.n_embd, len(tok), bias=True)
    head.weight = torch.nn.Parameter(model.get_output_embeddings().weight.detach().clone())
    torch.nn.init.constant_(head.bias, 7.5)
    shifted.lm_head = head
    with torch.no_grad():
        a = make_scorer(model, "fast").score(ids, mask, cands)
        b = make_scorer(shifted, "fast").score(ids, mask, cands)
    torch.testing.assert_close(a, b, atol=TOL, rtol=0)
    assert not torch.allclose(a, torch.zeros_like(a))


def test_deterministic_and_parameters_are_shared():
    model, tok = build_backbone(BackboneConfig(seed=9))
    ids, mask = _batch(tok, 4, "leader", 2)
    cands = encode_candidates(tok, TABLES["leader"].texts)
    with torch.no_grad():
        a = make_scorer(model, "fast").score(ids, mask, cands)
        b = make_scorer(model, "fast").score(ids, mask, cands)
        assert torch.equal(a, b)
        fast = make_scorer(model, "fast")
        before = fast.score(ids, mask, cands)
        model.transformer.h[0].mlp.c_fc.weight.mul_(1.5)  # updates are seen: weights are read per call
        after = fast.score(ids, mask, cands)
        torch.testing.assert_close(after, make_scorer(model, "hf").score(ids, mask, cands), atol=TOL, rtol=0)
    assert not torch.allclose(before, after)


def test_candidate_tree_shares_prefixes_and_indexes_every_position():
    tok = build_backbone(BackboneConfig())[1]
    cands = encode_candidates(tok, TABLES["follower"].texts)
    tree = candidate_tree(cands.ids, cands.length)
    inputs = {
        tuple(cands.ids[c, : j + 1].tolist())
        for c in range(cands.ids.shape[0])
        for j in range(int(cands.length[c]) - 1)
    }
    assert tree.size == len(inputs) < int((cands.length - 1).sum())
    # the node feeding position j of candidate c carries token j - 1 of c, at depth j - 1
    for c in range(cands.ids.shape[0]):
        for j in range(1, int(cands.length[c])):
            n = int(tree.index[c, j]) - 1
            assert int(tree.tokens[n]) == int(cands.ids[c, j - 1]) and int(tree.depth[n]) == j - 1
    assert bool((tree.attend.sum(1) == tree.depth + 1).all())


@pytest.mark.parametrize("decoding", ["score", "trie", "free"])
def test_policy_engines_agree(decoding):
    lobs, fobs = random_obs(21, 3)
    out = {}
    for engine in ("hf", "fast"):
        ag = agents("gpt2", decoding, engine=engine)
        ag.reseed(0)
        a, b = ag.act_leader(lobs, greedy=True), ag.act_followers(fobs, greedy=True)
        ev = ag.follower.log_pi(*rendered_inputs(ag.follower, prompts.follower_prompts(fobs, ag.follower.lim, ag.pcfg)))
        out[engine] = (a, b, (ev,))
    (a0, b0, e0), (a1, b1, e1) = out["hf"], out["fast"]
    for x, y in ((a0, a1), (b0, b1)):
        assert all(torch.equal(u, v) for u, v in zip(x.actions, y.actions, strict=True))
        torch.testing.assert_close(x.logp, y.logp, atol=TOL, rtol=0)
        torch.testing.assert_close(x.entropy, y.entropy, atol=TOL, rtol=0)
    for u, v in zip(e0, e1, strict=True):
        torch.testing.assert_close(u, v, atol=TOL, rtol=0)


def test_t5_falls_back_to_hf_and_engine_is_validated():
    model, _ = build_backbone(BackboneConfig(family="t5"))
    assert not supports(model) and make_scorer(model, "fast").engine == "hf"
    with pytest.raises(ValueError):
        FastGPT2(model)
    with pytest.raises(ConfigError, match="policy.engine"):
        LanguagePolicyConfig(engine="jit")
    assert LanguagePolicyConfig().engine == "fast"


def test_scores_equal_the_table_and_caches_survive_inference_mode(backbone64):
    """``scores`` (read straight from the logits) equals Σ_j of the [P, C, L, V] table; constants
    cached during an inference-mode call stay usable with autograd afterwards."""
    model, tok = backbone64
    ids, mask = _batch(tok, 8, "mixed", 2)
    fast = FastGPT2(model)
    for table in TABLES.values():
        cands = encode_candidates(tok, table.texts)
        with torch.inference_mode():
            first = fast.scores(ids, mask, cands)
        s = fast.scores(ids, mask, cands)
        torch.testing.assert_close(s.detach(), first, atol=0, rtol=0)
        torch.testing.assert_close(s.detach(), sequence_logprob(fast.logprobs(ids, mask, cands), cands).detach(),
                                   atol=EXACT_TOL, rtol=0)
        s.sum().backward()
        assert model.transformer.wte.weight.grad is not None
        model.zero_grad(set_to_none=True)
