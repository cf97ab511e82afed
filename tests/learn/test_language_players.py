"""Language players through the one player interface (model §5, §6): rollouts on the batched
environment, log-probabilities re-scored for PPO, the PPO loss, the score memo's parameter
version, and the typed ``[policy.language]`` table."""

from __future__ import annotations

import pytest
import torch

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.env import BatchedEnv
from mfsg.language.backbones import FAMILIES, BackboneConfig
from mfsg.language.policy import LanguagePolicyConfig
from mfsg.learn.config import train_config_from_dict
from mfsg.learn.language_players import LanguagePlayersConfig, language_players, make_language_players
from mfsg.learn.players import masked_log_probs, take_inputs
from mfsg.learn.ppo import PPOConfig, ppo_loss
from mfsg.learn.rollout import rollout

ENV = EnvConfig(churn=ChurnConfig(kind="per_episode", n_min=1, n_max=4), horizon=5)
TOL = 1e-5
ENGINE_TOL = 1e-4  # NumPy vs torch engine after large weight changes (float32 rounding); a stale memo is off by > 1e-3


@pytest.fixture(scope="module", params=FAMILIES)
def players(request):
    return make_language_players(ENV, {"pretrained": False, "family": request.param})


def _rescored(player, dec):
    with torch.no_grad():
        return masked_log_probs(player.scores(dec.inputs), dec.mask)


@pytest.mark.parametrize("decoding", ["score", "trie"])
def test_rollout_takes_valid_actions_whose_log_pi_rescoring_reproduces(decoding):
    leader, follower = language_players(ENV, LanguagePolicyConfig(decoding=decoding))
    ro = rollout(BatchedEnv(ENV, 3, seed=2), leader, follower, seed=4)  # the env checks validity too
    for player, dec in ((leader, ro.leader), (follower, ro.follower)):
        assert len(dec.action) > 0 and bool(dec.mask.gather(1, dec.action[:, None]).all())
        torch.testing.assert_close(_rescored(player, dec), dec.logp, atol=TOL, rtol=0)


def test_ppo_loss_at_the_rollout_policy_has_unit_ratio_and_reaches_only_its_player(players):
    leader, follower = players
    ro = rollout(BatchedEnv(ENV, 2, seed=3), leader, follower, seed=5)
    dec = ro.follower
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(len(dec.action))
    adv, ret = torch.randn(len(idx), generator=g), torch.randn(len(idx), generator=g)
    state = take_inputs(ro.follower_state, idx)
    with torch.no_grad():
        old_value = follower.value(state)
    loss, stats = ppo_loss(follower, dec, idx, adv, state, ret, old_value, PPOConfig())
    assert stats["pg_loss"] == pytest.approx(-adv.mean().item(), abs=TOL)  # π = π_old: ratio 1
    assert abs(stats["kl"]) < TOL and stats["clipfrac"] == 0.0
    loss.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in follower.policy.actor_parameters())
    assert any(p.grad is not None for p in follower.policy.critic_parameters())
    assert all(p.grad is None for p in leader.parameters())  # separate parameters
    follower.zero_grad(set_to_none=True)


def test_acting_memo_follows_optimizer_steps_and_declared_writes():
    """Acting memoizes scores while the parameter version is unchanged: an optimizer step and
    ``parameters_changed`` (after in-place writes) make acting agree with a fresh scoring."""
    leader, follower = language_players(ENV, LanguagePolicyConfig(engine="numpy"))
    ro = rollout(BatchedEnv(ENV, 2, seed=1), leader, follower, seed=1)
    dec = ro.follower

    def fresh():
        return masked_log_probs(follower.scores(dec.inputs), dec.mask).detach()  # grad on: no memo, torch engine

    torch.testing.assert_close(_rescored(follower, dec), fresh(), atol=TOL, rtol=0)
    opt = torch.optim.SGD(follower.parameters(), lr=0.5)
    logp = masked_log_probs(follower.scores(dec.inputs), dec.mask)
    logp.gather(1, dec.action[:, None]).sum().backward()
    opt.step()
    after = fresh()
    assert not torch.allclose(after, dec.logp, atol=1e-3)
    torch.testing.assert_close(_rescored(follower, dec), after, atol=ENGINE_TOL, rtol=0)
    with torch.no_grad():
        follower.policy.model.transformer.ln_f.weight.mul_(1.5)  # in place: only the declared change tells
    follower.parameters_changed()
    written = fresh()
    assert not torch.allclose(written, after, atol=1e-3)
    torch.testing.assert_close(_rescored(follower, dec), written, atol=ENGINE_TOL, rtol=0)


def test_language_table_is_typed_and_validated():
    cfg = train_config_from_dict({"policy": {"language": {"pretrained": False, "engine": "numpy", "seed": 3}}})
    lang = cfg.policy.language
    assert isinstance(lang, LanguagePlayersConfig) and lang.engine == "numpy" and lang.seed == 3
    pcfg = lang.policy_config()
    assert pcfg.engine == "numpy" and pcfg.backbone == BackboneConfig(seed=3)
    assert train_config_from_dict({}).policy.language == LanguagePlayersConfig()
    with pytest.raises(ConfigError, match=r"policy\.language\.engine='jit' is invalid: allowed one of hf, fast, numpy"):
        train_config_from_dict({"policy": {"language": {"engine": "jit"}}})
    with pytest.raises(ConfigError, match=r"policy\.language\.beam is not a known field"):
        train_config_from_dict({"policy": {"language": {"beam": 4}}})
    with pytest.raises(ConfigError, match=r"policy\.language\.positions='rope' is invalid"):
        LanguagePlayersConfig(positions="rope")
    with pytest.raises(ConfigError, match=r"policy\.language\.score_cache=-1 is invalid"):
        LanguagePlayersConfig(score_cache=-1)


def test_a_rollout_does_not_depend_on_what_was_scored_before():
    """The score memo keeps a prompt's scores as computed in an earlier batch, equal to fresh ones only up to
    rounding; a rollout starts with an empty memo, so players that just played other episodes act bit for bit
    like fresh copies (what makes a resumed run the uninterrupted one)."""
    from device_checks import small_config

    from mfsg.learn.train import make_players

    cfg = small_config("ci_language", "cpu")
    used, fresh = make_players(cfg), make_players(cfg)
    for a, b in zip(used, fresh):
        b.load_state_dict(a.state_dict())
    rollout(BatchedEnv(cfg.env, 7, seed=11), *used, seed=11)  # fills the memo in other batches
    got = rollout(BatchedEnv(cfg.env, 4, seed=3), *used, seed=3)
    want = rollout(BatchedEnv(cfg.env, 4, seed=3), *fresh, seed=3)
    for side in ("leader", "follower"):
        g, w = getattr(got, side).logp, getattr(want, side).logp
        assert torch.equal(g, w), f"{side}: max diff {(g - w).nan_to_num().abs().max().item():.3g}"
