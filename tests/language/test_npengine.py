"""The NumPy inference engine (mfsg.language.npengine) and the score memo of acting (model §5):
equal to naive Hugging Face scoring, same actions as the torch engine, never stale weights,
validated config."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lang_helpers import ENV, PlayerPair, agents, random_obs, rendered_inputs

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.env import BatchedEnv
from mfsg.language import npengine, prompts
from mfsg.language.attention_scale import AttentionScale
from mfsg.language.backbones import BackboneConfig, build_backbone
from mfsg.language.policy import LanguagePolicyConfig
from mfsg.language.positions import SCHEMES
from mfsg.language.scoring import HFScorer, make_scorer

TOL = 1e-5  # float32 engine vs naive Hugging Face scoring
RTOL = 1e-6  # after large weight changes scores reach ~100, where float32 rounding is ~1e-5
EXACT_TOL = 1e-10  # float64: the same algorithm up to summation order
N_MAX = 8


def _env(n: int) -> EnvConfig:
    return EnvConfig(churn=ChurnConfig(kind="fixed", n=n))


_AGENTS: dict[tuple[int, str, str], PlayerPair] = {}
# (position rule, attention scale) pairs the engine is checked under
VARIANTS = [(p, "standard") for p in SCHEMES] + [("ue_set", "log_n")]


def _agents_for(n: int, positions: str = "absolute", scale: str = "standard") -> PlayerPair:
    """PlayerPair (random weights) per number of UEs, position rule and attention scale, built once per
    test session (``log_n`` with a small reference length, so the factor departs from 1 widely)."""
    if (n, positions, scale) not in _AGENTS:
        backbone = BackboneConfig(positions=positions, attention_scale=scale, log_n_ref=16)
        _AGENTS[n, positions, scale] = PlayerPair(_env(n), LanguagePolicyConfig(backbone=backbone, score_cache=0))
    return _AGENTS[n, positions, scale]


def _prompts(ag: PlayerPair, seed: int, n_env: int):
    """(player, ids, mask) of leader and follower prompts of random observations."""
    lobs, fobs = random_obs(seed, n_env, ag.env_cfg)
    out = []
    for p, r in (
        (ag.leader, prompts.leader_prompts(lobs, ag.leader.lim, ag.pcfg)),
        (ag.follower, prompts.follower_prompts(fobs, ag.follower.lim, ag.pcfg)),
    ):
        ids, mask = p.encode(r.texts, r.pieces)
        out.append((p, ids, mask))
    return out


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, N_MAX), n_env=st.integers(1, 3),
       variant=st.sampled_from(VARIANTS))
def test_scores_equal_naive_hf_scoring(seed, n, n_env, variant):
    ag = _agents_for(n, *variant)
    for p, ids, mask in _prompts(ag, seed, n_env):
        naive = make_scorer(p.model, "hf", reuse=False, dedup=False)
        ne = npengine.NumpyGPT2(p.model)
        with torch.no_grad():
            ref = naive.score(ids, mask, p.cands)
            got = ne.scores(ids, mask, p.cands)
            full = ne.logprobs(ids, mask, p.cands)
            first = ne.prompt_logprobs(ids, mask)
        torch.testing.assert_close(got, ref, atol=TOL, rtol=0)
        table = naive.logprobs(ids, mask, p.cands) * p.cands.mask[None, :, :, None]
        torch.testing.assert_close(full * p.cands.mask[None, :, :, None], table, atol=TOL, rtol=0)
        torch.testing.assert_close(first, table[:, 0, 0], atol=TOL, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float64_scores_equal_naive_scoring_exactly(variant):
    """In float64 the engine is the naive computation up to summation order (folded LayerNorms
    and attention scaling included)."""
    ag = _agents_for(N_MAX, *variant)
    for p, ids, mask in _prompts(ag, 3, 2):
        model = copy.deepcopy(p.model).double()
        with torch.no_grad():
            ref = make_scorer(model, "hf", reuse=False).score(ids, mask, p.cands)
            got = npengine.NumpyGPT2(model).scores(ids, mask, p.cands)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, ref, atol=EXACT_TOL, rtol=0)


def test_scorer_uses_numpy_only_without_grad():
    model, tok = build_backbone(BackboneConfig(seed=4))
    p = _agents_for(2).follower
    ids, mask = p.encode(["buf 1 ucm 0 acc IDLE dcm 2 <Role> UE 1", "buf 0 ucm 1 acc IDLE dcm 0 <Role> UE 2"])
    sc = make_scorer(model, "numpy")
    assert sc.engine == "numpy"
    s = sc.score(ids, mask, p.cands)  # grad on: the torch engine, differentiable
    assert s.requires_grad and sc.runs_torch()
    with torch.no_grad():
        assert not sc.runs_torch()
        torch.testing.assert_close(sc.score(ids, mask, p.cands), s.detach(), atol=TOL, rtol=0)
        model.train()  # dropout rates are 0: still exact, the engine applies
        assert not sc.runs_torch()
    dropout = make_scorer(build_backbone(BackboneConfig(seed=4, dropout=0.1))[0].train(), "numpy")
    with torch.no_grad():
        assert dropout.runs_torch()  # active dropout: the torch engine applies it


@pytest.mark.parametrize("greedy", [True, False])
def test_actions_equal_the_torch_engine_under_the_same_seed(greedy):
    """Episodes driven by the numpy engine (memo on, the default) and by the torch engine (memo
    off) take the same actions with the same log-probabilities."""
    runs = {}
    for engine, cache in (("fast", 0), ("numpy", LanguagePolicyConfig.score_cache)):
        ag = PlayerPair(_env(5), LanguagePolicyConfig(engine=engine, score_cache=cache))
        env = BatchedEnv(ag.env_cfg, 3, seed=2)
        out = []
        with torch.no_grad():
            for _ in range(12):
                if env.done:
                    env.reset()
                lobs = env.begin_tti()
                a = ag.act_leader(lobs, greedy=greedy)
                b = ag.act_followers(env.deliver(a.actions[0]), greedy=greedy)
                env.end_tti(*b.actions)
                out.append((a, b))
        runs[engine] = out
    for (a0, b0), (a1, b1) in zip(runs["fast"], runs["numpy"], strict=True):
        for x, y in ((a0, a1), (b0, b1)):
            assert all(torch.equal(u, v) for u, v in zip(x.actions, y.actions, strict=True))
            torch.testing.assert_close(x.logp, y.logp, atol=TOL, rtol=0)
            torch.testing.assert_close(x.entropy, y.entropy, atol=TOL, rtol=0)


def _fresh_scores(p, ids, mask):
    with torch.no_grad():
        return make_scorer(p.model, "hf", reuse=False).score(ids, mask, p.cands)


def test_never_acts_with_stale_weights():
    """The engine's derived weights and the acting memo follow the parameter version
    (mfsg.language.versions): an optimizer step and ``load_state_dict`` bump it themselves; other
    writes (in place under no_grad, a replaced module, a dtype change) call ``parameters_changed``."""
    ag = agents("gpt2", engine="numpy")
    p = ag.follower
    _, fobs = random_obs(9, 3)
    r = prompts.follower_prompts(fobs, p.lim, ag.pcfg)
    ids, mask, cls = rendered_inputs(p, r)

    def acted_logp():
        ag.reseed(0)
        return ag.act_followers(fobs, greedy=True).logp[fobs.active]  # rows in prompt order

    def check():
        acted = acted_logp()
        with torch.no_grad():
            torch.testing.assert_close(p.scorer.numpy.scores(ids, mask, p.cands), _fresh_scores(p, ids, mask),
                                       atol=TOL, rtol=RTOL)
        truth = p.log_pi(ids, mask, cls)  # the torch engine with grad: the ground truth
        torch.testing.assert_close(acted, truth.max(-1).values.detach(), atol=TOL, rtol=RTOL)
        return acted

    before = check()
    assert torch.equal(acted_logp(), before)  # unchanged weights: memo hits, same result
    opt = torch.optim.Adam(p.actor_parameters(), lr=0.05)
    (-p.log_pi(ids, mask, cls).max(-1).values.sum()).backward()
    opt.step()
    after_step = check()
    assert not torch.allclose(after_step, before)
    with torch.no_grad():
        p.model.transformer.h[0].ln_1.weight.mul_(1.7)  # folded into the derived weights
    p.parameters_changed()
    assert not torch.allclose(check(), after_step)
    other = build_backbone(BackboneConfig(seed=11))[0]
    p.model.load_state_dict(other.state_dict())
    check()
    head = torch.nn.Linear(p.model.config.n_embd, p.model.config.vocab_size, bias=True)
    torch.nn.init.normal_(head.weight)
    p.model.lm_head = head  # a replaced module (untied, with a bias)
    p.parameters_changed()
    check()
    p.model.double()  # new storages
    p.parameters_changed()
    with torch.no_grad():
        got = p.scorer.numpy.scores(ids, mask, p.cands)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, _fresh_scores(p, ids, mask), atol=EXACT_TOL, rtol=0)


def test_load_state_dict_of_a_holding_module_bumps_the_version():
    """Loading a checkpoint into the player (the module holding the policy's model) counts as a change."""
    ag = agents("gpt2", engine="numpy")
    player, p = ag.players[1], ag.follower
    _, fobs = random_obs(10, 2)
    ids, mask, _ = rendered_inputs(p, prompts.follower_prompts(fobs, p.lim, ag.pcfg))
    state = {k: v.clone() for k, v in player.state_dict().items()}
    with torch.no_grad():
        before = p.scorer.numpy.scores(ids, mask, p.cands)
        p.model.transformer.h[0].ln_1.weight.data.mul_(2.0)  # folded into derived weights: stale until told
        player.load_state_dict(state)
        torch.testing.assert_close(p.scorer.numpy.scores(ids, mask, p.cands), before, atol=0, rtol=0)
        p.model.transformer.h[0].ln_1.weight.data.mul_(2.0)
        player.parameters_changed()
        torch.testing.assert_close(p.scorer.numpy.scores(ids, mask, p.cands), _fresh_scores(p, ids, mask),
                                   atol=TOL, rtol=0)


def test_memo_is_bounded_and_off_with_grad_or_other_decodings():
    """A small memo (cleared when full) gives the scores of no memo at all."""
    small, off = agents("gpt2", score_cache=4), agents("gpt2", score_cache=0)
    with torch.no_grad():
        for seed in range(6):
            _, fobs = random_obs(seed, 2)
            small.reseed(seed)
            off.reseed(seed)
            a, b = small.act_followers(fobs), off.act_followers(fobs)
            assert all(torch.equal(u, v) for u, v in zip(a.actions, b.actions, strict=True))
            torch.testing.assert_close(a.logp, b.logp, atol=TOL, rtol=0)
            assert len(small.follower._scores_memo) <= 4
        assert small.follower._memo() is not None
        assert off.follower._memo() is None and not off.follower._scores_memo
        assert agents("gpt2", "trie").follower._memo() is None
    assert small.follower._memo() is None  # grad enabled


def test_unshifted_softmax_falls_back_on_extreme_scores():
    """_attend equals softmax attention, with its keys whole or split into a prefix shared by the
    batch entries (the first 2 keys, equal in both entries) and their own keys."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))
    k[1, :, :2], v[1, :, :2] = k[0, :, :2], v[0, :, :2]
    kt = k.swapaxes(-1, -2)
    whole = (None, None, kt, v)
    split = (np.ascontiguousarray(kt[0, :, :, :2]), v[0, :, :2], kt[..., 2:], v[:, :, 2:])
    bias = np.where(np.tril(np.ones((5, 5), dtype=bool)), 0.0, -np.inf)
    f = {"standard": 1.0, "log_n": np.log(np.arange(1, 6))[:, None] / np.log(3)}  # row i sees i + 1 keys
    for rule in (AttentionScale(), AttentionScale("log_n", 3)):
        for scale in (1.0, 400.0, -400.0):
            logits = f[rule.scheme] * (q * scale @ kt) + bias
            ref = torch.softmax(torch.from_numpy(logits), -1).numpy() @ v
            for keys in (whole, split):
                got = npengine._attend(q * scale, keys, bias, rule.numpy_factor(bias, q.dtype))
                np.testing.assert_allclose(got, ref, atol=1e-9, rtol=0)
    for x in (rng.standard_normal((2, 3, 7)), 500.0 * rng.standard_normal((2, 3, 7))):
        np.testing.assert_allclose(npengine._logsumexp(x), torch.logsumexp(torch.from_numpy(x), -1).numpy(), rtol=1e-12)


def test_config_values_are_validated_and_t5_uses_the_hf_engine():
    with pytest.raises(ConfigError, match=r"policy\.engine='jax' is invalid: allowed one of hf, fast, numpy"):
        LanguagePolicyConfig(engine="jax")
    with pytest.raises(ConfigError, match="policy.score_cache"):
        LanguagePolicyConfig(score_cache=-1)
    assert LanguagePolicyConfig().engine == "fast"
    t5, _ = build_backbone(BackboneConfig(family="t5"))
    sc = make_scorer(t5, "numpy")
    assert not npengine.supports(t5) and isinstance(sc, HFScorer) and sc.engine == "hf"
    with pytest.raises(ValueError, match="NumpyGPT2 supports GPT-2"):
        npengine.NumpyGPT2(t5)
    lobs, _ = random_obs(1, 2, ENV)
    ag = agents("t5", engine="numpy")
    assert bool(ag.act_leader(lobs).valid.all())


def test_engine_runs_blas_on_one_thread(monkeypatch):
    """The engine's small GEMMs run on one BLAS thread whatever the process setting (threaded
    OpenBLAS made a TTI several times slower); the setting is restored afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen, inner = [], npengine.NumpyGPT2._logits

    def spy(self, *args):
        seen.append(blas_threads())
        return inner(self, *args)

    monkeypatch.setattr(npengine.NumpyGPT2, "_logits", spy)
    ag = agents("gpt2", engine="numpy", score_cache=0)
    lobs, _ = random_obs(2, 2)
    with threadpool_limits(limits=2, user_api="blas"), torch.no_grad():
        before = blas_threads()
        assert before == {2}  # a BLAS library is found and really set to two threads
        ag.act_leader(lobs)
        assert blas_threads() == before
    assert seen and all(s <= {1} for s in seen)
