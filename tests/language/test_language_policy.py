"""Language policies (model §5; LLM4MAC Eqs. 9–11): π over valid candidates, PAG guarantee,
free-form invalid marker, determinism, save/load, fusion, critics. Training through the players
(rollout, PPO loss) is tested in tests/learn/test_language_players.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lang_helpers import ENV, PlayerPair, agents, random_obs, rendered_inputs

from mfsg.config import ConfigError
from mfsg.env import spec
from mfsg.language import fusion, grammar, prompts
from mfsg.language.backbones import FAMILIES, BackboneConfig, save_backbone
from mfsg.language.policy import LanguagePolicyConfig

LIM = grammar.Limits.from_env(ENV)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def score_agents(family):
    return agents(family)


@pytest.fixture(scope="module")
def trie_agents(family):
    return agents(family, "trie")


def _check_valid(act_f, fobs):
    ucm, access = act_f.actions
    a = fobs.active
    assert bool(act_f.valid.all())
    assert bool(((ucm >= 0) & (ucm < ENV.ucm_vocab))[a].all())
    assert bool(((access >= 0) & (access <= ENV.n_rbg + 1))[a].all())
    assert bool((access[a & (fobs.buffer == 0)] == spec.IDLE).all())  # TX/DELETE need a dPDU
    assert bool((ucm[~a] == 0).all() and (access[~a] == 0).all())


def test_pi_sums_to_one_over_valid_candidates_and_is_zero_elsewhere(score_agents):
    _, fobs = random_obs(0, 6)
    p = score_agents.follower
    r = prompts.follower_prompts(fobs, LIM, score_agents.pcfg)
    ids, mask = p.encode(r.texts)
    cls = torch.tensor(r.state_class)
    with torch.no_grad():
        pi = p.log_pi(ids, mask, cls).exp()
    valid = p.table.valid[cls]
    assert bool((pi[~valid] == 0).all())
    assert bool((pi[valid] > 0).all())
    torch.testing.assert_close(pi.sum(-1), torch.ones(len(r.texts)))


@settings(max_examples=15)
@given(seed=st.integers(0, 10_000), greedy=st.booleans())
def test_every_chosen_action_is_valid_under_pag(score_agents, trie_agents, seed, greedy):
    lobs, fobs = random_obs(seed, 3)
    for ag in (score_agents, trie_agents):
        ag.reseed(seed)
        lead = ag.act_leader(lobs, greedy=greedy)
        dcm = lead.actions[0]
        assert bool(lead.valid.all()) and bool(((dcm >= 0) & (dcm < ENV.dcm_vocab)).all())
        _check_valid(ag.act_followers(fobs, greedy=greedy), fobs)


@settings(max_examples=5)
@given(seed=st.integers(0, 10_000))
def test_random_weights_stay_valid_under_pag(family, seed):
    ag = PlayerPair(ENV, LanguagePolicyConfig(backbone=BackboneConfig(family=family, seed=seed), decoding="trie"))
    ag.reseed(seed)
    _, fobs = random_obs(seed, 2)
    _check_valid(ag.act_followers(fobs), fobs)


def test_act_logp_equals_log_pi_of_the_chosen_action(score_agents, trie_agents):
    """What ``decide`` samples from is ``log_pi`` (score decoding; trie decoding's generated
    log-probability is the same trie-renormalized sum)."""
    _, fobs = random_obs(4, 4)
    for ag in (score_agents, trie_agents):
        p = ag.follower
        r = prompts.follower_prompts(fobs, LIM, ag.pcfg)
        ch = p.decide(r, False, torch.Generator().manual_seed(0))
        with torch.no_grad():
            logp_all = p.log_pi(*rendered_inputs(p, r))
        choice = torch.tensor([p.table.index[tuple(row.tolist())] for row in ch.actions])
        torch.testing.assert_close(ch.logp, logp_all.gather(1, choice[:, None]).squeeze(1), atol=1e-5, rtol=0)
        assert bool((ch.entropy >= -1e-6).all())


def test_log_pi_is_differentiable_per_player(score_agents):
    _, fobs = random_obs(5, 3)
    p = score_agents.follower
    logp = p.log_pi(*rendered_inputs(p, prompts.follower_prompts(fobs, LIM, score_agents.pcfg)))
    logp[torch.isfinite(logp)].sum().backward()
    assert any(q.grad is not None and bool(q.grad.abs().sum() > 0) for q in p.actor_parameters())
    assert all(q.grad is None for q in score_agents.leader.actor_parameters())  # separate parameters
    p.zero_grad(set_to_none=True)


def test_leader_and_follower_have_separate_parameters(score_agents):
    lp = {id(p) for p in score_agents.leader.parameters()}
    fp = {id(p) for p in score_agents.follower.parameters()}
    assert not lp & fp
    assert not {id(p) for p in score_agents.leader.actor_parameters()} & {
        id(p) for p in score_agents.leader.critic_parameters()
    }


def test_free_form_decoding_marks_invalid_outputs_and_never_repairs(family):
    ag = agents(family, "free")
    lobs, fobs = random_obs(6, 4)
    for act in (ag.act_leader(lobs), ag.act_followers(fobs)):
        active = lobs.active
        bad = active & ~act.valid
        for x in act.actions:
            assert bool((x[bad] == grammar.INVALID).all())
            assert bool((x[active & act.valid] >= 0).all())
        assert bool((act.logp[active] <= 0).all())
    # random weights essentially never produce a grammatical string: invalid outputs are reported
    assert int((~act.valid & fobs.active).sum()) > 0


def test_free_form_parse_accepts_exactly_the_grammar(score_agents):
    p = score_agents.follower
    for c, text in enumerate(p.table.texts):
        toks = torch.tensor(p.tok(text, add_special_tokens=False).input_ids + [p.tok.eos_token_id, 0])
        assert p._parse(toks, 1, True) == c
        assert p._parse(toks, 0, True) == (c if bool(p.table.valid[0, c]) else grammar.INVALID)
        assert p._parse(toks, 1, False) == grammar.INVALID


def test_seeded_acting_is_deterministic(family):
    lobs, fobs = random_obs(8, 4)
    runs = []
    for _ in range(2):
        ag = agents(family)
        ag.reseed(123)
        a, b = ag.act_leader(lobs), ag.act_followers(fobs)
        runs.append((a.actions[0], b.actions[0], b.actions[1], a.logp, b.logp))
    for x, y in zip(*runs, strict=True):
        assert torch.equal(x, y)


def test_save_load_round_trip_gives_identical_scores(score_agents, tmp_path):
    p = score_agents.follower
    save_backbone(p.model, p.tok, tmp_path / "ckpt")
    again = PlayerPair(ENV, LanguagePolicyConfig(backbone=BackboneConfig(path=str(tmp_path / "ckpt"))))
    _, fobs = random_obs(9, 3)
    r = prompts.follower_prompts(fobs, LIM, score_agents.pcfg)
    cls = torch.tensor(r.state_class)
    with torch.no_grad():
        a = p.log_pi(*p.encode(r.texts), cls)
        b = again.follower.log_pi(*again.follower.encode(r.texts), cls)
    assert torch.equal(a, b)


def test_critic_values_do_not_depend_on_padding_or_batch(score_agents):
    p = score_agents.follower
    lobs, fobs = random_obs(1, 3)
    sp = prompts.state_prompts(lobs, fobs, LIM, with_dcm=True)
    with torch.no_grad():
        batch = p.critic(p.encode_states(sp, ENV.n_slots))
        assert batch.shape == lobs.active.shape and bool((batch[~lobs.active] == 0).all())
        for e in range(3):
            alone = prompts.StatePrompts([sp.texts[e]], [sp.spans[e]])
            torch.testing.assert_close(p.critic(p.encode_states(alone, ENV.n_slots))[0], batch[e], atol=1e-5, rtol=0)


def test_follower_critic_value_depends_on_own_segment(score_agents):
    lobs, fobs = random_obs(12, 2)
    st_ = score_agents.follower.encode_states(prompts.state_prompts(lobs, fobs, LIM, with_dcm=True), ENV.n_slots)
    assert bool((st_.seg[~st_.mask] == -1).all())
    for e in range(2):
        assert set(st_.seg[e][st_.seg[e] >= 0].unique().tolist()) == set(lobs.active[e].nonzero().flatten().tolist())


# ------------------------------------------------------------------ fusion (Eq. 11)
def test_consensus_fusion_matches_eq_11_by_hand():
    probs = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    group = torch.tensor([0, 0, 1])
    eps = 0.7
    avg = probs[:2].mean(0)
    kl = [(probs[i][probs[i] > 0] * (probs[i][probs[i] > 0] / avg[probs[i] > 0]).log()).sum() for i in range(2)]
    w = torch.exp(-eps * torch.stack(kl))
    want = (w[:, None] * probs[:2]).sum(0) / w.sum()
    got = fusion.consensus_fusion(probs, group, eps)
    torch.testing.assert_close(got[0], want)
    torch.testing.assert_close(got[1], want)
    torch.testing.assert_close(got[2], probs[2])  # a group of one is unchanged
    r = fusion.restrict(got, torch.tensor([[True, False, True]] * 3))
    assert bool((r[:, 1] == 0).all()) and torch.allclose(r.sum(-1), torch.ones(3))


def test_fusion_policy_stays_valid(family):
    ag = agents(family, fusion_eps=1.0)
    _, fobs = random_obs(13, 3)
    _check_valid(ag.act_followers(fobs), fobs)


def test_fusion_needs_candidate_scoring():
    with pytest.raises(ConfigError, match="fusion_eps"):
        LanguagePolicyConfig(decoding="trie", fusion_eps=1.0)
    with pytest.raises(ConfigError, match="decoding"):
        LanguagePolicyConfig(decoding="beam")


def test_deduplicated_acting_equals_acting_row_by_row(score_agents):
    """Acting scores each distinct prompt once (deduplication, and the score memo keyed by token
    ids); the result equals scoring every row, and is an ordinary tensor (no inference tensor)
    that autograd can use later."""
    lobs, fobs = random_obs(14, 2)
    for f in ("active", "buffer", "prev_ucm", "prev_access", "dcm"):
        getattr(fobs, f)[1] = getattr(fobs, f)[0]  # episode 1 repeats episode 0: duplicate prompts
    p = score_agents.follower
    r = prompts.follower_prompts(fobs, LIM, score_agents.pcfg)
    assert len(set(r.texts)) < len(r.texts)
    ids, mask, cls = rendered_inputs(p, r)
    runs = []
    for dedup in (True, False):
        p.scorer.dedup = dedup
        score_agents.reseed(5)
        runs.append(score_agents.act_followers(fobs))
        with torch.no_grad():
            s = p.log_pi(ids, mask, cls)
        assert not s.is_inference()
        runs.append(s)
    p.scorer.dedup = True
    a, sa, b, sb = runs
    assert all(torch.equal(x, y) for x, y in zip(a.actions, b.actions, strict=True))
    torch.testing.assert_close(a.logp, b.logp, atol=1e-5, rtol=0)  # batch shapes differ: float32 rounding
    torch.testing.assert_close(sa, sb, atol=1e-5, rtol=0)
    (sa.exp() * p.log_pi(ids, mask, cls)).nan_to_num(0.0, 0.0, 0.0).sum().backward()
    p.zero_grad(set_to_none=True)
