"""Position-id rules (mfsg.language.positions): ``ue_set`` makes a prompt's positions independent
of the number of UEs it lists (model §5), travels with the checkpoint, and is validated."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lang_helpers import PlayerPair, random_obs
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.language import grammar, prompts
from mfsg.language.backbones import BackboneConfig, build_backbone, save_backbone
from mfsg.language.policy import LanguagePolicyConfig, StateBatch
from mfsg.language.positions import PositionRule
from mfsg.language.tokenizer import build_tokenizer

TOK = build_tokenizer()
RULE = PositionRule.for_tokenizer("ue_set", 16, TOK)
ENV8 = EnvConfig(churn=ChurnConfig(kind="fixed", n=8))
LIM = grammar.Limits.from_env(ENV8)


def _positions(rule: PositionRule, text: str) -> tuple[list[str], list[int]]:
    ids = torch.tensor([TOK(text, add_special_tokens=False).input_ids])
    return TOK.convert_ids_to_tokens(ids[0]), rule(ids, torch.ones_like(ids, dtype=torch.bool))[0].tolist()


def _with_n_active(lobs, n: int):
    """``lobs`` with only its first ``n`` active slots kept (same outcomes, same UE identities)."""
    keep = lobs.active & (lobs.active.long().cumsum(1) <= n)
    return dataclasses.replace(lobs, active=keep)


def test_absolute_rule_is_the_token_index():
    tokens, pos = _positions(PositionRule(), "RBG 1 idle RBG 2 idle UE 1 ucm 0 dcm 0 <Role> BS for UE 1 <Action>")
    assert pos == list(range(len(tokens)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), no_sie=st.booleans())
def test_bs_prompt_positions_do_not_depend_on_the_number_of_ues(seed, no_sie):
    """Every UE segment restarts at the same position and the SIE part (where the action is read)
    has the same positions whether the BS prompt lists 1 or 8 UEs."""
    lobs, _ = random_obs(seed, 1, ENV8)
    cfg = prompts.PromptConfig(no_sie=no_sie)
    tails = set()
    for n in range(1, int(lobs.active.sum()) + 1):
        text = prompts.leader_prompts(_with_n_active(lobs, n), LIM, cfg).texts[0]
        tokens, pos = _positions(RULE, text)
        opens = [i for i, t in enumerate(tokens) if t == "UE" and tokens[i + 2] == "ucm"]
        assert len(opens) == n
        seg = [pos[i : i + 6] for i in opens]  # UE n ucm u dcm d
        assert all(s == list(range(opens[0], opens[0] + 6)) for s in seg)
        tag = tokens.index(prompts.CANDIDATES if no_sie else prompts.ROLE)
        tails.add(tuple(pos[tag:]))
        assert pos[:tag] == [*range(opens[0]), *[p for s in seg for p in s]]
    assert len(tails) == 1


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_state_segments_restart_and_ue_prompts_stay_absolute(seed):
    lobs, fobs = random_obs(seed, 1, ENV8)
    tokens, pos = _positions(RULE, prompts.state_prompts(lobs, fobs, LIM, with_dcm=True).texts[0])
    opens = [i for i, t in enumerate(tokens) if t == "UE" and tokens[i + 2] == "buf"]
    assert opens and all(pos[i] == pos[opens[0]] for i in opens)
    for text in prompts.follower_prompts(fobs, LIM, prompts.PromptConfig()).texts:
        tokens, pos = _positions(RULE, text)
        assert pos == list(range(len(tokens)))


def test_padding_and_batches_give_each_row_its_own_positions():
    texts = ["RBG 1 idle UE 1 ucm 0 dcm 0 <Role> BS for UE 1 <Action>",
             "RBG 1 idle UE 1 ucm 0 dcm 0 UE 2 ucm 1 dcm 3 <Role> BS for UE 2 <Action>"]
    enc = TOK(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    got = RULE(enc.input_ids, enc.attention_mask.bool())
    for row, text in enumerate(texts):
        _, alone = _positions(RULE, text)
        assert got[row, : len(alone)].tolist() == alone
        assert got[row, len(alone):].eq(0).all()
    lengths = enc.attention_mask.sum(1)
    assert RULE.next_position(got, lengths).tolist() == [alone[-1] + 1 for alone in (_positions(RULE, t)[1] for t in texts)]


def test_a_segment_longer_than_the_width_is_an_error():
    narrow = dataclasses.replace(RULE, width=4)
    with pytest.raises(ValueError, match="segment_width=4"):
        _positions(narrow, "RBG 1 idle UE 1 ucm 0 dcm 0 <Role> BS for UE 1 <Action>")


def test_rule_round_trips_through_save_pretrained(tmp_path):
    model, tok = build_backbone(BackboneConfig(positions="ue_set", segment_width=12))
    assert PositionRule.of(model) == dataclasses.replace(RULE, width=12)
    save_backbone(model, tok, tmp_path / "m")
    loaded, _ = build_backbone(BackboneConfig(path=str(tmp_path / "m"), positions="ue_set"))
    assert PositionRule.of(loaded) == PositionRule.of(model)
    with pytest.raises(ConfigError, match="backbone.positions='absolute' is invalid for the checkpoint"):
        build_backbone(BackboneConfig(path=str(tmp_path / "m")))
    plain, ptok = build_backbone(BackboneConfig())
    save_backbone(plain, ptok, tmp_path / "p")
    assert PositionRule.of(build_backbone(BackboneConfig(path=str(tmp_path / "p")))[0]).absolute
    with pytest.raises(ConfigError, match="allowed 'absolute', the rule its weights were trained with"):
        build_backbone(BackboneConfig(path=str(tmp_path / "p"), positions="ue_set"))


def test_config_values_are_validated():
    with pytest.raises(ConfigError, match="backbone.positions='relative' is invalid: allowed one of absolute, ue_set"):
        BackboneConfig(positions="relative")
    with pytest.raises(ConfigError, match="backbone.positions='ue_set' is invalid with family='t5'"):
        BackboneConfig(family="t5", positions="ue_set")
    with pytest.raises(ConfigError, match="backbone.segment_width"):
        BackboneConfig(positions="ue_set", segment_width=0)
    other = Tokenizer(models.WordLevel(vocab={"<unk>": 0, "UE": 1}, unk_token="<unk>"))
    other.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    with pytest.raises(ConfigError, match="protocol tokenizer"):
        PositionRule.for_tokenizer("ue_set", 16, PreTrainedTokenizerFast(tokenizer_object=other))


def test_critic_reads_the_state_prompt_with_the_models_rule():
    env = EnvConfig(churn=ChurnConfig(kind="fixed", n=4))
    ag = PlayerPair(env, LanguagePolicyConfig(backbone=BackboneConfig(positions="ue_set")))
    lobs, fobs = random_obs(3, 2, env)
    p = ag.follower
    st_ = p.encode_states(prompts.state_prompts(lobs, fobs, p.lim, with_dcm=True), env.n_slots)
    pos = RULE(st_.ids, st_.mask)
    assert not np.array_equal(pos.numpy(), np.broadcast_to(np.arange(pos.shape[1]), pos.shape))
    with torch.no_grad():
        h = p.critic.trunk(input_ids=st_.ids, attention_mask=st_.mask, position_ids=pos).last_hidden_state
        absolute = p.critic.trunk(input_ids=st_.ids, attention_mask=st_.mask).last_hidden_state
        m = st_.mask.to(h.dtype)[..., None]
        pooled = (h * m).sum(1) / m.sum(1)
        onehot = (st_.seg[..., None] == torch.arange(env.n_slots)).to(h.dtype)
        seg = torch.einsum("bls,bld->bsd", onehot, h) / onehot.sum(1)[..., None].clamp(min=1)
        ref = p.critic.head(torch.cat([seg, pooled[:, None].expand_as(seg)], -1)).squeeze(-1) * st_.active
        torch.testing.assert_close(p.critic(StateBatch(st_.ids, st_.mask, st_.seg, st_.active)), ref)
    assert not torch.allclose(h, absolute)
