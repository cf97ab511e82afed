"""Backbones (model §5): a tiny T5 (seq2seq) or tiny GPT-2 (causal) built from a config over the
protocol tokenizer, or any local pretrained ``transformers`` checkpoint (``path``), whose own
tokenizer is then used. Everything works offline: no hub access is attempted.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    T5Config,
    T5ForConditionalGeneration,
)

from mfsg.config import ConfigError, check_int, check_nonneg
from mfsg.language.attention_scale import IMPLEMENTATION, AttentionScale
from mfsg.language.positions import SCHEMES, PositionRule
from mfsg.language.tokenizer import build_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FAMILIES = ("t5", "gpt2")
ATTENTION = ("eager", "sdpa")
# Measured on the 2-core CPU (mfsg bench policy): eager attention is faster for the tiny T5
# (its relative position bias makes SDPA materialize a float mask), SDPA for GPT-2.
DEFAULT_ATTENTION = {"t5": "eager", "gpt2": "sdpa"}


@dataclass(frozen=True)
class BackboneConfig:
    """A small backbone from sizes (``path`` None; T5 uses ``n_layers`` encoder + ``n_layers``
    decoder layers) or a local checkpoint folder (``path``; family and sizes then come from it).
    ``attention`` None picks the faster implementation per family (:data:`DEFAULT_ATTENTION`).

    The default family is GPT-2: measured with ``mfsg bench policy`` it scores 2–3x more
    decisions/s than the tiny T5 and has the lower one-TTI latency, and after the same
    pretraining budget its held-out action NLL is lower (0.329 vs 0.358 nats/token).

    ``positions`` (reconstructed): the position-id rule of :mod:`mfsg.language.positions`
    (``ue_set``: GPT-2 with the protocol tokenizer only), ``segment_width`` its positions per UE
    segment. A checkpoint (``path``) was trained with one rule, saved in its ``config.json``;
    ``positions`` must name that rule.

    ``attention_scale`` (reconstructed): the attention logit scale of
    :mod:`mfsg.language.attention_scale` (``log_n``: GPT-2 only, its own attention
    implementation, so ``attention`` stays None), ``log_n_ref`` its reference key count; a
    checkpoint carries its rule as it carries ``positions``."""

    family: str = "gpt2"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128
    max_positions: int = 256
    dropout: float = 0.0
    seed: int = 0
    path: str | None = None
    attention: str | None = None
    positions: str = "absolute"
    segment_width: int = 16
    attention_scale: str = "standard"
    log_n_ref: int = 64

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"backbone.family={self.family!r} is invalid: allowed one of {', '.join(FAMILIES)}")
        check_int("backbone.d_model", self.d_model, 1)
        check_int("backbone.n_layers", self.n_layers, 1)
        check_int("backbone.n_heads", self.n_heads, 1)
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"backbone.n_heads={self.n_heads!r} is invalid: allowed a divisor of d_model={self.d_model}"
            )
        check_int("backbone.d_ff", self.d_ff, 1)
        check_int("backbone.max_positions", self.max_positions, 8)
        check_nonneg("backbone.dropout", self.dropout)
        check_int("backbone.seed", self.seed, 0)
        if self.attention is not None and self.attention not in ATTENTION:
            raise ConfigError(
                f"backbone.attention={self.attention!r} is invalid: allowed None or one of {', '.join(ATTENTION)}"
            )
        if self.positions not in SCHEMES:
            raise ConfigError(
                f"backbone.positions={self.positions!r} is invalid: allowed one of {', '.join(SCHEMES)}"
            )
        if self.positions != "absolute" and self.path is None and self.family != "gpt2":
            raise ConfigError(
                f"backbone.positions={self.positions!r} is invalid with family={self.family!r}: allowed 'absolute' "
                "(T5 has relative positions, no position ids)"
            )
        check_int("backbone.segment_width", self.segment_width, 1)
        if not self.scale.standard:
            if self.path is None and self.family != "gpt2":
                raise ConfigError(f"backbone.attention_scale={self.attention_scale!r} is invalid with "
                                  f"family={self.family!r}: allowed 'standard' (log_n is implemented for GPT-2)")
            if self.attention is not None:
                raise ConfigError(f"backbone.attention={self.attention!r} is invalid with attention_scale="
                                  f"{self.attention_scale!r}: allowed None (the scale has its own implementation)")
        if self.path is not None and not (Path(self.path) / "config.json").is_file():
            raise ConfigError(
                f"backbone.path={self.path!r} is invalid: allowed a local checkpoint folder with config.json"
            )

    @property
    def scale(self) -> AttentionScale:
        """The attention scale rule (validated: names the field and the allowed values)."""
        return AttentionScale(self.attention_scale, self.log_n_ref)


def is_seq2seq(model: PreTrainedModel) -> bool:
    return bool(model.config.is_encoder_decoder)


def _from_sizes(cfg: BackboneConfig, vocab_size: int, tok) -> PreTrainedModel:
    ids = dict(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    if cfg.family == "t5":
        conf = T5Config(
            vocab_size=vocab_size,
            d_model=cfg.d_model,
            d_kv=cfg.d_model // cfg.n_heads,
            d_ff=cfg.d_ff,
            num_layers=cfg.n_layers,
            num_decoder_layers=cfg.n_layers,
            num_heads=cfg.n_heads,
            dropout_rate=cfg.dropout,
            feed_forward_proj="relu",
            decoder_start_token_id=tok.pad_token_id,
            **ids,
        )
        return T5ForConditionalGeneration(conf)
    conf = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.max_positions,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=cfg.d_ff,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        **ids,
    )
    return GPT2LMHeadModel(conf)


def build_backbone(cfg: BackboneConfig):
    """(model, tokenizer), model in eval mode. Random init is seeded by ``cfg.seed`` without
    touching the global RNG."""
    if cfg.path is not None:
        tok = AutoTokenizer.from_pretrained(cfg.path, local_files_only=True)
        conf = AutoConfig.from_pretrained(cfg.path, local_files_only=True)
        auto = AutoModelForSeq2SeqLM if conf.is_encoder_decoder else AutoModelForCausalLM
        model = auto.from_pretrained(cfg.path, local_files_only=True)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        stored = PositionRule.of(model)
        if stored.scheme != cfg.positions:
            raise ConfigError(f"backbone.positions={cfg.positions!r} is invalid for the checkpoint {cfg.path!r}: "
                              f"allowed {stored.scheme!r}, the rule its weights were trained with")
        scale = AttentionScale.of(model)
        if scale != cfg.scale:
            raise ConfigError(f"backbone.attention_scale={cfg.attention_scale!r} (log_n_ref={cfg.log_n_ref}) is "
                              f"invalid for the checkpoint {cfg.path!r}: allowed {scale.scheme!r} (log_n_ref="
                              f"{scale.ref}), the scale its weights were trained with")
    else:
        tok = build_tokenizer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = _from_sizes(cfg, len(tok), tok)
        PositionRule.for_tokenizer(cfg.positions, cfg.segment_width, tok).attach(model)
        cfg.scale.attach(model)
    family = "t5" if is_seq2seq(model) else "gpt2"
    if cfg.scale.standard:
        model.set_attn_implementation(cfg.attention or DEFAULT_ATTENTION[family])
    elif family != "gpt2":
        raise ConfigError(f"backbone.attention_scale={cfg.attention_scale!r} is invalid for the checkpoint "
                          f"{cfg.path!r} ({family}): allowed 'standard' (log_n is implemented for GPT-2)")
    else:
        model.set_attn_implementation(IMPLEMENTATION)
    return model.eval(), tok


def save_backbone(model: PreTrainedModel, tok, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def trunk_of(model: PreTrainedModel) -> torch.nn.Module:
    """A copy of the part of the backbone that reads a prompt (T5 encoder; GPT-2 transformer),
    the critic's starting point (its own parameters, see :mod:`mfsg.language.policy`)."""
    part = model.get_encoder() if is_seq2seq(model) else model.base_model
    return copy.deepcopy(part)


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
