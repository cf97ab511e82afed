"""Fast candidate scoring for GPT-2 backbones (model §5; LLM4MAC Eqs. 9–10).

A minimal pure-torch GPT-2 forward (token + position embeddings, pre-LN blocks with causal
attention written as batched matmuls + additive mask + softmax, the model's activation, final
LN, the LM head) that reads the weights *of the Hugging Face model itself* at every call: the
same ``nn.Parameter`` objects, no copies, so gradients reach the HF model and PPO, imitation and
checkpoints are unchanged.

All candidates of a prompt are scored in ONE forward pass: the prompt is followed by the
candidate *tree* (the distinct prefixes of the candidates' input tokens, each prefix one packed
token). A tree token attends to the (unpadded) prompt and to its own ancestors only; its
position id continues the prompt (``prompt length + depth`` under absolute positions; see
:mod:`mfsg.language.positions` for the model's rule). A causal model's hidden state at a
token depends only on the tokens it attends to, so this equals running every prompt + candidate
separately (and the prompt is encoded once, with no KV-cache bookkeeping). Next-token
distributions are ``log_softmax`` over the vocabulary, never raw logits (flowersteam/lamorel
issue #37). Prompts are right-padded (``mask`` a prefix of ones per row).

Block layout (why scoring costs little more than the prompt pass): the packed sequence is
``[shared prefix | P prompt blocks | P trees]``. Prompt tokens never attend to tree tokens, so
prompt queries use the causal prompt-only attention of the plain prompt pass (a constant mask,
no per-row work), and only tree queries attend over prompt + tree keys; the last layer computes
queries, attention and MLP only at the rows read out. Every structural mask is a cached additive
bias per shape; the only per-call mask is each row's key padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mfsg.language.attention_scale import AttentionScale
from mfsg.language.packing import Constants, PackedLayout, Tree, chain, common_prefix, layout
from mfsg.language.positions import PositionRule

_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")
_GELU_CUBIC = 0.044715
_GELU_SCALE = 2.0 * math.sqrt(2.0 / math.pi)


class FastGPT2:
    """Packed-tree scoring with the parameters of a Hugging Face GPT-2 model (read per call).

    Works with and without grad (same code); call under ``torch.no_grad()`` or
    ``torch.inference_mode()`` for acting. Dropout is applied where GPT-2 applies it when the
    model is in training mode."""

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
        self.consts = Constants()
        self._chains: dict[tuple[int, torch.device], Tree] = {}
        self.positions = PositionRule.of(model)
        self.scale = AttentionScale.of(model)

    # ------------------------------------------------------------------ public
    def logprobs(self, ids: torch.Tensor, mask: torch.Tensor, cands) -> torch.Tensor:
        """[P, C, L, V] next-token log-softmax along every candidate (``cands``: a
        :class:`~mfsg.language.scoring.Candidates`), all candidates of all prompts in one pass.
        Positions after a candidate's eos repeat the eos position (see :func:`mfsg.language.packing.candidate_tree`)."""
        tree = self.consts.tree(cands, ids.device)
        out = self.packed(ids, mask, tree, tree.tokens.expand(ids.shape[0], -1))
        return out[:, tree.index]

    def scores(self, ids: torch.Tensor, mask: torch.Tensor, cands) -> torch.Tensor:
        """[P, C] Σ_j log P(w_j | s, w_<j) of every candidate (LLM4MAC Eq. 9), equal to
        ``sequence_logprob(self.logprobs(...))`` but read straight from the packed logits
        (``logit - logsumexp`` at each candidate token), without the [P, C, L, V] table."""
        tree = self.consts.tree(cands, ids.device)
        P = ids.shape[0]
        logits = self.logits(ids, mask, tree, tree.tokens.expand(P, -1))  # [P, 1 + N, V]
        r = self.consts.readout(cands, tree, logits.shape[-1], ids.device)
        tok = logits.reshape(P, -1).index_select(1, r.flat) - torch.logsumexp(logits, -1).index_select(1, r.row)
        return tok.view(P, *r.mask.shape).mul(r.mask).sum(-1)

    def logprobs_rows(self, ids: torch.Tensor, mask: torch.Tensor, toks: torch.Tensor) -> torch.Tensor:
        """[P, L, V] next-token log-softmax along one token sequence per prompt (``toks`` [P, L])."""
        n = toks.shape[1] - 1
        tree = self._chains.get((n, ids.device))
        if tree is None:
            with torch.inference_mode(False), torch.device(ids.device):
                tree = self._chains[(n, ids.device)] = chain(n)
        return self.packed(ids, mask, tree, toks[:, :n])

    def prompt_logprobs(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[P, V] log P(first token | prompt): one prompt forward pass (the cost reference)."""
        return self.logprobs_rows(ids, mask, ids[:, :1])[:, 0]

    def packed(self, ids: torch.Tensor, mask: torch.Tensor, tree: Tree, node_tokens: torch.Tensor) -> torch.Tensor:
        """[P, 1 + N, V] log-softmax at each prompt's last token and at every tree node."""
        return F.log_softmax(self.logits(ids, mask, tree, node_tokens), dim=-1)

    def logits(self, ids: torch.Tensor, mask: torch.Tensor, tree: Tree, node_tokens: torch.Tensor) -> torch.Tensor:
        """[P, 1 + N, V] LM-head logits at each prompt's last token and at every tree node.

        The longest prefix common to all prompts (at most the shortest prompt minus one token) is
        encoded once, as a segment every block attends to; then the P prompt blocks (the rest of
        each prompt, padded) and the P trees (``node_tokens`` [P, N])."""
        mask = mask.bool()
        P, Lp = ids.shape
        lengths = mask.sum(1)
        ppos = None if self.positions.absolute else self.positions(ids, mask)
        k = common_prefix(ids, mask, lengths, ppos) if P > 1 else 0
        Ls, N = Lp - k, tree.size
        head = self.model.get_output_embeddings()  # looked up per call: it may be replaced
        lay = self._layout(P, k, Ls, tree, head.weight.dtype)
        tokens = [ids[0, :k], ids[:, k:].reshape(-1)] if k else [ids.reshape(-1)]
        if ppos is None:
            pos, start = lay.pos, lengths
        else:
            pos, start = torch.cat([ppos[0, :k], ppos[:, k:].reshape(-1)]), self.positions.next_position(ppos, lengths)
        if N:
            tokens.append(node_tokens.reshape(-1))
            pos = torch.cat([pos, (start[:, None] + lay.depth).reshape(-1)])
        tokens = torch.cat(tokens) if len(tokens) > 1 else tokens[0]
        # each row's own key padding, on its block's prompt keys (prefix and tree keys are real)
        keys = F.pad(mask[:, k:], (k, N), value=True)
        read = lay.read.masked_fill(~keys[:, None], -math.inf)
        fac = self._factors(lay, read)
        read = read[:, None].expand(P, self.n_heads, 1 + N, k + Ls + N).reshape(P * self.n_heads, 1 + N, -1)
        rows = torch.cat([(lay.start + lengths)[:, None], lay.tree_rows], dim=1).reshape(-1)
        h = self._encode(tokens, pos, k, P, Ls, N, lay, read, rows, fac)  # [P * (1 + N), d]
        b = self.body.ln_f
        h = F.layer_norm(h, b.normalized_shape, b.weight, b.bias, b.eps)
        return F.linear(h, head.weight, head.bias).view(P, 1 + N, -1)

    # ------------------------------------------------------------------ forward
    def _factors(self, lay: PackedLayout, read: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """The attention-scale factors (:mod:`mfsg.language.attention_scale`) of the prefix, prompt
        and read-out rows (``read`` [P, 1 + N, keys] before its expansion over heads), computed once
        per forward: every layer has the same biases. None for the standard scale."""
        if self.scale.standard:
            return None
        P, n = read.shape[:2]
        f_read = self.scale.torch_factor(read)[:, None].expand(P, self.n_heads, n, 1).reshape(P * self.n_heads, n, 1)
        return {"prefix": self.scale.torch_factor(lay.prefix), "prompt": self.scale.torch_factor(lay.prompt),
                "read": f_read}

    def _encode(self, tokens, pos, k: int, P: int, Ls: int, N: int, lay: PackedLayout, read, rows, fac) -> torch.Tensor:
        """Hidden states (before the final LN) at ``rows`` of the packed sequence: [P * (1 + N), d].

        Prefix queries are causal among themselves; prompt queries attend to the prefix and
        causally to their block; tree queries (bias ``read[:, 1:]``) to the prefix, their block's
        prompt and their ancestors. The last layer computes queries and the MLP only at ``rows``.
        ``fac``: :meth:`_factors` (None: the standard scale)."""
        body, training = self.body, self.model.training
        H, dh = self.n_heads, self.head_dim
        d = H * dh
        x = F.embedding(tokens, body.wte.weight) + F.embedding(pos, body.wpe.weight)
        if training and self.p_embd:
            x = F.dropout(x, self.p_embd, True)
        last = len(body.h) - 1
        for i, blk in enumerate(body.h):
            a, m = blk.attn, blk.mlp
            y = F.layer_norm(x, blk.ln_1.normalized_shape, blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
            w, bias = a.c_attn.weight, a.c_attn.bias
            if i == last:  # keys and values everywhere, queries only at the rows read out
                kv = torch.addmm(bias[d:], y, w[:, d:])
                q = torch.addmm(bias[:d], y.index_select(0, rows), w[:, :d])
                keys, values = self._keys(kv, 0, k, P, Ls, N)
                q = q.view(P, 1 + N, H, dh).transpose(1, 2).reshape(P * H, 1 + N, dh)
                o = self._attend(q, keys, read, fac and fac["read"], a.scaling, training).bmm(values)
                o = o.view(P, H, 1 + N, dh).transpose(1, 2).reshape(P * (1 + N), d)
                x = x.index_select(0, rows)
            else:
                qkv = torch.addmm(bias, y, w)
                keys, values = self._keys(qkv, d, k, P, Ls, N)
                o = self._layer_attention(qkv, keys, values, k, P, Ls, N, lay, read, fac, a.scaling, training)
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

    def _keys(self, proj, off: int, k: int, P: int, Ls: int, N: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [P * H, k + Ls + N, dh] of every block (prefix, its prompt, its tree)
        from the packed projection ``proj`` whose key columns start at ``off``."""
        H, dh = self.n_heads, self.head_dim
        kv = proj[:, off:].view(-1, 2, H, dh)
        parts = [kv[k : k + P * Ls].view(P, Ls, 2, H, dh).permute(2, 0, 3, 1, 4)]
        if k:
            parts.insert(0, kv[:k].permute(1, 2, 0, 3)[:, None].expand(2, P, H, k, dh))
        if N:
            parts.append(kv[k + P * Ls :].view(P, N, 2, H, dh).permute(2, 0, 3, 1, 4))
        both = torch.cat(parts, dim=3).reshape(2, P * H, k + Ls + N, dh)
        return both[0], both[1]

    def _layer_attention(self, qkv, keys, values, k, P, Ls, N, lay, read, fac, scaling, training) -> torch.Tensor:
        """Attention outputs [k + P * (Ls + N), d] of every packed token (a non-last layer)."""
        H, dh = self.n_heads, self.head_dim
        d = H * dh
        q = qkv[:, :d]
        out = []
        if k:
            qp, kp, vp = qkv[:k].view(k, 3, H, dh).permute(1, 2, 0, 3)  # [H, k, dh]
            o = self._attend(qp, kp, lay.prefix, fac and fac["prefix"], scaling, training).bmm(vp)
            out.append(o.transpose(0, 1).reshape(k, d))
        qs = q[k : k + P * Ls].view(P, Ls, H, dh).transpose(1, 2).reshape(P * H, Ls, dh)
        o = self._attend(qs, keys[:, : k + Ls], lay.prompt, fac and fac["prompt"], scaling, training)
        o = o.bmm(values[:, : k + Ls])
        out.append(o.view(P, H, Ls, dh).transpose(1, 2).reshape(P * Ls, d))
        if N:
            qt = q[k + P * Ls :].view(P, N, H, dh).transpose(1, 2).reshape(P * H, N, dh)
            o = self._attend(qt, keys, read[:, 1:], fac and fac["read"][:, 1:], scaling, training).bmm(values)
            out.append(o.view(P, H, N, dh).transpose(1, 2).reshape(P * N, d))
        return torch.cat(out) if len(out) > 1 else out[0]

    def _attend(self, q, k, bias, f, scaling: float, training: bool) -> torch.Tensor:
        """Attention weights softmax(q kᵀ · scaling · f + bias) (batched 3-D; dropout when training),
        ``f`` the per-row attention-scale factor (None: 1)."""
        w = torch.softmax(torch.baddbmm(bias, q if f is None else q * f, k.transpose(-1, -2), alpha=scaling), dim=-1)
        if training and self.p_attn:
            w = F.dropout(w, self.p_attn, True)
        return w

    # ------------------------------------------------------------------ cached constants
    def _layout(self, P: int, k: int, Ls: int, tree: Tree, dtype: torch.dtype) -> PackedLayout:
        dev = self.model.get_output_embeddings().weight.device
        return self.consts.get(("l", P, k, Ls, id(tree), dtype, dev), lambda: layout(P, k, Ls, tree, dtype), dev)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), as x·σ(2√(2/π)(x + 0.044715x³))
    (the same function; fewer passes than ``F.gelu(approximate='tanh')`` on this CPU)."""
    return x * torch.sigmoid(torch.addcmul(x, x * x, x, value=_GELU_CUBIC) * _GELU_SCALE)


def supports(model) -> bool:
    """True for a GPT-2 LM (``model_type == 'gpt2'``) without cross-attention."""
    conf = model.config
    return getattr(conf, "model_type", None) == "gpt2" and not getattr(conf, "add_cross_attention", False)
