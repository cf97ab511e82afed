"""Position ids of prompts (model §5: the BS prompt lists every active UE, so it grows with N).

A reconstructed choice (``BackboneConfig.positions``), one rule for every forward pass (the
candidate scorers, generation, the critics, pretraining):

- ``absolute``: token ``i`` has position ``i`` (GPT-2 as published).
- ``ue_set``: the list of UE segments is read as a *set*. Every segment (``UE n ucm u dcm d`` in
  a BS prompt, ``UE n buf b ...`` in a state prompt) restarts at the position where the first
  segment starts, and the text after the list (the SIE part, the action) starts ``width``
  positions after it. A prompt's positions then do not depend on N: with N = 7 or 8 UEs every
  position id is one that training at N ≤ 6 used, and the action is always read at the same
  distance from the observation (learned absolute embeddings do not extrapolate to unseen
  lengths). Prompts without a UE list (the UEs' own prompts) keep absolute positions.

A segment opens at the word ``UE`` whose label (digits) is followed by a segment field word
(:data:`mfsg.language.prompts.SEGMENT_FIELDS`); the list ends at the first SIE tag after it. The
rule needs the protocol tokenizer (word-level, digits one token each) and a model that takes
position ids (GPT-2); it is stored in the model's ``config.json`` (``mfsg_positions``), so a
saved checkpoint carries the rule its weights were trained with. Always pass ``attention_mask``
with these position ids: without one, ``transformers`` reads a position reset as the boundary of
packed sequences and masks attention across it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from mfsg.config import ConfigError
from mfsg.language import prompts
from mfsg.language.tokenizer import DIGITS, WordEncoder

SCHEMES = ("absolute", "ue_set")
CONFIG_KEY = "mfsg_positions"
_DIGIT, _FIELD, _STOP, _OPENER = 1, 2, 4, 8  # token class bits of the ue_set rule


@dataclass(frozen=True)
class PositionRule:
    """``scheme`` (:data:`SCHEMES`); for ``ue_set``: ``width`` positions per UE segment and the token
    ids of the segment opener, of the fields that may follow its label, of digits and of the tags
    that end the list."""

    scheme: str = "absolute"
    width: int = 0
    opener: int = -1
    fields: tuple[int, ...] = ()
    digits: tuple[int, ...] = ()
    stops: tuple[int, ...] = ()

    @property
    def absolute(self) -> bool:
        return self.scheme == "absolute"

    @classmethod
    def for_tokenizer(cls, scheme: str, width: int, tok) -> PositionRule:
        """The rule ``scheme`` over the protocol tokenizer ``tok``."""
        if scheme not in SCHEMES:
            raise ConfigError(f"backbone.positions={scheme!r} is invalid: allowed one of {', '.join(SCHEMES)}")
        if scheme == "absolute":
            return cls()
        if not WordEncoder.applies(tok):
            raise ConfigError(f"backbone.positions={scheme!r} is invalid with this tokenizer: allowed 'absolute' "
                              "unless the backbone uses the protocol tokenizer")
        v = tok.get_vocab()
        return cls(scheme, width, v[prompts.SEGMENT_OPENER], tuple(v[w] for w in prompts.SEGMENT_FIELDS),
                   tuple(v[d] for d in DIGITS), tuple(v[t] for t in prompts.TAGS))

    @classmethod
    def of(cls, model) -> PositionRule:
        """The rule stored in ``model.config`` (absolute when none is)."""
        stored = getattr(model.config, CONFIG_KEY, None)
        if not stored:
            return cls()
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})

    def attach(self, model) -> None:
        """Store the rule in ``model.config`` (saved with ``save_pretrained``); absolute is the
        default and leaves the config as it is."""
        if not self.absolute:
            setattr(model.config, CONFIG_KEY, asdict(self))

    # ------------------------------------------------------------------ positions
    def numpy(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """[B, L] position ids of right-padded token rows ``ids`` [B, L] (``mask`` real tokens)."""
        B, L = ids.shape
        i = np.arange(L)
        if self.absolute or L == 0:
            return np.broadcast_to(i, (B, L)).copy()
        mask = mask.astype(bool, copy=False)
        kind = self._kinds()[np.minimum(ids, len(self._kinds()) - 1)] * mask  # token classes, 0 on padding
        # index of the first non-digit token strictly after each token (L if none)
        nondigit = np.where(kind & _DIGIT, L, i)
        nxt = np.full((B, L), L)
        nxt[:, :-1] = np.minimum.accumulate(nondigit[:, ::-1], axis=1)[:, ::-1][:, 1:]
        after = np.take_along_axis(kind, np.minimum(nxt, L - 1), axis=1)
        opens = (kind & _OPENER).astype(bool) & (nxt < L) & (after & _FIELD).astype(bool)
        if not opens.any():  # no UE list in any row (e.g. the UEs' own prompts)
            return np.broadcast_to(i, (B, L)).copy()
        first = np.where(opens.any(1), opens.argmax(1), L)[:, None]
        stops = (kind & _STOP).astype(bool) & (i > first)
        end = np.where(stops.any(1), stops.argmax(1), L)[:, None]
        last_open = np.maximum.accumulate(np.where(opens, i, -1), axis=1)
        inside = (i >= first) & (i < end)
        offset = i - last_open
        too_long = inside & mask & (offset >= self.width)
        if too_long.any():
            raise ValueError(f"a UE segment of {int(offset[too_long].max()) + 1} tokens does not fit "
                             f"backbone.segment_width={self.width}: raise segment_width")
        pos = np.where(inside, first + offset, i)
        pos = np.where(i >= end, first + self.width + (i - end), pos)
        return np.where(mask, pos, 0)

    def _kinds(self) -> np.ndarray:
        """Token id -> class bits (:data:`_DIGIT`, ...); ids past the table map to its last entry, 0."""
        table = self.__dict__.get("_table")
        if table is None:
            table = np.zeros(max(self.opener, *self.fields, *self.digits, *self.stops) + 2, dtype=np.int8)
            table[list(self.digits)] |= _DIGIT
            table[list(self.fields)] |= _FIELD
            table[list(self.stops)] |= _STOP
            table[self.opener] |= _OPENER
            object.__setattr__(self, "_table", table)  # a cache on the frozen rule, not a field
        return table

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`numpy` on tensors."""
        if self.absolute:
            return torch.arange(ids.shape[1]).expand_as(ids)
        return torch.from_numpy(self.numpy(ids.detach().numpy(), mask.detach().numpy()))

    @staticmethod
    def next_position(pos, lengths):
        """[B] position id of the token after each row's last real token (where candidates start);
        tensors or NumPy arrays."""
        return pos[range(len(pos)), lengths - 1] + 1
