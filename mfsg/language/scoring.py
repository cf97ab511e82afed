"""Candidate log-probabilities (model §5; LLM4MAC Eq. 9): ``log P(a|s) = Σ_j log P(w_j | s, w_<j)``.

Log-probabilities are taken with ``log_softmax`` over the vocabulary, never raw logits (the
flowersteam/lamorel bug, issue #37 / PR #51: summed raw logits rank candidates wrongly).

:class:`CandidateScorer` is the interface every engine implements (same results to float
rounding); :func:`make_scorer` chooses the engine once, at construction:

- :class:`HFScorer` (``engine='hf'``, and every backbone the others do not support, e.g. T5): the
  Hugging Face forward. Seq2seq: the encoder runs once, one decoder step on the start token fills
  the cross-attention cache, which is repeated over the candidates. Causal: the prompt runs once
  and its KV cache (``DynamicCache``) is repeated over the candidates, whose position ids continue
  each prompt (the model's :class:`~mfsg.language.positions.PositionRule`).
- :class:`PackedScorer` (``engine='fast'``, GPT-2): all candidates in one packed forward over the
  HF model's own parameters (:mod:`mfsg.language.fastlm`).
- :class:`NumpyScorer` (``engine='numpy'``, GPT-2): as ``fast``, but acting and evaluation (grad
  disabled, no active dropout) run in NumPy (:mod:`mfsg.language.npengine`); with grad it is
  ``fast``. The fastest engine for one TTI's few prompts on one thread (``mfsg bench policy``).

Every engine generates token by token with the Hugging Face forward and its KV cache, and
``reuse=False`` is the naive baseline that re-runs the prompt with each candidate (benchmarks).
Identical prompts in a batch are evaluated once and scattered back (``dedup``). Everything is
differentiable: call under ``torch.no_grad()`` for rollouts, with grad for PPO.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from mfsg.language import fastlm, npengine
from mfsg.language.backbones import is_seq2seq
from mfsg.language.positions import PositionRule

ENGINES = ("hf", "fast", "numpy")


@dataclass
class Candidates:
    """Token ids of candidate action strings, each followed by eos, right-padded with pad: ``ids``
    [C, L], ``length`` [C] (tokens including eos)."""

    ids: torch.Tensor
    length: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return torch.arange(self.ids.shape[1], device=self.ids.device) < self.length[:, None]


def encode_candidates(tok, texts: list[str] | tuple[str, ...]) -> Candidates:
    seqs = [tok(t, add_special_tokens=False).input_ids + [tok.eos_token_id] for t in texts]
    return Candidates(*pad_lists(seqs, tok.pad_token_id))


def _on(cands: Candidates, device: torch.device) -> Candidates:
    """``cands`` with its tensors on ``device`` (themselves on the CPU when they are there)."""
    return cands if cands.ids.device == device else Candidates(cands.ids.to(device), cands.length.to(device))


def pad_lists(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad integer lists: (ids [B, L], lengths [B])."""
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return ids, torch.tensor([len(s) for s in seqs], dtype=torch.long)


def unique_rows(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(unique ids, their mask, inverse index) of the rows of (ids, mask)."""
    key = torch.cat([ids, mask.long()], dim=1)
    uniq, inv = torch.unique(key, dim=0, return_inverse=True)
    L = ids.shape[1]
    return uniq[:, :L], uniq[:, L:].bool(), inv


class CandidateScorer(ABC):
    """Scores a fixed candidate set from encoded prompts, and generates, for one backbone.

    Prompts are right-padded ``ids`` [P, Lp] with ``mask`` [P, Lp]; ``cands`` a :class:`Candidates`.
    Switches: ``reuse`` (False: the naive baseline, the prompt re-run with every candidate) and
    ``dedup`` (identical prompt rows evaluated once)."""

    engine: str  # the ENGINES name of the implementation

    def __init__(self, model, *, reuse: bool = True, dedup: bool = True):
        self.model, self.reuse, self.dedup = model, reuse, dedup

    def score(self, ids: torch.Tensor, mask: torch.Tensor, cands: Candidates, *, dedup: bool | None = None) -> torch.Tensor:
        """[P, C] Σ_j log P(w_j | s, w_<j) (LLM4MAC Eq. 9, in log space). ``dedup`` None follows
        the scorer's switch; False when the caller already passes unique rows."""
        return _per_unique(self._score, ids, mask, cands, self.dedup if dedup is None else dedup)

    def logprobs(self, ids: torch.Tensor, mask: torch.Tensor, cands: Candidates) -> torch.Tensor:
        """[P, C, L, V] log-softmax over the vocabulary at each candidate position (next-token
        distributions along every candidate's path)."""
        return _per_unique(self._logprobs, ids, mask, cands, self.dedup)

    @abstractmethod
    def _score(self, ids: torch.Tensor, mask: torch.Tensor, cands: Candidates) -> torch.Tensor:
        """[P, C] scores of every row (no deduplication)."""

    @abstractmethod
    def _logprobs(self, ids: torch.Tensor, mask: torch.Tensor, cands: Candidates) -> torch.Tensor:
        """[P, C, L, V] table of every row (no deduplication)."""

    @abstractmethod
    def logprobs_rows(self, ids: torch.Tensor, mask: torch.Tensor, toks: torch.Tensor) -> torch.Tensor:
        """[P, L, V] next-token log-softmax along one token sequence per prompt (``toks`` [P, L]),
        e.g. the stored output of free-form decoding; no deduplication (rows are paired)."""

    @abstractmethod
    def prompt_logprobs(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[P, V] log P(w_0 | s): one prompt forward pass with this engine (the cost reference)."""

    @abstractmethod
    def generate(self, ids, mask, max_len: int, eos_id: int, *, sample: bool, generator=None, trie=None,
                 state_class=None):
        """Token-by-token decoding from each prompt (PAG-constrained with ``trie``): (tokens [B, max_len],
        summed log-probability [B], summed per-step entropy [B], ended [B])."""

    def runs_torch(self) -> bool:
        """Whether a call made now runs torch operations (callers acting without grad then use
        inference mode); False only where a call now runs in NumPy."""
        return True


def make_scorer(model, engine: str = "hf", *, reuse: bool = True, dedup: bool = True) -> CandidateScorer:
    """The :class:`CandidateScorer` of ``engine`` for ``model``: ``fast`` and ``numpy`` need a GPT-2
    backbone (:func:`mfsg.language.fastlm.supports`, :func:`mfsg.language.npengine.supports`); other
    backbones get :class:`HFScorer` (same results)."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is invalid: allowed one of {', '.join(ENGINES)}")
    if engine == "numpy" and npengine.supports(model):
        return NumpyScorer(model, reuse=reuse, dedup=dedup)
    if engine in ("fast", "numpy") and fastlm.supports(model):
        return PackedScorer(model, reuse=reuse, dedup=dedup)
    return HFScorer(model, reuse=reuse, dedup=dedup)


def _per_unique(fn, ids, mask, cands, dedup: bool) -> torch.Tensor:
    """``fn(ids, mask, cands)`` evaluated once per distinct prompt row and scattered back."""
    if dedup:
        u_ids, u_mask, inv = unique_rows(ids, mask)
        if u_ids.shape[0] < ids.shape[0]:
            keep = int(u_mask.sum(1).max())
            return fn(u_ids[:, :keep], u_mask[:, :keep], cands)[inv]
    return fn(ids, mask, cands)


class HFScorer(CandidateScorer):
    """The Hugging Face forward, the prompt's KV cache reused over the candidates (any backbone)."""

    engine = "hf"

    def __init__(self, model, *, reuse: bool = True, dedup: bool = True):
        super().__init__(model, reuse=reuse, dedup=dedup)
        self.seq2seq = is_seq2seq(model)
        self.start_id = model.config.decoder_start_token_id if self.seq2seq else None
        self.positions = PositionRule.of(model)

    # ------------------------------------------------------------------ scoring
    def _score(self, ids, mask, cands):
        cands = _on(cands, ids.device)
        return sequence_logprob(self._logprobs(ids, mask, cands), cands)

    def _logprobs(self, ids, mask, cands):
        mask = mask.bool()
        cands = _on(cands, ids.device)
        if not self.reuse:
            return self._naive(ids, mask, cands)
        first, cache, start = self._prompt_pass(ids, mask)
        P, C, L = ids.shape[0], cands.ids.shape[0], cands.ids.shape[1]
        parts = [first[:, None, None, :].expand(P, C, 1, first.shape[-1])]
        if L > 1:
            cache.batch_repeat_interleave(C)
            toks = cands.ids[:, :-1].repeat(P, 1)  # [P*C, L-1]: row p*C + c
            rest = self._continue(cache, toks, mask.repeat_interleave(C, 0), start.repeat_interleave(C, 0))
            parts.append(rest.view(P, C, L - 1, -1))
        return torch.cat(parts, dim=2)

    def logprobs_rows(self, ids: torch.Tensor, mask: torch.Tensor, toks: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        first, cache, start = self._prompt_pass(ids, mask)
        if toks.shape[1] == 1:
            return first[:, None]
        return torch.cat([first[:, None], self._continue(cache, toks[:, :-1], mask, start)], dim=1)

    def prompt_logprobs(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._prompt_pass(ids, mask.bool())[0]

    def _prompt_pass(self, ids, mask):
        """Run the prompt once: (log P(w_0 | s) [P, V], cache, [P] position id of the first token
        after each prompt (causal; seq2seq: the prompt lengths, unused))."""
        lengths = mask.sum(1)
        m = self.model
        if self.seq2seq:
            enc = m.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            start = torch.full((ids.shape[0], 1), self.start_id, dtype=torch.long, device=ids.device)
            out = m(
                encoder_outputs=BaseModelOutput(last_hidden_state=enc),
                attention_mask=mask,
                decoder_input_ids=start,
                cache=cache,
                use_cache=True,
            )
            self._enc_shape = enc.shape
            return F.log_softmax(out.logits[:, -1], dim=-1), out.cache, lengths
        pos = self.positions(ids, mask)
        out = m.base_model(
            input_ids=ids, attention_mask=mask, position_ids=pos, cache=DynamicCache(), use_cache=True
        )
        last = out.last_hidden_state[torch.arange(ids.shape[0], device=ids.device), lengths - 1]
        start = self.positions.next_position(pos, lengths)
        return F.log_softmax(m.get_output_embeddings()(last), dim=-1), out.cache, start

    def _continue(self, cache, toks, mask, start):
        """Feed ``toks`` [B, n_new] after the cached prompts (``start`` [B]: position id of the first
        token after each prompt); log-softmax [B, n_new, V] of the next tokens."""
        m = self.model
        B, n_new = toks.shape
        if self.seq2seq:
            # Cross-attention keys/values are cached; the encoder states only give the mask its
            # shape, so a zero-stride view stands in for them (no copy per candidate).
            fake = torch.zeros(1, 1, 1, dtype=m.dtype, device=toks.device).expand(B, mask.shape[1], self._enc_shape[-1])
            out = m(
                encoder_outputs=BaseModelOutput(last_hidden_state=fake),
                attention_mask=mask,
                decoder_input_ids=toks,
                cache=cache,
                use_cache=True,
            )
            return F.log_softmax(out.logits, dim=-1)
        done = cache.get_seq_length()
        full_mask = torch.cat([mask, torch.ones(B, done - mask.shape[1] + n_new, dtype=torch.bool, device=toks.device)],
                              dim=1)
        pos = start[:, None] + (done - mask.shape[1]) + torch.arange(n_new, device=toks.device)
        h = m.base_model(
            input_ids=toks, attention_mask=full_mask, position_ids=pos, cache=cache, use_cache=True
        )
        return F.log_softmax(m.get_output_embeddings()(h.last_hidden_state), dim=-1)

    def _naive(self, ids, mask, cands):
        """Baseline: the prompt is re-run together with every candidate (no reuse)."""
        P, C, L = ids.shape[0], cands.ids.shape[0], cands.ids.shape[1]
        rep_ids, rep_mask = ids.repeat_interleave(C, 0), mask.repeat_interleave(C, 0)
        toks = cands.ids.repeat(P, 1)
        m = self.model
        if self.seq2seq:
            start = torch.full((P * C, 1), self.start_id, dtype=torch.long, device=ids.device)
            dec = torch.cat([start, toks[:, :-1]], dim=1)
            out = m(input_ids=rep_ids, attention_mask=rep_mask, decoder_input_ids=dec, use_cache=False)
            return F.log_softmax(out.logits, dim=-1).view(P, C, L, -1)
        lengths = rep_mask.sum(1)
        Lp = ids.shape[1]
        seq = torch.cat([rep_ids, toks[:, :-1]], dim=1)
        full_mask = torch.cat([rep_mask, torch.ones(P * C, L - 1, dtype=torch.bool, device=ids.device)], dim=1)
        prompt_pos = self.positions(rep_ids, rep_mask)
        start = self.positions.next_position(prompt_pos, lengths)
        pos = torch.cat([prompt_pos, start[:, None] + torch.arange(L - 1, device=ids.device)], dim=1)
        h = m.base_model(input_ids=seq, attention_mask=full_mask, position_ids=pos, use_cache=False).last_hidden_state
        sel = torch.cat([h[torch.arange(P * C, device=ids.device), lengths - 1][:, None], h[:, Lp:]], dim=1)
        return F.log_softmax(m.get_output_embeddings()(sel), dim=-1).view(P, C, L, -1)

    # ------------------------------------------------------------------ generation
    def generate(self, ids, mask, max_len: int, eos_id: int, *, sample: bool, generator=None, trie=None,
                 state_class=None):
        """Token-by-token decoding from each prompt, the prompt run once and its cache reused.

        With ``trie`` (a :class:`~mfsg.language.grammar.TokenTrie`) and ``state_class`` [B] the
        next-token distribution is renormalized over the tokens the trie allows (PAG-constrained
        generation), and decoding of a row stops at a trie leaf; without it decoding is free-form
        and stops at eos. Returns tokens [B, max_len] (pad after the end), their summed
        log-probability [B], the sum of per-step entropies [B] (by the chain rule its expectation
        is the sequence entropy) and ``ended`` [B] (eos or a trie leaf within ``max_len``).
        """
        B = ids.shape[0]
        pad = self.model.config.pad_token_id
        dev = self.model.get_output_embeddings().weight.device  # prompts go there; tokens are drawn on the CPU
        ids, mask = ids.to(dev), mask.bool().to(dev)
        lp, cache, start = self._prompt_pass(ids, mask)
        toks = torch.full((B, max_len), pad, dtype=torch.long, device=dev)
        total, ent = torch.zeros(B, device=dev), torch.zeros(B, device=dev)
        ended = torch.zeros(B, dtype=torch.bool, device=dev)
        if trie is not None:
            allowed_of, child, leaf = trie.allowed.to(dev), trie.child.to(dev), trie.leaf.to(dev)
        node = trie.root.to(dev)[state_class.to(dev)] if trie is not None else None
        neg = torch.finfo(lp.dtype).min
        for j in range(max_len):
            live = ~ended
            if trie is not None:
                allowed = allowed_of[node] | ended[:, None]
                lp = F.log_softmax(torch.where(allowed, lp, neg), dim=-1)
            nxt = (torch.multinomial(lp.exp().cpu(), 1, generator=generator).squeeze(1).to(dev) if sample
                   else lp.argmax(-1))
            total = total + torch.where(live, lp.gather(1, nxt[:, None]).squeeze(1), 0.0)
            ent = ent + torch.where(live, -(lp.exp() * lp.clamp(min=neg)).sum(-1), 0.0)
            toks[:, j] = torch.where(live, nxt, pad)
            if trie is not None:
                node = torch.where(live, child[node, nxt], node)
                ended = ended | (leaf[node] >= 0)
            else:
                ended = ended | (nxt == eos_id)
            if bool(ended.all()) or j == max_len - 1:
                break
            lp = self._continue(cache, toks[:, j : j + 1], mask, start)[:, -1]
        return toks.cpu(), total.cpu(), ent.cpu(), ended.cpu()


class PackedScorer(HFScorer):
    """All candidates of a prompt in one packed torch forward (:class:`mfsg.language.fastlm.FastGPT2`,
    GPT-2 backbones); generation and the naive baseline are the Hugging Face ones."""

    engine = "fast"

    def __init__(self, model, *, reuse: bool = True, dedup: bool = True):
        super().__init__(model, reuse=reuse, dedup=dedup)
        self.fast = fastlm.FastGPT2(model)

    def _score(self, ids, mask, cands):
        return self.fast.scores(ids, mask.bool(), cands) if self.reuse else super()._score(ids, mask, cands)

    def _logprobs(self, ids, mask, cands):
        return self.fast.logprobs(ids, mask.bool(), cands) if self.reuse else super()._logprobs(ids, mask, cands)

    def logprobs_rows(self, ids, mask, toks):
        return self.fast.logprobs_rows(ids, mask.bool(), toks)

    def prompt_logprobs(self, ids, mask):
        return self.fast.prompt_logprobs(ids, mask.bool())


class NumpyScorer(PackedScorer):
    """:class:`PackedScorer` whose calls without grad, without active dropout and on CPU tensors run
    in NumPy (:class:`mfsg.language.npengine.NumpyGPT2`, no autograd); otherwise the torch path."""

    engine = "numpy"

    def __init__(self, model, *, reuse: bool = True, dedup: bool = True):
        super().__init__(model, reuse=reuse, dedup=dedup)
        self.numpy = npengine.NumpyGPT2(model)

    def _acting(self, ids: torch.Tensor | None = None) -> bool:
        return not torch.is_grad_enabled() and self.numpy.applies() and (ids is None or ids.device.type == "cpu")

    def runs_torch(self) -> bool:
        return not self._acting()

    def _score(self, ids, mask, cands):
        if self.reuse and self._acting(ids):
            return self.numpy.scores(ids, mask.bool(), cands)
        return super()._score(ids, mask, cands)

    def _logprobs(self, ids, mask, cands):
        if self.reuse and self._acting(ids):
            return self.numpy.logprobs(ids, mask.bool(), cands)
        return super()._logprobs(ids, mask, cands)

    def prompt_logprobs(self, ids, mask):
        if self._acting(ids):
            return self.numpy.prompt_logprobs(ids, mask.bool())
        return super().prompt_logprobs(ids, mask)


def sequence_logprob(full: torch.Tensor, cands: Candidates) -> torch.Tensor:
    """[P, C] Σ_j log P(w_j | ·) of each candidate from the [P, C, L, V] log-softmax table."""
    tok = full.gather(-1, cands.ids[None, :, :, None].expand(full.shape[0], -1, -1, 1)).squeeze(-1)
    return (tok * cands.mask).sum(-1)
