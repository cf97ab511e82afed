"""Attention logit scale by context length (model §5; a reconstructed choice,
``BackboneConfig.attention_scale``), one rule for every forward pass (the Hugging Face model, so
pretraining, generation and the critics; the packed scorers :mod:`mfsg.language.fastlm` and
:mod:`mfsg.language.npengine`):

- ``standard``: softmax(q·kᵀ/√d) (GPT-2 as published).
- ``log_n``: each query's logits are multiplied by log(n) / log(ref), n the number of keys that
  query may attend to (itself included): Scalable-Softmax (SSMax; Nakanishi, 2025) with a fixed
  factor (SSMax's learnable per-head factor is absorbed by the query projection; ``ref`` only sets
  the length at which the factor is 1). Under the standard softmax the weight a query can put on
  a few keys fades as the number of keys grows; the BS prompt grows with N, and the default
  leader's errors at the unseen N = 8 are of that kind (:mod:`mfsg.learn.teacher_agreement`).

The visible-key count of a query row is read off its additive attention bias: entries equal to 0
are visible, masked ones are −inf (the packed scorers) or the dtype's minimum (Hugging Face's
eager mask), so the three engines count alike. The rule is stored in the model's ``config.json``
(``mfsg_attention_scale``) and runs in Hugging Face as the registered attention implementation
:data:`IMPLEMENTATION` (eager arithmetic; GPT-2 only).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from mfsg.config import ConfigError

SCALES = ("standard", "log_n")
CONFIG_KEY = "mfsg_attention_scale"
IMPLEMENTATION = "mfsg_log_n"


@dataclass(frozen=True)
class AttentionScale:
    """``scheme`` (:data:`SCALES`); ``ref``: the visible-key count at which ``log_n`` multiplies by 1."""

    scheme: str = "standard"
    ref: int = 64

    def __post_init__(self) -> None:
        if self.scheme not in SCALES:
            raise ConfigError(f"backbone.attention_scale={self.scheme!r} is invalid: allowed one of {', '.join(SCALES)}")
        if isinstance(self.ref, bool) or not isinstance(self.ref, int) or self.ref < 2:
            raise ConfigError(f"backbone.log_n_ref={self.ref!r} is invalid: allowed an integer >= 2")

    @property
    def standard(self) -> bool:
        return self.scheme == "standard"

    @classmethod
    def of(cls, model) -> AttentionScale:
        """The rule stored in ``model.config`` (standard when none is)."""
        stored = getattr(model.config, CONFIG_KEY, None)
        return cls(**stored) if stored else cls()

    def attach(self, model) -> None:
        """Store the rule in ``model.config`` (saved with ``save_pretrained``); standard leaves it as it is."""
        if not self.standard:
            setattr(model.config, CONFIG_KEY, asdict(self))

    def torch_factor(self, bias: torch.Tensor) -> torch.Tensor | None:
        """[..., rows, 1] logit factor of each query row of an additive ``bias`` [..., rows, keys]
        (None for ``standard``)."""
        if self.standard:
            return None
        n = (bias == 0).sum(-1, keepdim=True).clamp(min=1).to(bias.dtype)
        return n.log() / math.log(self.ref)

    def numpy_factor(self, bias: np.ndarray, dtype) -> np.ndarray | None:
        """:meth:`torch_factor` in NumPy, in ``dtype``."""
        if self.standard:
            return None
        return self.numpy_factor_of_counts((bias == 0).sum(-1, keepdims=True), dtype)

    def numpy_factor_of_counts(self, n: np.ndarray, dtype) -> np.ndarray:
        """log(max(n, 1)) / log(ref) of visible-key counts ``n``, in ``dtype`` (``log_n`` only)."""
        return (np.log(np.maximum(n, 1)) / math.log(self.ref)).astype(dtype)


def log_n_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """GPT-2's eager attention with each query row's logits multiplied by the model's
    :meth:`AttentionScale.torch_factor` (the Hugging Face attention function :data:`IMPLEMENTATION`)."""
    if attention_mask is None:
        raise ValueError(f"attention implementation {IMPLEMENTATION!r} needs the eager attention mask")
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    mask = attention_mask[:, :, :, : key.shape[-2]]
    w = torch.matmul(query, key.transpose(-1, -2)) * scaling
    w = w * AttentionScale.of(module).torch_factor(mask) + mask
    w = nn.functional.softmax(w, dim=-1).type(value.dtype)
    w = nn.functional.dropout(w, p=dropout, training=module.training)
    return torch.matmul(w, value).transpose(1, 2), w


AttentionInterface.register(IMPLEMENTATION, log_n_attention)
AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)
