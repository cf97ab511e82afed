"""Language policies of the leader (BS) and the unified follower (all UEs) (model §5).

π(a|s) = softmax over the *valid* candidates a of Σ_j log P(w_j | s, w_<j) (LLM4MAC Eqs. 9–10);
invalid candidates get probability exactly 0. Decodings (``LanguagePolicyConfig.decoding``):

- ``score`` (default): Eq. 10 over the PAG candidate table, the prompt encoded once.
- ``trie``: PAG-constrained token-by-token generation (the token trie of
  :mod:`mfsg.language.grammar`); its exact log-probability, Σ_j log of the next-token
  distribution renormalized over allowed tokens, is evaluated from the same candidate scoring.
- ``free``: the no-PAG ablation — free-form generation, parsed; an output that does not parse
  or is not valid in the state gets the :data:`~mfsg.language.grammar.INVALID` action and
  ``valid = False``. It is never repaired here: the caller decides what to execute and counts it.

The leader and the follower are two :class:`LanguagePolicy` objects with separate parameters
(held by :class:`mfsg.learn.language_players.LanguagePlayer`, the one player abstraction PPO
trains through, :class:`mfsg.learn.players.Player`). Each has
a critic: a *separate copy* of its backbone's prompt reader (T5 encoder / GPT-2 body, started
from the same weights, so it inherits the pretrained protocol knowledge) with an MLP head,
reading a centralized-state prompt. Separate parameters keep the actor's parameters θ_b, θ_u
exactly the policy parameters that model §8 differentiates, and PPO needs no value-loss weight
trading policy against value gradients; the cost is one small extra forward per episode and TTI.
The follower critic gives every UE its own value (its own utility, model §4) by pooling that UE's
segment of the state prompt. Leader and follower are trained by separate optimizers
(:mod:`mfsg.learn.ppo`), each over its player's actor and critic parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mfsg.config import ConfigError, EnvConfig, check_int, check_nonneg
from mfsg.language import fusion, grammar, prompts, versions
from mfsg.language.backbones import BackboneConfig, build_backbone, trunk_of
from mfsg.language.positions import PositionRule
from mfsg.language.scoring import ENGINES, encode_candidates, make_scorer
from mfsg.language.tokenizer import WordEncoder

DECODINGS = ("score", "trie", "free")


@dataclass(frozen=True)
class PolicyOptions:
    """The options of a language policy that ``[policy.language]``
    (:class:`mfsg.learn.language_players.LanguagePlayersConfig`) also exposes, defined once.

    ``reuse``/``dedup``: the scorer's prompt reuse and prompt deduplication (off only for
    benchmarks). ``engine``: the candidate scorer of GPT-2 backbones
    (:func:`mfsg.language.scoring.make_scorer`): ``fast`` (default; one packed torch forward),
    ``numpy`` (acting and evaluation without grad in NumPy, with grad as ``fast``: the lowest
    one-TTI latency, see ``mfsg bench policy``) or ``hf`` (Hugging Face forward with a KV cache);
    all give the same scores. T5 always uses ``hf``. ``score_cache`` bounds a prompt ->
    candidate scores memo used when acting without grad in eval mode with ``score`` decoding
    (entries; 0 disables): prompts repeat across TTIs, and a repeated prompt's scores are reused
    while the actor's parameter version (:mod:`mfsg.language.versions`) is unchanged.
    ``critic_hidden``: the critic head's width."""

    reuse: bool = True
    dedup: bool = True
    engine: str = "fast"
    critic_hidden: int = 64
    score_cache: int = 50_000

    def __post_init__(self) -> None:
        where = self._where()
        if self.engine not in ENGINES:
            raise ConfigError(f"{where}.engine={self.engine!r} is invalid: allowed one of {', '.join(ENGINES)}")
        check_int(f"{where}.critic_hidden", self.critic_hidden, 1)
        check_int(f"{where}.score_cache", self.score_cache, 0)

    @classmethod
    def _where(cls) -> str:
        """The config path named in error messages."""
        return "policy"


@dataclass(frozen=True)
class LanguagePolicyConfig(PolicyOptions):
    """A language policy: backbone, prompts, decoding, fusion, and the :class:`PolicyOptions`.

    ``fusion_eps`` None disables LLM4MAC Eq. 11; otherwise it is ε (decoding ``score`` only).
    ``free_extra_tokens``: free-form decoding may emit this many tokens beyond the longest
    action. ``tokenize_cache`` bounds the prompt -> token ids cache (entries)."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    prompts: prompts.PromptConfig = field(default_factory=prompts.PromptConfig)
    decoding: str = "score"
    fusion_eps: float | None = None
    free_extra_tokens: int = 2
    tokenize_cache: int = 200_000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoding not in DECODINGS:
            raise ConfigError(f"policy.decoding={self.decoding!r} is invalid: allowed one of {', '.join(DECODINGS)}")
        if self.fusion_eps is not None:
            check_nonneg("policy.fusion_eps", self.fusion_eps)
            if self.decoding != "score":
                raise ConfigError(
                    f"policy.fusion_eps={self.fusion_eps!r} is invalid: allowed None unless decoding='score'"
                )
        check_int("policy.free_extra_tokens", self.free_extra_tokens, 0)
        check_int("policy.tokenize_cache", self.tokenize_cache, 0)


@dataclass
class Choices:
    """Actions chosen for rendered prompts (:meth:`LanguagePolicy.decide`), one row per prompt:
    ``actions`` [M, len(action)] (``INVALID`` rows where free-form output was invalid), their
    log-probability ``logp`` [M], the policy's ``entropy`` [M] and ``valid`` [M]."""

    actions: torch.Tensor
    logp: torch.Tensor
    entropy: torch.Tensor
    valid: torch.Tensor


@dataclass
class StateBatch:
    """Encoded centralized-state prompts: ids/mask [B, L], ``seg`` [B, L] slot of each token's UE
    segment (-1 outside segments), ``active`` [B, S]."""

    ids: torch.Tensor
    mask: torch.Tensor
    seg: torch.Tensor
    active: torch.Tensor


class Critic(torch.nn.Module):
    """V(s) from a centralized-state prompt: a copy of the backbone's prompt reader + MLP head.
    ``per_ue``: one value per UE slot from [segment mean, prompt mean]; else one from the prompt mean."""

    def __init__(self, trunk: torch.nn.Module, d_model: int, hidden: int, per_ue: bool,
                 positions: PositionRule | None = None):
        super().__init__()
        self.trunk, self.per_ue = trunk, per_ue
        self.positions = positions or PositionRule()
        d_in = 2 * d_model if per_ue else d_model
        self.head = torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

    def forward(self, st: StateBatch) -> torch.Tensor:
        pos = {} if self.positions.absolute else {"position_ids": self.positions(st.ids, st.mask)}
        h = self.trunk(input_ids=st.ids, attention_mask=st.mask, **pos).last_hidden_state  # [B, L, d]
        m = st.mask.to(h.dtype)[..., None]
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        if not self.per_ue:
            return self.head(pooled).squeeze(-1)
        S = st.active.shape[1]
        onehot = (st.seg[..., None] == torch.arange(S, device=st.seg.device)).to(h.dtype)  # [B, L, S]
        seg = torch.einsum("bls,bld->bsd", onehot, h) / onehot.sum(1)[..., None].clamp(min=1)
        x = torch.cat([seg, pooled[:, None].expand_as(seg)], dim=-1)
        return self.head(x).squeeze(-1) * st.active


class LanguagePolicy(torch.nn.Module):
    """One player's language policy and critic: ``kind`` 'leader' (BS) or 'follower' (unified UE).
    The critic values each UE slot for the follower, and for the leader with ``value_per_ue`` (the
    per-UE leader credit of Stackelberg PPO); else one value per state."""

    def __init__(self, kind: str, env_cfg: EnvConfig, cfg: LanguagePolicyConfig,
                 backbone: BackboneConfig | None = None, value_per_ue: bool = False):
        super().__init__()
        self.kind, self.cfg = kind, cfg
        self.lim = grammar.Limits.from_env(env_cfg)
        self.model, self.tok = build_backbone(backbone or cfg.backbone)
        self.table = grammar.bs_table(self.lim) if kind == "leader" else grammar.ue_table(self.lim)
        self.cand_actions = self.table.action_tensor()  # [C, len(action)] meaning of each candidate
        self.cands = encode_candidates(self.tok, self.table.texts)
        seqs = [self.cands.ids[c, : self.cands.length[c]].tolist() for c in range(self.table.n)]
        self.lookup = {tuple(s): c for c, s in enumerate(seqs)}
        V = self.model.get_output_embeddings().weight.shape[0]
        self.trie = grammar.TokenTrie(seqs, self.table.valid, V)
        self.step_allowed = torch.stack(
            [self.trie.step_allowed(self.cands.ids, torch.tensor(k)) for k in range(self.table.valid.shape[0])]
        )
        self.scorer = make_scorer(self.model, cfg.engine, reuse=cfg.reuse, dedup=cfg.dedup)
        self.critic = Critic(
            trunk_of(self.model),
            self.model.get_input_embeddings().embedding_dim,
            cfg.critic_hidden,
            per_ue=kind == "follower" or value_per_ue,
            positions=PositionRule.of(self.model),
        )
        self._cache: dict[str, np.ndarray] = {}
        self._scores_memo: dict[bytes, np.ndarray] = {}
        self._memo_key: tuple | None = None
        self._fast = WordEncoder(self.tok) if WordEncoder.applies(self.tok) else None
        self.max_free = int(self.cands.length.max()) + cfg.free_extra_tokens

    # ------------------------------------------------------------------ parameters
    def actor_parameters(self):
        return self.model.parameters()

    def critic_parameters(self):
        return self.critic.parameters()

    # ------------------------------------------------------------------ encoding
    def encode(self, texts: list[str], pieces: list[tuple[str, ...]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded prompt ids and mask, through a bounded text -> ids cache. With ``pieces``
        (``texts[i] == " ".join(pieces[i])``, see :class:`~mfsg.language.prompts.Rendered`) and the
        word-level protocol tokenizer, a prompt's ids are its cached pieces' ids concatenated
        (exact: word-level tokens never cross the spaces joining pieces), and whole prompts are
        cached too (they repeat across TTIs); else whole texts."""
        if pieces and self._fast is not None:
            cache = self._cache
            seqs = [cache.get(t) for t in texts]  # whole prompts seen before
            miss = [i for i, x in enumerate(seqs) if x is None]
            if miss:
                ids_of = self._ids([t for i in miss for t in pieces[i]])
                new = [np.concatenate([ids_of[t] for t in pieces[i]]) for i in miss]
                if len(cache) + len(miss) > self.cfg.tokenize_cache:
                    cache.clear()
                for i, x in zip(miss, new, strict=True):
                    seqs[i] = cache[texts[i]] = x
        else:
            ids_of = self._ids(texts)
            seqs = [ids_of[t] for t in texts]
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        mask = np.arange(int(lengths.max())) < lengths[:, None]
        ids = np.full(mask.shape, self.tok.pad_token_id, dtype=np.int64)
        ids[mask] = np.concatenate(seqs)  # row-major: each row's ids, then its padding
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def _ids(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Token ids of each distinct text (int64 arrays) through the bounded cache."""
        cache = self._cache
        out = {t: cache.get(t) for t in texts}
        miss = [t for t, x in out.items() if x is None]
        if miss:
            if len(cache) + len(miss) > self.cfg.tokenize_cache:
                cache.clear()
            if self._fast is not None:
                encoded = [self._fast.encode(t) for t in miss]
            else:
                encoded = self.tok(miss, add_special_tokens=False).input_ids
            for t, x in zip(miss, encoded, strict=True):
                out[t] = cache[t] = np.array(x, dtype=np.int64)
        return out

    def encode_states(self, sp: prompts.StatePrompts, n_slots: int) -> StateBatch:
        enc = self.tok(
            sp.texts, add_special_tokens=False, padding=True, return_offsets_mapping=True, return_tensors="np"
        )
        starts = enc["offset_mapping"][..., 0]
        seg = np.full(starts.shape, -1, dtype=np.int64)
        active = torch.zeros(len(sp.texts), n_slots, dtype=torch.bool)
        for b, spans in enumerate(sp.spans):
            for s, (lo, hi) in spans.items():
                seg[b][(starts[b] >= lo) & (starts[b] < hi)] = s
                active[b, s] = True
        mask = torch.from_numpy(enc["attention_mask"]).bool()
        seg = torch.from_numpy(seg).masked_fill(~mask, -1)
        return StateBatch(torch.from_numpy(enc["input_ids"]).long(), mask, seg, active)

    # ------------------------------------------------------------------ distributions
    def log_pi(self, ids, mask, state_class, group=None) -> torch.Tensor:
        """[M, C] log π over the candidate table (−inf on invalid candidates) (Eqs. 9–10, or the
        trie-renormalized decoding, then Eq. 11 fusion within ``group`` if enabled)."""
        return self._pi(self._scores(ids, mask, state_class), state_class, group)

    def candidate_scores(self, ids, mask, state_class) -> torch.Tensor:
        """[M, C] Eq. 9 scores of every candidate (before the softmax over the valid ones)."""
        return self._scores(ids, mask, state_class)

    def _scores(self, ids, mask, state_class) -> torch.Tensor:
        """[M, C] candidate scores of encoded prompts. Acting on the CPU (no grad, eval mode, ``score``
        decoding, ``score_cache`` > 0) goes through the memo; without grad, torch engines run in
        inference mode (no autograd bookkeeping per op) and the result is an ordinary tensor, safe
        to record and to use under autograd later."""
        memo = self._memo() if ids.device.type == "cpu" else None
        if memo is not None:
            return torch.from_numpy(self._memo_scores(memo, ids.numpy(), mask.numpy()))
        if torch.is_grad_enabled() or not self.scorer.runs_torch():
            return self._table_scores(ids, mask, state_class)
        with torch.inference_mode():
            s = self._table_scores(ids, mask, state_class)
        return s.clone()

    def _table_scores(self, ids, mask, state_class, dedup: bool | None = None) -> torch.Tensor:
        """[M, C] candidate scores: Σ_j log P(w_j | s, w_<j) (Eq. 9), or for ``trie`` decoding the
        same sum with each step renormalized over the tokens the trie allows."""
        if self.cfg.decoding != "trie":
            return self.scorer.score(ids, mask, self.cands, dedup=dedup)
        full = self.scorer.logprobs(ids, mask, self.cands)  # [M, C, L, V]
        dev = full.device  # the candidate tables live on the CPU; .to() is a no-op there
        allowed = self.step_allowed.to(dev)[state_class.to(dev)]
        tok = full.gather(-1, self.cands.ids.to(dev)[None, :, :, None].expand(full.shape[0], -1, -1, 1)).squeeze(-1)
        lse = torch.logsumexp(full.masked_fill(~allowed, float("-inf")), dim=-1)
        step = torch.where(allowed.any(-1), tok - lse, torch.zeros_like(tok))
        return (step * self.cands.mask.to(dev)).sum(-1)

    def _pi(self, s: torch.Tensor, state_class: torch.Tensor, group=None) -> torch.Tensor:
        """[M, C] log π from candidate scores ``s`` (Eq. 10 over the valid candidates, then Eq. 11)."""
        valid = self.table.valid.to(s.device)[state_class.to(s.device)]
        logp = F.log_softmax(s.masked_fill(~valid, float("-inf")), dim=-1)
        if self.cfg.fusion_eps is not None and group is not None:
            fused = fusion.restrict(fusion.consensus_fusion(logp.exp(), group, self.cfg.fusion_eps), valid)
            logp = torch.where(valid, fused.clamp(min=torch.finfo(fused.dtype).tiny).log(), float("-inf"))
        return logp

    def cand_device(self) -> torch.device:
        """The device of the actor's parameters, where prompts are scored."""
        return next(self.parameters()).device

    @staticmethod
    def entropy(logp: torch.Tensor) -> torch.Tensor:
        p = logp.exp()
        return -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def decide(self, r: prompts.Rendered, greedy: bool, gen: torch.Generator) -> Choices:
        """Actions for rendered prompts with this policy's decoding: ``score`` samples π over the
        candidates (Eq. 10, fusion within each episode); ``trie`` and ``free`` generate token by
        token (PAG-constrained or free-form; free-form output that is not a valid action is
        ``INVALID``, never repaired)."""
        M = len(r.texts)
        cls = torch.from_numpy(np.array(r.state_class, dtype=np.int64))
        ids, mask = self.encode(r.texts, r.pieces)
        if self.cfg.decoding == "score":  # scored on the model's device, sampled on the CPU
            dev = self.cand_device()
            group = torch.from_numpy(np.array(r.env, dtype=np.int64))
            logp_all = self.log_pi(ids.to(dev), mask.to(dev), cls.to(dev), group=group.to(dev)).cpu()
            choice = logp_all.argmax(-1) if greedy else torch.multinomial(logp_all.exp(), 1, generator=gen).squeeze(1)
            logp, ent = logp_all.gather(1, choice[:, None]).squeeze(1), self.entropy(logp_all)
            valid = torch.ones(M, dtype=torch.bool)
        elif self.cfg.decoding == "trie":
            toks, logp, ent, _ = self.scorer.generate(ids, mask, self.max_free, self.tok.eos_token_id,
                                                      sample=not greedy, generator=gen, trie=self.trie,
                                                      state_class=cls)
            choice = self.trie.leaf[self._walk(toks, cls)]
            valid = choice >= 0
        else:
            toks, logp, ent, ended = self.scorer.generate(ids, mask, self.max_free, self.tok.eos_token_id,
                                                          sample=not greedy, generator=gen)
            choice = torch.tensor([self._parse(toks[i], int(cls[i]), bool(ended[i])) for i in range(M)],
                                  dtype=torch.long)
            valid = choice >= 0
        acts = torch.where(valid[:, None], self.cand_actions[choice.clamp(min=0)], grammar.INVALID)
        return Choices(acts, logp, ent, valid)

    def _memo_scores(self, memo: dict[bytes, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """[M, C] scores of encoded prompts: memo hits (keyed by each row's token ids), and the
        distinct misses scored in one batch (trimmed to their longest prompt) and remembered (bounded)."""
        lengths = mask.sum(1)
        keys = [row[:n].tobytes() for row, n in zip(ids, lengths.tolist(), strict=True)]
        rows = {k: memo[k] for k in keys if k in memo}
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in rows:
                first.setdefault(k, i)
        if not first:
            return np.stack([rows[k] for k in keys])
        miss = list(first.values())
        keep = int(lengths[miss].max())  # right-padded: trailing columns are padding only
        new = self._raw_scores(torch.from_numpy(ids[miss, :keep]), torch.from_numpy(mask[miss, :keep])).numpy()
        fresh = dict(zip(first, new.copy(), strict=True))  # never aliases a result
        if len(memo) + len(fresh) > self.cfg.score_cache:
            memo.clear()
        if len(fresh) <= self.cfg.score_cache:
            memo.update(fresh)
        if len(miss) == len(keys):  # every row a distinct miss, in order
            return new
        rows.update(fresh)
        return np.stack([rows[k] for k in keys])

    def _raw_scores(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[M, C] Eq. 9 scores of distinct encoded prompts without grad, in inference mode when a
        torch engine scores."""
        if not self.scorer.runs_torch():
            return self.scorer.score(ids, mask, self.cands, dedup=False)
        with torch.inference_mode():
            s = self.scorer.score(ids, mask, self.cands, dedup=False)
        return s.clone()

    def parameters_changed(self) -> None:
        """Record that the actor's parameters were written outside an optimizer step or
        ``load_state_dict`` (see :mod:`mfsg.language.versions`): memoized scores and the NumPy
        engine's derived weights are recomputed."""
        versions.bump(self.model)

    def forget_scores(self) -> None:
        """Empty the score memo (its entries may be valid: a caller wants scores independent of the
        batches earlier calls were computed in)."""
        self._scores_memo.clear()

    def _memo(self) -> dict[bytes, np.ndarray] | None:
        """The prompt -> candidate scores memo, when it applies to this call: score decoding,
        no grad, eval mode (no dropout). Emptied first if the actor's parameter version changed."""
        if not self.cfg.score_cache or self.cfg.decoding != "score" or torch.is_grad_enabled() or self.model.training:
            return None
        key = versions.key(self.model)
        if key != self._memo_key:
            self._scores_memo.clear()
            self._memo_key = key
        return self._scores_memo

    def _walk(self, toks: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        node = self.trie.root[cls]
        for j in range(toks.shape[1]):
            done = self.trie.leaf[node] >= 0
            node = torch.where(done, node, self.trie.child[node, toks[:, j]])
        assert bool((node >= 0).all()), "PAG-constrained generation left the trie"
        return node

    def _parse(self, toks: torch.Tensor, cls: int, ended: bool) -> int:
        """Candidate index of a free-form output, or INVALID (no eos, no parse, or not valid in the state)."""
        if not ended:
            return grammar.INVALID
        seq = toks.tolist()
        seq = seq[: seq.index(self.tok.eos_token_id) + 1]
        c = self.lookup.get(tuple(seq))
        if c is None:  # another tokenization of a grammatical string (pretrained tokenizers)
            text = self.tok.decode(seq, skip_special_tokens=True)
            if self.kind == "leader":
                d = grammar.parse_bs(text, self.lim)
                c = self.table.index.get((d,)) if d != grammar.INVALID else None
            else:
                u, a = grammar.parse_ue(text, self.lim, has_dpdu=True)
                c = self.table.index.get((u, a)) if u != grammar.INVALID else None
        if c is None or not bool(self.table.valid[cls, c]):
            return grammar.INVALID
        return int(c)
