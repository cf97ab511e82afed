"""The attention logit scale (mfsg.language.attention_scale): the log_n factor counts each query's
visible keys alike in NumPy and torch, changes the model, survives save/load, runs through the
key-value cache, and bad settings name the field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mfsg.config import ConfigError
from mfsg.language.attention_scale import IMPLEMENTATION, AttentionScale
from mfsg.language.backbones import BackboneConfig, build_backbone, save_backbone
from mfsg.learn.language_players import LanguagePlayersConfig

LOG_N = BackboneConfig(seed=3, attention_scale="log_n", log_n_ref=16)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 12), pad=st.integers(0, 5), ref=st.integers(2, 100))
def test_factor_is_log_visible_keys_over_log_ref(rows, pad, ref):
    """A causal bias with ``pad`` masked keys after each row's own: row i sees i + 1 keys."""
    keys = rows + pad
    bias = torch.full((rows, keys), -math.inf)
    for i in range(rows):
        bias[i, : i + 1] = 0.0
    scale = AttentionScale("log_n", ref)
    want = torch.log(torch.arange(1, rows + 1, dtype=torch.float64)) / math.log(ref)
    torch.testing.assert_close(scale.torch_factor(bias)[:, 0].double(), want, atol=1e-6, rtol=0)
    np.testing.assert_allclose(scale.numpy_factor(bias.numpy(), np.float64)[:, 0], want.numpy(), atol=1e-12)
    hf_mask = bias.masked_fill(bias == -math.inf, torch.finfo(torch.float32).min)  # Hugging Face's eager mask
    torch.testing.assert_close(scale.torch_factor(hf_mask), scale.torch_factor(bias))


def test_standard_has_no_factor():
    bias = torch.zeros(3, 3)
    assert AttentionScale().torch_factor(bias) is None
    assert AttentionScale().numpy_factor(bias.numpy(), np.float32) is None


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_log_n_changes_the_model_and_equals_its_manual_attention():
    """The same weights under the standard scale give other logits; the log_n model's first layer
    equals attention computed by hand with logits times log(i + 1) / log(ref)."""
    model, tok = build_backbone(LOG_N)
    assert model.config._attn_implementation == IMPLEMENTATION
    std, _ = build_backbone(BackboneConfig(seed=3))
    ids = torch.tensor([tok("buf 1 ucm 0 acc IDLE dcm 2 <Role> UE 1 <Target> send own data").input_ids])
    assert not torch.allclose(_logits(model, ids), _logits(std, ids), atol=1e-3)

    body, L = model.base_model, ids.shape[1]
    blk = body.h[0]
    x = body.wte(ids) + body.wpe(torch.arange(L))[None]
    q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(model.config.n_embd, dim=-1)
    H, dh = model.config.n_head, model.config.n_embd // model.config.n_head
    q, k, v = (t.view(1, L, H, dh).transpose(1, 2) for t in (q, k, v))
    f = torch.log(torch.arange(1, L + 1, dtype=torch.float32)) / math.log(16)
    s = (q @ k.transpose(-1, -2)) * dh**-0.5 * f[:, None]
    s = s.masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), -math.inf)
    want = blk.attn.c_proj((s.softmax(-1) @ v).transpose(1, 2).reshape(1, L, -1))
    with torch.no_grad():
        out = body(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    h1 = x + want  # the hidden state after block 0: x + attention, then + MLP(LN(.))
    h1 = h1 + blk.mlp(blk.ln_2(h1))
    torch.testing.assert_close(out.hidden_states[1], h1.detach(), atol=1e-5, rtol=0)


def test_incremental_decoding_with_the_cache_equals_one_forward():
    """Generation's key-value cache path counts the visible keys as the full forward does."""
    model, tok = build_backbone(LOG_N)
    ids = torch.tensor([tok("buf 1 ucm 0 acc IDLE dcm 2 <Role> UE 1 <Target> send own data <Action> TX RBG 1").input_ids])
    full = _logits(model, ids)
    cut = ids.shape[1] - 4
    with torch.no_grad():
        out = model(input_ids=ids[:, :cut], attention_mask=torch.ones(1, cut, dtype=torch.long), use_cache=True)
        past, steps = out.cache, [out.logits]
        for j in range(cut, ids.shape[1]):
            out = model(input_ids=ids[:, j : j + 1], attention_mask=torch.ones(1, j + 1, dtype=torch.long),
                        cache=past, use_cache=True)
            past = out.cache
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_scale_survives_save_and_load_and_must_be_named(tmp_path):
    model, tok = build_backbone(LOG_N)
    save_backbone(model, tok, tmp_path / "lm")
    back, _ = build_backbone(BackboneConfig(path=str(tmp_path / "lm"), attention_scale="log_n", log_n_ref=16))
    assert AttentionScale.of(back) == AttentionScale("log_n", 16)
    assert back.config._attn_implementation == IMPLEMENTATION
    ids = torch.tensor([tok("RBG 1 idle RBG 2 UE 1 UE 1 ucm 1 dcm 2 <Role> BS for UE 1").input_ids])
    torch.testing.assert_close(_logits(back, ids), _logits(model, ids))
    with pytest.raises(ConfigError, match="backbone.attention_scale='standard'.*allowed 'log_n'"):
        build_backbone(BackboneConfig(path=str(tmp_path / "lm")))
    with pytest.raises(ConfigError, match="log_n_ref=64.*allowed 'log_n' \\(log_n_ref=16\\)"):
        build_backbone(BackboneConfig(path=str(tmp_path / "lm"), attention_scale="log_n"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attention_scale": "sqrt"}, "backbone.attention_scale='sqrt' is invalid: allowed one of standard, log_n"),
        ({"attention_scale": "log_n", "log_n_ref": 1}, "backbone.log_n_ref=1 is invalid: allowed an integer >= 2"),
        ({"attention_scale": "log_n", "family": "t5"}, "family='t5': allowed 'standard'"),
        ({"attention_scale": "log_n", "attention": "sdpa"}, "backbone.attention='sdpa' is invalid with"),
    ],
)
def test_bad_settings_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BackboneConfig(**kwargs)


def test_players_config_names_the_scale_and_its_checkpoint():
    with pytest.raises(ConfigError, match="policy.language.attention_scale='x' is invalid: allowed one of"):
        LanguagePlayersConfig(attention_scale="x")
    cfg = LanguagePlayersConfig(positions="ue_set", attention_scale="log_n", checkpoint="")
    try:
        path = cfg.policy_config().backbone.path
    except ConfigError as err:  # no committed checkpoint in this clone
        assert "lm-gpt2-ue_set-log_n" in str(err)
    else:
        assert path.endswith("lm-gpt2-ue_set-log_n")
