"""Language policies of the leader (BS) and the unified follower (all UEs) (model §5).

π(a|s) = softmax over the *valid* candidates a of Σ_j log P(w_j | s, w_<j) (LLM4MAC Eqs. 9–10);
invalid candidates get probability exactly 0. Decodings (``PolicyConfig.decoding``):

- ``score`` (default): Eq. 10 over the PAG candidate table, the prompt encoded once.
- ``trie``: PAG-constrained token-by-token generation (the token trie of
  :mod:`mfsg.language.grammar`); its exact log-probability, Σ_j log of the next-token
  distribution renormalized over allowed tokens, is evaluated from the same candidate scoring.
- ``free``: the no-PAG ablation — free-form generation, parsed; an output that does not parse
  or is not valid in the state gets the :data:`~mfsg.language.grammar.INVALID` action and
  ``valid = False``. It is never repaired here: the caller decides what to execute and counts it.

The leader and the follower are two :class:`Player` objects with separate parameters. Each has
a critic: a *separate copy* of its backbone's prompt reader (T5 encoder / GPT-2 body, started
from the same weights, so it inherits the pretrained protocol knowledge) with an MLP head,
reading a centralized-state prompt. Separate parameters keep the actor's parameters θ_b, θ_u
exactly the policy parameters that model §8 differentiates, and PPO needs no value-loss weight
trading policy against value gradients; the cost is one small extra forward per episode and TTI.
The follower critic gives every UE its own value (its own utility, model §4) by pooling that UE's
segment of the state prompt.

The calls a PPO module makes are on :class:`Agents` (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mfsg.config import ConfigError, EnvConfig, check_int, check_nonneg
from mfsg.env import spec
from mfsg.language import fusion, grammar, npengine, prompts
from mfsg.language.backbones import BackboneConfig, build_backbone, trunk_of
from mfsg.language.positions import PositionRule
from mfsg.language.scoring import ENGINES, Scorer, encode_candidates
from mfsg.language.tokenizer import WordEncoder

DECODINGS = ("score", "trie", "free")


@dataclass(frozen=True)
class PolicyConfig:
    """Language agents: backbone, prompts, decoding, scorer switches, fusion, critic size.

    ``fusion_eps`` None disables LLM4MAC Eq. 11; otherwise it is ε (decoding ``score`` only).
    ``free_extra_tokens``: free-form decoding may emit this many tokens beyond the longest
    action. ``tokenize_cache`` bounds the prompt -> token ids cache (entries). ``engine``: the
    candidate scorer of GPT-2 backbones: ``fast`` (default; :mod:`mfsg.language.fastlm`, one
    packed torch forward), ``numpy`` (acting and evaluation without grad in NumPy,
    :mod:`mfsg.language.npengine`, with grad as ``fast``: faster for the few prompts of one cell's
    TTI on one thread, slower than torch for batched rollouts on two threads, see
    ``mfsg bench policy``) or ``hf`` (Hugging Face forward with a KV cache); all give the same
    scores. T5 always uses ``hf``. ``score_cache`` bounds a prompt text ->
    candidate scores memo used when acting without grad in eval mode with ``score`` decoding
    (entries; 0 disables): prompts repeat across TTIs, and a repeated prompt's scores are reused
    while the actor parameters are unchanged (the memo is emptied whenever any parameter's
    storage or version counter changes, see :meth:`Player.weights_key`)."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    prompts: prompts.PromptConfig = field(default_factory=prompts.PromptConfig)
    decoding: str = "score"
    reuse: bool = True
    dedup: bool = True
    engine: str = "fast"
    fusion_eps: float | None = None
    free_extra_tokens: int = 2
    critic_hidden: int = 64
    tokenize_cache: int = 200_000
    score_cache: int = 50_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.decoding not in DECODINGS:
            raise ConfigError(f"policy.decoding={self.decoding!r} is invalid: allowed one of {', '.join(DECODINGS)}")
        if self.fusion_eps is not None:
            check_nonneg("policy.fusion_eps", self.fusion_eps)
            if self.decoding != "score":
                raise ConfigError(
                    f"policy.fusion_eps={self.fusion_eps!r} is invalid: allowed None unless decoding='score'"
                )
        if self.engine not in ENGINES:
            raise ConfigError(f"policy.engine={self.engine!r} is invalid: allowed one of {', '.join(ENGINES)}")
        check_int("policy.free_extra_tokens", self.free_extra_tokens, 0)
        check_int("policy.critic_hidden", self.critic_hidden, 1)
        check_int("policy.tokenize_cache", self.tokenize_cache, 0)
        check_int("policy.score_cache", self.score_cache, 0)
        check_int("policy.seed", self.seed, 0)


@dataclass
class Decisions:
    """Stored decisions of one player, enough to re-evaluate them (PPO): prompt ids/mask [M, L],
    candidate-validity class, chosen candidate index (INVALID for an invalid free-form output),
    generated tokens [M, Lg] (free decoding; else [M, 0]), (env, slot) of each decision, fusion
    group, log-probability and validity at acting time."""

    ids: torch.Tensor
    mask: torch.Tensor
    state_class: torch.Tensor
    choice: torch.Tensor
    tokens: torch.Tensor
    env: torch.Tensor
    slot: torch.Tensor
    group: torch.Tensor
    logp: torch.Tensor
    valid: torch.Tensor

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def select(self, idx: torch.Tensor) -> Decisions:
        return Decisions(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    @staticmethod
    def cat(parts: list[Decisions], pad_id: int) -> Decisions:
        """Concatenate (prompt and token widths padded to the widest)."""

        def padcat(xs, value):
            w = max(x.shape[1] for x in xs)
            return torch.cat([F.pad(x, (0, w - x.shape[1]), value=value) for x in xs])

        out = {
            f: torch.cat([getattr(p, f) for p in parts])
            for f in Decisions.__dataclass_fields__
            if f not in ("ids", "mask", "tokens")
        }
        offsets = torch.tensor([0] + [int(p.group.max()) + 1 if len(p) else 0 for p in parts[:-1]]).cumsum(0)
        out["group"] = torch.cat([p.group + o for p, o in zip(parts, offsets, strict=True)])  # fusion groups stay apart
        out["ids"] = padcat([p.ids for p in parts], pad_id)
        out["mask"] = padcat([p.mask for p in parts], False)
        out["tokens"] = padcat([p.tokens for p in parts], pad_id)
        return Decisions(**out)


@dataclass
class Act:
    """One player's actions for a TTI as ``[E, S]`` tensors (0 where no decision; ``INVALID`` where
    free-form output was invalid), with log-probabilities, entropies, validity and the record."""

    actions: tuple[torch.Tensor, ...]
    logp: torch.Tensor
    entropy: torch.Tensor
    valid: torch.Tensor
    decisions: Decisions


@dataclass
class StateBatch:
    """Encoded centralized-state prompts: ids/mask [B, L], ``seg`` [B, L] slot of each token's UE
    segment (-1 outside segments), ``active`` [B, S]."""

    ids: torch.Tensor
    mask: torch.Tensor
    seg: torch.Tensor
    active: torch.Tensor

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def select(self, idx: torch.Tensor) -> StateBatch:
        return StateBatch(self.ids[idx], self.mask[idx], self.seg[idx], self.active[idx])

    @staticmethod
    def cat(parts: list[StateBatch], pad_id: int) -> StateBatch:
        w = max(p.ids.shape[1] for p in parts)
        pad = lambda x, v: F.pad(x, (0, w - x.shape[1]), value=v)  # noqa: E731
        return StateBatch(
            torch.cat([pad(p.ids, pad_id) for p in parts]),
            torch.cat([pad(p.mask, False) for p in parts]),
            torch.cat([pad(p.seg, -1) for p in parts]),
            torch.cat([p.active for p in parts]),
        )


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
        onehot = (st.seg[..., None] == torch.arange(S)).to(h.dtype)  # [B, L, S]
        seg = torch.einsum("bls,bld->bsd", onehot, h) / onehot.sum(1)[..., None].clamp(min=1)
        x = torch.cat([seg, pooled[:, None].expand_as(seg)], dim=-1)
        return self.head(x).squeeze(-1) * st.active


class Player(torch.nn.Module):
    """One player's language policy and critic: ``kind`` 'leader' (BS) or 'follower' (unified UE)."""

    def __init__(self, kind: str, env_cfg: EnvConfig, cfg: PolicyConfig, backbone: BackboneConfig | None = None):
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
        self.scorer = Scorer(self.model, reuse=cfg.reuse, dedup=cfg.dedup, engine=cfg.engine)
        self.critic = Critic(
            trunk_of(self.model),
            self.model.get_input_embeddings().embedding_dim,
            cfg.critic_hidden,
            per_ue=kind == "follower",
            positions=PositionRule.of(self.model),
        )
        self._cache: dict[str, np.ndarray] = {}
        self._scores_memo: dict[str, np.ndarray] = {}
        self._memo_key: tuple | None = None
        self._memo_refs: list[torch.Tensor] = []
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

    def _scores(self, ids, mask, state_class, dedup: bool | None = None) -> torch.Tensor:
        """[M, C] candidate scores: Σ_j log P(w_j | s, w_<j) (Eq. 9), or for ``trie`` decoding the
        same sum with each step renormalized over the tokens the trie allows."""
        if self.cfg.decoding != "trie":
            return self.scorer.score(ids, mask, self.cands, dedup=dedup)
        full = self.scorer.logprobs(ids, mask, self.cands)  # [M, C, L, V]
        allowed = self.step_allowed[state_class]
        tok = full.gather(-1, self.cands.ids[None, :, :, None].expand(full.shape[0], -1, -1, 1)).squeeze(-1)
        lse = torch.logsumexp(full.masked_fill(~allowed, float("-inf")), dim=-1)
        step = torch.where(allowed.any(-1), tok - lse, torch.zeros_like(tok))
        return (step * self.cands.mask).sum(-1)

    def _pi(self, s: torch.Tensor, state_class: torch.Tensor, group=None) -> torch.Tensor:
        """[M, C] log π from candidate scores ``s`` (Eq. 10 over the valid candidates, then Eq. 11)."""
        valid = self.table.valid[state_class]
        logp = F.log_softmax(s.masked_fill(~valid, float("-inf")), dim=-1)
        if self.cfg.fusion_eps is not None and group is not None:
            fused = fusion.restrict(fusion.consensus_fusion(logp.exp(), group, self.cfg.fusion_eps), valid)
            logp = torch.where(valid, fused.clamp(min=torch.finfo(fused.dtype).tiny).log(), float("-inf"))
        return logp

    @staticmethod
    def entropy(logp: torch.Tensor) -> torch.Tensor:
        p = logp.exp()
        return -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)

    # ------------------------------------------------------------------ acting
    def decide(
        self, r: prompts.Rendered, greedy: bool, gen: torch.Generator
    ) -> tuple[Decisions, torch.Tensor, torch.Tensor]:
        """Decisions for rendered prompts: (record, per-decision entropy, per-decision action rows
        [M, len(action)] with INVALID where free-form output was invalid)."""
        M = len(r.texts)
        env, slot, cls = (torch.from_numpy(np.array(x, dtype=np.int64)) for x in (r.env, r.slot, r.state_class))
        tokens = torch.zeros(M, 0, dtype=torch.long)
        if self.cfg.decoding == "score":
            ids, mask, s = self._score_rendered(r)
            logp_all = self._pi(s, cls, group=env)
            choice = logp_all.argmax(-1) if greedy else torch.multinomial(logp_all.exp(), 1, generator=gen).squeeze(1)
            logp, ent, valid = (
                logp_all.gather(1, choice[:, None]).squeeze(1),
                self.entropy(logp_all),
                torch.ones(M, dtype=torch.bool),
            )
        elif self.cfg.decoding == "trie":
            ids, mask = self.encode(r.texts, r.pieces)
            toks, logp, ent, ended = self.scorer.generate(
                ids,
                mask,
                self.max_free,
                self.tok.eos_token_id,
                sample=not greedy,
                generator=gen,
                trie=self.trie,
                state_class=cls,
            )
            node = self._walk(toks, cls)
            choice = self.trie.leaf[node]
            valid = choice >= 0
        else:
            ids, mask = self.encode(r.texts, r.pieces)
            tokens, logp, ent, ended = self.scorer.generate(
                ids, mask, self.max_free, self.tok.eos_token_id, sample=not greedy, generator=gen
            )
            choice = torch.tensor(
                [self._parse(tokens[i], int(cls[i]), bool(ended[i])) for i in range(M)], dtype=torch.long
            )
            valid = choice >= 0
        acts = self.cand_actions[choice.clamp(min=0)]
        acts = torch.where(valid[:, None], acts, grammar.INVALID)
        dec = Decisions(ids, mask, cls, choice, tokens, env, slot, env.clone(), logp, valid)
        return dec, ent, acts

    def _score_rendered(self, r: prompts.Rendered) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, mask, candidate scores [M, C]) of rendered prompts; with deduplication on, each
        distinct prompt text is encoded and scored once (equal texts have equal token ids), and
        with the score memo on (``PolicyConfig.score_cache``) only texts not scored under the
        current parameters are. Without grad, torch engines run in inference mode (no autograd
        bookkeeping per op); the returned tensors are ordinary tensors, safe to record and to use
        under autograd later. Index bookkeeping is done in NumPy (cheaper than torch indexing)."""
        first: dict[str, int] = {}
        for i, t in enumerate(r.texts):
            first.setdefault(t, i)
        dedup = self.scorer.dedup and len(first) < len(r.texts)
        texts = list(first) if dedup else r.texts
        pieces = ([r.pieces[i] for i in first.values()] if dedup else r.pieces) if r.pieces else None
        ids, mask = self.encode(texts, pieces)
        memo = self._memo()
        if memo is None:
            s = self._score_rows(ids, mask)
        else:
            s = torch.from_numpy(self._memo_scores(memo, texts, ids.numpy(), mask.numpy()))
        if not dedup:
            return ids, mask, s
        rank = {t: j for j, t in enumerate(first)}
        inv = np.fromiter((rank[t] for t in r.texts), dtype=np.int64, count=len(r.texts))
        s = s[torch.from_numpy(inv)] if s.requires_grad else torch.from_numpy(s.numpy()[inv])
        return torch.from_numpy(ids.numpy()[inv]), torch.from_numpy(mask.numpy()[inv]), s

    def _memo_scores(self, memo: dict[str, np.ndarray], texts: list[str], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """[M, C] scores of ``texts`` (encoded as ``ids``, ``mask``): memo hits, and the misses
        scored in one batch (trimmed to their longest prompt) and remembered (bounded)."""
        rows = {t: memo[t] for t in texts if t in memo}
        miss = [j for j, t in enumerate(texts) if t not in rows]
        if not miss:
            return np.stack([rows[t] for t in texts])
        sub = mask[miss]
        keep = int(sub.sum(1).max())  # right-padded: trailing columns are padding only
        new = self._score_rows(torch.from_numpy(ids[miss, :keep]), torch.from_numpy(sub[:, :keep])).numpy()
        fresh = dict(zip((texts[j] for j in miss), new.copy(), strict=True))  # never aliases a result
        if len(memo) + len(fresh) > self.cfg.score_cache:
            memo.clear()
        if len(fresh) <= self.cfg.score_cache:
            memo.update(fresh)
        if len(miss) == len(texts):
            return new
        rows.update(fresh)
        return np.stack([rows[t] for t in texts])

    def _score_rows(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[M, C] candidate scores of encoded prompts, in inference mode when grad is off and a
        torch engine scores (the NumPy engine has no autograd to switch off)."""
        if torch.is_grad_enabled() or self.scorer._inference() is not None:
            return self._scores(ids, mask, None, dedup=False)
        with torch.inference_mode():
            s = self._scores(ids, mask, None, dedup=False)
        return s.clone()

    def weights_key(self) -> tuple:
        """(identity, storage address, version counter) of every actor parameter. It changes
        with every in-place update made through torch (optimizer steps, ``load_state_dict``,
        ``copy_``) and with every replaced parameter or module; writes through ``Tensor.data``
        bypass version counters (PyTorch semantics) and need :meth:`clear_memo`."""
        ne = self.scorer.numpy
        ts = ne.tensors() if ne is not None else list(self.model.parameters())
        self._memo_refs = ts  # keeps the keyed tensors alive: their ids cannot be reused
        return npengine.version_key(ts)

    def clear_memo(self) -> None:
        """Forget memoized candidate scores (see ``PolicyConfig.score_cache``)."""
        self._scores_memo.clear()
        self._memo_key = None

    def _memo(self) -> dict[str, np.ndarray] | None:
        """The prompt text -> candidate scores memo, when it applies to this call: score decoding,
        no grad, eval mode (no dropout). Emptied first if the actor parameters changed."""
        if not self.cfg.score_cache or self.cfg.decoding != "score" or torch.is_grad_enabled() or self.model.training:
            return None
        refs = self._memo_refs
        key = self.weights_key()
        if key != self._memo_key:
            self._scores_memo.clear()
            self._memo_key = key
        del refs  # the previous tensors may be released only after the comparison
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

    # ------------------------------------------------------------------ PPO evaluation
    def evaluate(self, dec: Decisions) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π(chosen | prompt) [M], entropy [M]) under the current parameters, differentiable.
        Free decoding: log-probability of the stored tokens and the sum of per-step entropies along
        them; with fusion, whole groups must be in ``dec`` for the result to equal acting time's."""
        if self.cfg.decoding == "free":
            full = self.scorer.logprobs_rows(dec.ids, dec.mask, dec.tokens)
            eos = (dec.tokens == self.tok.eos_token_id).long()
            upto = (torch.cumsum(eos, 1) - eos) == 0  # positions up to and including the first eos
            tok = full.gather(-1, dec.tokens[..., None]).squeeze(-1)
            p = full.exp()
            ent = -(p * full.masked_fill(p == 0, 0.0)).sum(-1)
            return (tok * upto).sum(-1), (ent * upto).sum(-1)
        logp_all = self.log_pi(dec.ids, dec.mask, dec.state_class, group=dec.group)
        return logp_all.gather(1, dec.choice.clamp(min=0)[:, None]).squeeze(1), self.entropy(logp_all)


def _scatter(E: int, S: int, flat: np.ndarray, values: torch.Tensor, fill=0) -> torch.Tensor:
    """[E, S] tensor holding ``values`` (no grad) at the flat (env * S + slot) positions ``flat``,
    else ``fill`` (built in NumPy: a few µs instead of three torch ops)."""
    v = values.numpy()
    out = np.full(E * S, fill, dtype=v.dtype)
    out[flat] = v
    return torch.from_numpy(out.reshape(E, S))


class Agents(torch.nn.Module):
    """The leader (BS) and the unified follower, each a :class:`Player` with its own parameters.

    Calls for a rollout / PPO module (all tensors ``[E, S]``, 0 on inactive slots):

    - ``act_leader(lobs, greedy=False) -> Act``: ``actions = (dcm,)``; one decision per active UE.
    - ``act_followers(fobs, greedy=False) -> Act``: ``actions = (ucm, access)``.
    - ``evaluate_leader(dec) / evaluate_followers(dec) -> (logp [M], entropy [M])`` for stored
      :class:`Decisions` (``Decisions.cat`` / ``select`` build minibatches).
    - ``leader_states(lobs, fobs) / follower_states(lobs, fobs) -> StateBatch`` and
      ``value_leader(states) -> [B]``, ``value_followers(states) -> [B, S]``.
    - ``leader.actor_parameters()``, ``leader.critic_parameters()`` (same for ``follower``) for
      the separate optimizers of model §6.
    Free-form decoding (``decoding='free'``) returns INVALID (-1) actions with ``valid`` False;
    the caller chooses what to execute and counts them.
    """

    def __init__(self, env_cfg: EnvConfig, cfg: PolicyConfig = PolicyConfig()):
        super().__init__()
        self.env_cfg, self.cfg = env_cfg, cfg
        b = cfg.backbone
        follower_b = b if b.path is not None else BackboneConfig(**{**b.__dict__, "seed": b.seed + 1})
        self.leader = Player("leader", env_cfg, cfg, b)
        self.follower = Player("follower", env_cfg, cfg, follower_b)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.pcfg = cfg.prompts

    def reseed(self, seed: int) -> None:
        self.gen.manual_seed(seed)

    def _act(self, player: Player, r: prompts.Rendered, E: int, S: int, greedy: bool) -> Act:
        with torch.no_grad():
            dec, ent, acts = player.decide(r, greedy, self.gen)
        flat = (dec.env * S + dec.slot).numpy()
        actions = tuple(_scatter(E, S, flat, a) for a in acts.unbind(1))
        return Act(
            actions,
            _scatter(E, S, flat, dec.logp, 0.0),
            _scatter(E, S, flat, ent, 0.0),
            _scatter(E, S, flat, dec.valid, True),
            dec,
        )

    def act_leader(self, lobs: spec.LeaderObs, greedy: bool = False) -> Act:
        E, S = lobs.active.shape
        return self._act(self.leader, prompts.leader_prompts(lobs, self.leader.lim, self.pcfg), E, S, greedy)

    def act_followers(self, fobs: spec.FollowerObs, greedy: bool = False) -> Act:
        E, S = fobs.active.shape
        return self._act(self.follower, prompts.follower_prompts(fobs, self.follower.lim, self.pcfg), E, S, greedy)

    def evaluate_leader(self, dec: Decisions):
        return self.leader.evaluate(dec)

    def evaluate_followers(self, dec: Decisions):
        return self.follower.evaluate(dec)

    def leader_states(self, lobs: spec.LeaderObs, fobs: spec.FollowerObs) -> StateBatch:
        sp = prompts.state_prompts(lobs, fobs, self.leader.lim, with_dcm=False)
        return self.leader.encode_states(sp, lobs.active.shape[1])

    def follower_states(self, lobs: spec.LeaderObs, fobs: spec.FollowerObs) -> StateBatch:
        sp = prompts.state_prompts(lobs, fobs, self.follower.lim, with_dcm=True)
        return self.follower.encode_states(sp, lobs.active.shape[1])

    def value_leader(self, states: StateBatch) -> torch.Tensor:
        return self.leader.critic(states)

    def value_followers(self, states: StateBatch) -> torch.Tensor:
        return self.follower.critic(states)
