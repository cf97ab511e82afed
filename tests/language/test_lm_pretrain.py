"""LM pretraining on protocol transcripts (model §5): transcripts, loss, checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from lang_helpers import ENV, PlayerPair

from mfsg.language import grammar
from mfsg.language.backbones import BackboneConfig
from mfsg.language.policy import LanguagePolicyConfig
from mfsg.language.pretrain import PretrainConfig, RandomProtocol, main, pretrain, transcripts
from mfsg.language.prompts import PromptConfig


def test_transcripts_are_valid_protocol_lines():
    lines = transcripts(RandomProtocol(ENV, 0), ENV.replace(horizon=4), PromptConfig(), 3, seed=1)
    lim = grammar.Limits.from_env(ENV)
    assert lines
    for prompt, action in lines:
        if action.startswith("DCM"):
            assert grammar.parse_bs(action, lim) != grammar.INVALID and "BS for UE" in prompt
        else:
            has = not prompt.startswith("buf 0 ")
            assert grammar.parse_ue(action, lim, has_dpdu=has)[0] != grammar.INVALID


@pytest.mark.parametrize("family", ["t5", "gpt2"])
def test_pretraining_lowers_the_action_loss_and_saves_a_loadable_checkpoint(family, tmp_path):
    cfg = PretrainConfig(
        backbone=BackboneConfig(family=family), env=ENV.replace(horizon=6), steps=15, batch=32, n_envs=4, rounds=1
    )
    res = pretrain(cfg, tmp_path / "ck")
    assert res["heldout_action_nll_after"] < res["heldout_action_nll_before"]
    assert json.loads((tmp_path / "ck" / "pretrain.json").read_text())["steps"] == 15
    ag = PlayerPair(ENV, LanguagePolicyConfig(backbone=BackboneConfig(path=str(tmp_path / "ck"))))
    assert ag.leader.model.config.is_encoder_decoder == (family == "t5")
    a = [p for p in ag.leader.actor_parameters()][0]
    b = [p for p in ag.follower.actor_parameters()][0]
    assert torch.equal(a, b) and a is not b  # same starting point, separate parameters


def test_pretraining_is_deterministic():
    cfg = PretrainConfig(env=ENV.replace(horizon=3), steps=3, batch=8, n_envs=2, rounds=1)
    assert pretrain(cfg)["heldout_action_nll_after"] == pretrain(cfg)["heldout_action_nll_after"]


def test_command_line_rejects_bad_values(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x"), "--steps", "-1"]) == 2
    assert "pretrain.steps=-1" in capsys.readouterr().out
