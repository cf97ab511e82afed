"""Fast candidate scoring for GPT-2 backbones (SPEC §5; LLM4MAC Eqs. 9–10).

A minimal pure-torch GPT-2 forward (token + position embeddings, pre-LN blocks with causal
attention written as matmul + additive mask + softmax, the model's activation, final LN, the LM
head) that reads the weights *of the Hugging Face model itself* at every call: the same
``nn.Parameter`` objects, no copies, so gradients reach the HF model and PPO, imitation and
checkpoints are unchanged.

All candidates of a prompt are scored in ONE forward pass: the prompt is followed by the
candidate *tree* (the distinct prefixes of the candidates' input tokens, each prefix one packed
token), and a tree attention mask lets every tree token attend to the (unpadded) prompt and to
its own ancestors only; its position id continues the prompt (``prompt length + depth``). A
causal model's hidden state at a token depends only on the tokens it attends to, so this equals
running every prompt + candidate separately (and the prompt is encoded once, with no KV-cache
bookkeeping). Next-token distributions are ``log_softmax`` over the vocabulary, never raw logits
(flowersteam/lamorel issue #37). Prompts are right-padded (``mask`` a prefix of ones per row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Bounded caches of per-shape constant tensors (structural masks, candidate trees).
MASK_CACHE_SIZE = 256
TREE_CACHE_SIZE = 16
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")
_GELU_CUBIC = 0.044715
_GELU_SCALE = 2.0 * math.sqrt(2.0 / math.pi)


@dataclass(frozen=True)
class Tree:
    """A packed token tree: ``depth`` [N] of each node (0 = first token after the prompt),
    ``attend`` [N, N] ancestor-or-self, ``tokens`` [N] node tokens (None when every prompt has its
    own tokens, see :func:`chain`) and ``index`` [C, L]: row of the packed output (0 = the prompt's
    last token, 1 + n = node n) holding the distribution of candidate c's token j."""

    depth: torch.Tensor
    attend: torch.Tensor
    tokens: torch.Tensor | None
    index: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.depth.shape[0])


def candidate_tree(ids: torch.Tensor, length: torch.Tensor) -> Tree:
    """The tree of the distinct prefixes of the candidates' input tokens (``ids`` [C, L],
    ``length`` [C] tokens including eos). Only inputs that predict a real token are nodes: a
    candidate's positions after its eos (masked out of every score, see
    :func:`~mfsg.language.scoring.sequence_logprob`) repeat its eos position's distribution."""
    C, L = ids.shape
    node_of: dict[tuple[int, ...], int] = {}
    parent, depth, tokens = [], [], []
    index = torch.zeros(C, L, dtype=torch.long)
    for c in range(C):
        row, n = ids[c].tolist(), int(length[c])
        for j in range(n - 1):
            key = tuple(row[: j + 1])
            if key not in node_of:
                node_of[key] = len(tokens)
                parent.append(node_of[key[:-1]] if j else -1)
                depth.append(j)
                tokens.append(row[j])
            index[c, j + 1] = 1 + node_of[key]
        index[c, n:] = index[c, n - 1]
    N = len(tokens)
    attend = torch.eye(N, dtype=torch.bool)
    for n in range(N):
        a = parent[n]
        while a >= 0:
            attend[n, a] = True
            a = parent[a]
    return Tree(torch.tensor(depth, dtype=torch.long), attend, torch.tensor(tokens, dtype=torch.long), index)


def chain(n: int) -> Tree:
    """A chain of ``n`` nodes (one token sequence per prompt, its tokens given per call)."""
    return Tree(
        torch.arange(n),
        torch.ones(n, n, dtype=torch.bool).tril(),
        None,
        torch.arange(n + 1)[None],
    )


class FastGPT2:
    """Packed-tree scoring with the parameters of a Hugging Face GPT-2 model (read per call).

    Works with and without grad (same code); call under ``torch.no_grad()`` for acting.
    Dropout is applied where GPT-2 applies it when the model is in training mode."""

    def __init__(self, model):
        if not supports(model):
            raise ValueError(f"FastGPT2 supports GPT-2 models without cross-attention, got {type(model).__name__}")
        self.model = model
        self.body = model.base_model
        conf = model.config
        self.n_heads = conf.n_head
        self.head_dim = conf.n_embd // conf.n_head
        self.gelu_tanh = conf.activation_function in _GELU_TANH
        self.p_embd, self.p_attn, self.p_resid = conf.embd_pdrop, conf.attn_pdrop, conf.resid_pdrop
        self._trees: dict[int, tuple[object, Tree]] = {}
        self._masks: dict[tuple, torch.Tensor] = {}
        self._chains: dict[int, Tree] = {}

    # ------------------------------------------------------------------ public
    def logprobs(self, ids: torch.Tensor, mask: torch.Tensor, cands) -> torch.Tensor:
        """[P, C, L, V] next-token log-softmax along every candidate (``cands``: a
        :class:`~mfsg.language.scoring.Candidates`), all candidates of all prompts in one pass.
        Positions after a candidate's eos repeat the eos position (see :func:`candidate_tree`)."""
        tree = self._tree(cands)
        out = self.packed(ids, mask, tree, tree.tokens.expand(ids.shape[0], -1))
        return out[:, tree.index]

    def logprobs_rows(self, ids: torch.Tensor, mask: torch.Tensor, toks: torch.Tensor) -> torch.Tensor:
        """[P, L, V] next-token log-softmax along one token sequence per prompt (``toks`` [P, L])."""
        n = toks.shape[1] - 1
        tree = self._chains.get(n)
        if tree is None:
            tree = self._chains[n] = chain(n)
        return self.packed(ids, mask, tree, toks[:, :n])

    def prompt_logprobs(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[P, V] log P(first token | prompt): one prompt forward pass (the cost reference)."""
        return self.logprobs_rows(ids, mask, ids[:, :1])[:, 0]

    def packed(self, ids: torch.Tensor, mask: torch.Tensor, tree: Tree, node_tokens: torch.Tensor) -> torch.Tensor:
        """[P, 1 + N, V] log-softmax at each prompt's last token and at every tree node.

        The longest prefix common to all prompts (at most the shortest prompt minus one token) is
        encoded once, as a segment every prompt's block attends to; each block is the rest of its
        prompt followed by the candidate tree."""
        mask = mask.bool()
        P, Lp = ids.shape
        lengths = mask.sum(1)
        k = _common_prefix(ids, mask, lengths) if P > 1 else 0
        Ls, N = Lp - k, tree.size
        W = Ls + N
        blocks = torch.cat([ids[:, k:], node_tokens], dim=1) if N else ids[:, k:]
        tokens = torch.cat([ids[0, :k], blocks.reshape(-1)]) if k else blocks.reshape(-1)
        pre_pos, blk_pos, depth = self._positions(k, Ls, tree)
        pos = torch.cat([blk_pos.expand(P, Ls), lengths[:, None] + depth], dim=1) if N else blk_pos.expand(P, Ls)
        pos = torch.cat([pre_pos, pos.reshape(-1)]) if k else pos.reshape(-1)
        keys = torch.cat([mask.new_ones(P, k), mask[:, k:], mask.new_ones(P, N)], dim=1)
        allowed = self._structure(k, Ls, tree) & keys[:, None, :]  # [P, W, k + W]
        head = self.model.get_output_embeddings()  # looked up per call: it may be replaced
        bias = torch.zeros(allowed.shape, dtype=head.weight.dtype).masked_fill_(~allowed, -math.inf)[:, None]
        rows = lengths[:, None] - 1 - k  # the prompt's last token, in its block
        rows = torch.cat([rows, torch.arange(Ls, W).expand(P, N)], dim=1) if N else rows
        h = self._encode(tokens, pos, k, P, W, bias, rows)  # [P * (1 + N), d]
        b = self.body.ln_f
        h = F.layer_norm(h, b.normalized_shape, b.weight, b.bias, b.eps)
        logits = F.linear(h, head.weight, head.bias)
        return F.log_softmax(logits, dim=-1).view(P, 1 + N, -1)

    # ------------------------------------------------------------------ forward
    def _encode(self, tokens, pos, k: int, P: int, W: int, bias, rows) -> torch.Tensor:
        """Hidden states (before the final LN) at ``rows`` [P, R] of every block: [P * R, d].

        ``tokens``/``pos`` [k + P*W]: the shared prefix, then the blocks. Prefix tokens attend
        causally among themselves; block tokens attend to the prefix and, as ``bias`` [P, 1, W,
        k + W] allows, to their block. The last block computes its queries and MLP only at ``rows``."""
        body, training = self.body, self.model.training
        H, dh = self.n_heads, self.head_dim
        d, R = H * dh, rows.shape[1]
        x = F.embedding(tokens, body.wte.weight) + F.embedding(pos, body.wpe.weight)
        if training and self.p_embd:
            x = F.dropout(x, self.p_embd, True)
        causal = self._causal(k) if k else None
        last = len(body.h) - 1
        for i, blk in enumerate(body.h):
            a, m = blk.attn, blk.mlp
            y = F.layer_norm(x, blk.ln_1.normalized_shape, blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
            qkv = torch.addmm(a.c_attn.bias, y, a.c_attn.weight)
            qb, kb, vb = qkv[k:].view(P, W, 3, H, dh).permute(2, 0, 3, 1, 4)  # [P, H, W, dh]
            if k:
                qp, kp, vp = qkv[:k].view(k, 3, H, dh).permute(1, 2, 0, 3)  # [H, k, dh]
                kb = torch.cat([kp.expand(P, H, k, dh), kb], dim=2)
                vb = torch.cat([vp.expand(P, H, k, dh), vb], dim=2)
            if i == last:  # only the rows read out: queries, attention and MLP
                idx = rows[:, None, :, None]
                qb = qb.gather(2, idx.expand(P, H, R, dh))
                bias = bias.gather(2, idx.expand(P, 1, R, bias.shape[-1]))
                x = x[k:].view(P, W, d).gather(1, rows[:, :, None].expand(P, R, d)).view(P * R, d)
                o = self._attend(qb, kb, vb, bias, a.scaling, training).reshape(P * R, d)
            else:
                o = self._attend(qb, kb, vb, bias, a.scaling, training).reshape(P * W, d)
                if k:
                    o = torch.cat([self._attend(qp, kp, vp, causal, a.scaling, training).reshape(k, d), o])
            o = torch.addmm(a.c_proj.bias, o, a.c_proj.weight)
            if training and self.p_resid:
                o = F.dropout(o, self.p_resid, True)
            x = x + o
            y = F.layer_norm(x, blk.ln_2.normalized_shape, blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps)
            y = torch.addmm(m.c_fc.bias, y, m.c_fc.weight)
            y = _gelu_tanh(y) if self.gelu_tanh else m.act(y)
            y = torch.addmm(m.c_proj.bias, y, m.c_proj.weight)
            if training and self.p_resid:
                y = F.dropout(y, self.p_resid, True)
            x = x + y
        return x

    def _attend(self, q, k, v, bias, scaling: float, training: bool) -> torch.Tensor:
        """softmax(q kᵀ · scaling + bias) v, heads on dim -3; output with heads moved to dim -2."""
        w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scaling + bias, dim=-1)
        if training and self.p_attn:
            w = F.dropout(w, self.p_attn, True)
        return torch.matmul(w, v).transpose(-3, -2)

    # ------------------------------------------------------------------ cached constants
    def _tree(self, cands) -> Tree:
        hit = self._trees.get(id(cands))
        if hit is not None and hit[0] is cands:
            return hit[1]
        if len(self._trees) >= TREE_CACHE_SIZE:
            self._trees.clear()
            self._masks.clear()  # keyed by tree identity
        tree = candidate_tree(cands.ids, cands.length)
        self._trees[id(cands)] = (cands, tree)
        return tree

    def _structure(self, k: int, Ls: int, tree: Tree) -> torch.Tensor:
        """[W, k + W] bool for a block of ``Ls`` prompt tokens + the tree after a ``k``-token shared
        prefix: every block token sees the prefix; prompt tokens are causal; a tree node sees the
        whole block prompt (padding is removed per row by the key mask) and its ancestors-or-self."""
        key = ("s", k, Ls, id(tree))
        s = self._masks.get(key)
        if s is None:
            N = tree.size
            s = torch.zeros(Ls + N, k + Ls + N, dtype=torch.bool)
            s[:, :k] = True
            s[:Ls, k : k + Ls] = torch.ones(Ls, Ls, dtype=torch.bool).tril()
            s[Ls:, k : k + Ls] = True
            s[Ls:, k + Ls :] = tree.attend
            self._masks = self._store(key, s)
        return s

    def _causal(self, k: int) -> torch.Tensor:
        """[k, k] additive causal mask of the shared prefix."""
        key = ("c", k)
        c = self._masks.get(key)
        if c is None:
            c = torch.zeros(k, k).masked_fill_(~torch.ones(k, k, dtype=torch.bool).tril(), -math.inf)
            self._masks = self._store(key, c)
        return c.to(self.body.wte.weight.dtype)

    def _positions(self, k: int, Ls: int, tree: Tree) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Position ids: the prefix's [k], a block prompt's [Ls] (continuing the prefix) and the
        tree depths [N] (shifted per row by the prompt length)."""
        key = ("p", k, Ls, id(tree))
        p = self._masks.get(key)
        if p is None:
            p = (torch.arange(k), torch.arange(k, k + Ls), tree.depth)
            self._masks = self._store(key, p)
        return p

    def _store(self, key, value) -> dict:
        masks = self._masks if len(self._masks) < MASK_CACHE_SIZE else {}
        masks[key] = value
        return masks


def _common_prefix(ids: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> int:
    """Length of the token prefix shared by all rows, at most the shortest row minus one (every
    row keeps its last token in its own block)."""
    same = ((ids == ids[:1]) & mask).all(0)
    return min(int(same.long().cumprod(0).sum()), int(lengths.min()) - 1)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), as x·σ(2√(2/π)(x + 0.044715x³))
    (the same function; fewer passes than ``F.gelu(approximate='tanh')`` on this CPU)."""
    return x * torch.sigmoid(torch.addcmul(x, x * x, x, value=_GELU_CUBIC) * _GELU_SCALE)


def supports(model) -> bool:
    """True for a GPT-2 LM (``model_type == 'gpt2'``) without cross-attention."""
    conf = model.config
    return getattr(conf, "model_type", None) == "gpt2" and not getattr(conf, "add_cross_attention", False)
