"""NumPy inference engine for GPT-2 candidate scoring (model §5; LLM4MAC Eqs. 9–10), acting only.

The tiny default backbone makes a torch forward cost per-op overhead more than arithmetic. This
engine runs the same computation as :mod:`mfsg.language.fastlm` (shared prefix, one block per
prompt followed by its candidate tree, last layer only at the rows read out) in NumPy, with
fewer and cheaper operations: each LayerNorm's affine part and the attention scaling are folded
into the projection after them, keys are laid out transposed once per layer, softmax row sums
come from BLAS products and exponentials are unshifted when provably in range (NumPy's
reductions over a short last axis are slow). Measured: faster than ``fast`` for the small
batches of one TTI, on par for large batches (``mfsg bench policy``).

Weights: the embeddings and the projections without a LayerNorm before them are NumPy views of
the Hugging Face model's own parameters; folded weights are derived copies, rebuilt when the
model's parameter version (:func:`mfsg.language.versions.key`: optimizer steps,
``load_state_dict``, explicit :func:`~mfsg.language.versions.bump`) changes. Computation runs in
the parameters' dtype.

There is no autograd: :class:`~mfsg.language.scoring.NumpyScorer` uses this engine only when grad
is disabled (acting, evaluation) and the model applies no dropout (eval mode or zero dropout
rates); PPO's differentiable re-evaluation stays on the torch engine. Supported: GPT-2 models
without cross-attention whose activation is in :data:`ACTIVATIONS`; other backbones (T5) are
scored by the torch engines (see :mod:`mfsg.language.scoring`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special
from threadpoolctl import ThreadpoolController

from mfsg.language import fastlm, packing, versions
from mfsg.language.attention_scale import AttentionScale
from mfsg.language.positions import PositionRule

# Unshifted softmax row sums are accepted in [SUM_MIN, SUM_MAX] (see _exp_rows): no term overflows
# float32 (max 3.4e38), and terms lost to underflow (< 1.2e-38) are < 1e-18 of the row sum.
SUM_MIN = 1e-20
SUM_MAX = 1e30
_BLAS: list | None = None  # threadpoolctl's controllers of the loaded BLAS libraries
_GELU_CUBIC = 0.044715
_GELU_TANH_SCALE = math.sqrt(2.0 / math.pi)


@contextmanager
def _one_blas_thread():
    """Context running NumPy's BLAS on one thread: this engine's GEMMs are small, and threaded
    OpenBLAS on the two cores made one TTI at N = 8 five times slower (p50 15.3 against 3.0 ms,
    ``mfsg bench policy`` latency loop with BLAS left at two threads against one). Calls the
    libraries' own get/set (a few µs) instead of ``ThreadpoolController.limit`` (~25 µs, which
    rescans every library each call); the previous thread counts are restored."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController().select(user_api="blas").lib_controllers
    before = [lib.get_num_threads() for lib in _BLAS]
    for lib, n in zip(_BLAS, before, strict=True):
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(_BLAS, before, strict=True):
            if n != 1:
                lib.set_num_threads(n)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) (GPT-2's ``gelu_new``), in place on ``x``'s copy."""
    t = x * x
    t *= _GELU_CUBIC * _GELU_TANH_SCALE
    t += _GELU_TANH_SCALE
    t *= x
    np.tanh(t, out=t)
    t += 1.0
    t *= x
    t *= 0.5
    return t


def _gelu_erf(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + special.erf(x * (1.0 / math.sqrt(2.0))))


ACTIVATIONS = {
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu": _gelu_erf,
    "relu": lambda x: np.maximum(x, 0.0),
}


def supports(model) -> bool:
    """A GPT-2 LM (:func:`mfsg.language.fastlm.supports`) with an activation in :data:`ACTIVATIONS`."""
    return fastlm.supports(model) and model.config.activation_function in ACTIVATIONS


@dataclass(frozen=True)
class _Block:
    """One transformer block with each LayerNorm's gain and bias folded into the projection
    after it (``LN(x) W + b = x̂ (diag(g) W) + (β W + b)``, x̂ the normalized x) and the
    attention scaling folded into the query columns. GPT-2 ``Conv1D`` weights are [in, out]."""

    eps1: float
    w_qkv: np.ndarray
    b_qkv: np.ndarray
    w_q: np.ndarray  # w_qkv's query and key-value columns, contiguous (the last layer's products)
    w_kv: np.ndarray
    w_o: np.ndarray
    b_o: np.ndarray
    eps2: float
    w_fc: np.ndarray
    b_fc: np.ndarray
    w_p: np.ndarray
    b_p: np.ndarray


@dataclass(frozen=True)
class _Weights:
    """Embeddings (views), blocks, and the LM head [d, V] with the final LayerNorm folded in."""

    wte: np.ndarray
    wpe: np.ndarray
    blocks: tuple[_Block, ...]
    eps_f: float
    head_w: np.ndarray
    head_b: np.ndarray


def _fold(g: np.ndarray, beta: np.ndarray, w: np.ndarray, b: np.ndarray | None, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(diag(g) w, β w + b) computed in float64, returned contiguous in ``dtype``."""
    w64 = w.astype(np.float64)
    bias = beta.astype(np.float64) @ w64 + (0.0 if b is None else b.astype(np.float64))
    return np.ascontiguousarray((g.astype(np.float64)[:, None] * w64).astype(dtype)), bias.astype(dtype)


@dataclass(frozen=True)
class _Layout:
    """Per-shape constants of a call of P prompts (shared prefix ``k``, ``Ls`` block tokens, a tree
    of ``N`` nodes); body rows are, per prompt, its ``Ls`` block tokens then its ``N`` tree nodes.
    ``bias`` [Ls + N, k + Ls + N] additive (0 / -inf) over (prefix, own block, own tree) keys:
    block queries see the prefix and are causal in the block; tree queries see the prefix, the
    block and their ancestors-or-self. ``prefix_bias`` [k, k] causal. ``block_pos`` [Ls] position
    ids of block tokens, ``depth`` [N] of tree nodes, ``tree_rows`` [N] = Ls + n. For the attention
    scale: ``visible`` [Ls + N] keys each body row may attend to (before padding), ``block_visible``
    [Ls, Ls + N] 1 where a body row (column) sees a block key (row), and ``prefix_factor`` [k, 1]
    the prefix rows' factor (None for the standard scale)."""

    bias: np.ndarray
    prefix_bias: np.ndarray
    block_pos: np.ndarray
    depth: np.ndarray
    tree_rows: np.ndarray
    visible: np.ndarray
    block_visible: np.ndarray
    prefix_factor: np.ndarray | None


def _make_layout(k: int, Ls: int, tree: packing.Tree, dtype: np.dtype, scale: AttentionScale) -> _Layout:
    """The attention rules of :func:`mfsg.language.packing.layout` (one source of truth: who may
    attend to whom), rearranged per prompt: block rows see the prefix and their causal block, never
    the tree; tree rows are the packed layout's read-out rows of the tree nodes."""
    N = tree.size
    packed = packing.layout(1, k, Ls, tree, torch.float64)
    bias = np.full((Ls + N, k + Ls + N), -np.inf)
    bias[:Ls, : k + Ls] = packed.prompt[0].numpy()
    bias[Ls:] = packed.read[1:].numpy()
    prefix_bias = packed.prefix[0].numpy().astype(dtype)
    seen = bias == 0
    return _Layout(
        bias.astype(dtype),
        prefix_bias,
        np.arange(k, k + Ls),
        tree.depth.numpy().copy(),
        np.arange(Ls, Ls + N),
        seen.sum(-1),
        np.ascontiguousarray(seen[:, k : k + Ls].T.astype(dtype)),
        scale.numpy_factor(prefix_bias, dtype),
    )


def _np_readout(cands, tree: packing.Tree, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mfsg.language.packing.readout` as NumPy arrays (flat index, row, position mask)."""
    r = packing.readout(tree, cands.ids, cands.length, vocab)
    return r.flat.numpy(), r.row.numpy(), r.mask.numpy()


def _normalize(x: np.ndarray, eps: float) -> np.ndarray:
    """(x − mean) / √(var + eps) over the last axis of a 2-D array (LayerNorm without its affine
    part, which is folded into the next projection). Row reductions run as BLAS products: NumPy's
    reductions over a short last axis cost ~0.1 µs per row."""
    d = x.shape[-1]
    xc = x - (x @ np.full(d, 1.0 / d, dtype=x.dtype))[:, None]
    inv = np.einsum("ij,ij->i", xc, xc)
    inv *= 1.0 / d
    inv += eps
    np.sqrt(inv, out=inv)
    np.reciprocal(inv, out=inv)
    xc *= inv[:, None]
    return xc


def _exp_rows(s: np.ndarray, recompute) -> tuple[np.ndarray, np.ndarray]:
    """(exp(s), row sums) for a softmax over the last axis, in place on ``s``.

    Softmax is shift-invariant, and the usual per-row max shift is a slow short-axis reduction
    in NumPy, so the exponentials are taken unshifted and the row sums come from a product with
    a ones vector. If a row sum leaves [:data:`SUM_MIN`, :data:`SUM_MAX`] (overflow, or a row whose
    terms all underflow), ``recompute()`` gives ``s`` again and the shifted form is used."""
    with np.errstate(over="ignore", under="ignore"):  # out-of-range sums are detected below
        np.exp(s, out=s)
    ones = np.ones(s.shape[-1], dtype=s.dtype)
    r = s @ ones
    if not (r.min() >= SUM_MIN and r.max() <= SUM_MAX):  # also false on NaN
        s = recompute()
        s -= s.max(-1, keepdims=True)
        np.exp(s, out=s)
        r = s @ ones
    return s, r


def _attend(q: np.ndarray, keys: tuple, bias: np.ndarray, f: np.ndarray | None) -> np.ndarray:
    """softmax(q kᵀ · f + bias) v over the last two axes, the keys given in two parts: ``keys`` =
    (kᵀ, v of a prefix shared by every batch entry ([H, dh, k], [H, k, dh]; None, None without
    one), kᵀ, v of each entry's own keys) — the shared part is never copied per entry. ``q`` is
    already scaled, ``bias`` 0 / -inf over (prefix, own) keys, ``f`` the per-row factor of the
    attention scale (None for 1)."""
    kt_pre, v_pre, kt, v = keys
    k = 0 if kt_pre is None else kt_pre.shape[-1]

    def scores():
        s = np.empty((*q.shape[:-1], k + kt.shape[-1]), dtype=q.dtype)
        if k:
            np.matmul(q, kt_pre, out=s[..., :k])
        np.matmul(q, kt, out=s[..., k:])
        if f is not None:
            s *= f
        s += bias
        return s

    e, r = _exp_rows(scores(), scores)
    o = e[..., k:] @ v
    if k:
        o += e[..., :k] @ v_pre
    o /= r[..., None]
    return o


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """log Σ exp over the last axis, unshifted when the sums are in range (as :func:`_exp_rows`)."""
    ones = np.ones(x.shape[-1], dtype=x.dtype)
    with np.errstate(over="ignore", under="ignore"):
        r = np.exp(x) @ ones
    if r.min() >= SUM_MIN and r.max() <= SUM_MAX:
        return np.log(r)
    m = x.max(-1, keepdims=True)
    return np.log(np.exp(x - m) @ ones) + m[..., 0]


class NumpyGPT2:
    """Candidate scores of a Hugging Face GPT-2 model computed in NumPy from its current parameters."""

    def __init__(self, model):
        if not supports(model):
            raise ValueError(
                f"NumpyGPT2 supports GPT-2 models without cross-attention and with an activation in "
                f"{', '.join(ACTIVATIONS)}, got {type(model).__name__}"
            )
        self.model = model
        conf = model.config
        self.n_heads = conf.n_head
        self.head_dim = conf.n_embd // conf.n_head
        self.act = ACTIVATIONS[conf.activation_function]
        self._key: tuple | None = None
        self._w: _Weights | None = None
        self.consts = packing.Constants()
        self.positions = PositionRule.of(model)
        self.scale = AttentionScale.of(model)

    def applies(self) -> bool:
        """True when acting through this engine equals the torch forward: no dropout is active."""
        m, c = self.model, self.model.config
        return not m.training or not (c.embd_pdrop or c.attn_pdrop or c.resid_pdrop)

    # ------------------------------------------------------------------ weights
    def tensors(self) -> list[torch.Tensor]:
        """The model's parameters in a fixed order, looked up when the weights are rebuilt
        (modules may have been replaced)."""
        model = self.model
        body = model.base_model
        out = [body.wte.weight, body.wpe.weight]
        for blk in body.h:
            for mod in (blk.ln_1, blk.attn.c_attn, blk.attn.c_proj, blk.ln_2, blk.mlp.c_fc, blk.mlp.c_proj):
                out += (mod.weight, mod.bias)
        head = model.get_output_embeddings()
        out += (body.ln_f.weight, body.ln_f.bias, head.weight)
        if getattr(head, "bias", None) is not None:
            out.append(head.bias)
        return out

    def weights(self) -> _Weights:
        """The derived weights of the current parameters, rebuilt when the model's parameter
        version (:func:`mfsg.language.versions.key`) changed."""
        key = versions.key(self.model)
        if key != self._key or self._w is None:
            self._w = self._build(self.tensors())
            self._key = key
        return self._w

    def _build(self, ts: list[torch.Tensor]) -> _Weights:
        a = [t.detach().numpy() for t in ts]
        body = self.model.base_model
        dt = a[0].dtype
        d = a[0].shape[1]
        blocks = []
        for i, blk in enumerate(body.h):
            g1, b1, w_qkv, b_qkv, w_o, b_o, g2, b2, w_fc, b_fc, w_p, b_p = a[2 + 12 * i : 14 + 12 * i]
            w_qkv, b_qkv = _fold(g1, b1, w_qkv, b_qkv, dt)
            w_qkv[:, :d] *= blk.attn.scaling
            b_qkv[:d] *= blk.attn.scaling
            w_fc, b_fc = _fold(g2, b2, w_fc, b_fc, dt)
            w_q, w_kv = np.ascontiguousarray(w_qkv[:, :d]), np.ascontiguousarray(w_qkv[:, d:])
            blocks.append(_Block(blk.ln_1.eps, w_qkv, b_qkv, w_q, w_kv, w_o, b_o, blk.ln_2.eps, w_fc, b_fc, w_p, b_p))
        j = 2 + 12 * len(blocks)
        head_w, head_b = _fold(a[j], a[j + 1], a[j + 2].T, a[j + 3] if len(a) > j + 3 else None, dt)
        return _Weights(a[0], a[1], tuple(blocks), body.ln_f.eps, head_w, head_b)

    # ------------------------------------------------------------------ public
    def scores(self, ids: torch.Tensor, mask: torch.Tensor, cands) -> torch.Tensor:
        """[P, C] Σ_j log P(w_j | s, w_<j) (LLM4MAC Eq. 9); equals
        :meth:`mfsg.language.fastlm.FastGPT2.scores` (``logit - logsumexp`` at each candidate token)."""
        tree = self.consts.tree(cands)
        logits = self.logits(ids, mask, tree)  # [P, 1 + N, V]
        P, R, V = logits.shape
        flat_idx, row_idx, pos_mask = self.consts.get(("np-r", id(tree), V), lambda: _np_readout(cands, tree, V))
        lse = _logsumexp(logits)  # [P, 1 + N]
        tok = logits.reshape(P, R * V)[:, flat_idx] - lse[:, row_idx]
        return torch.from_numpy((tok.reshape(P, *pos_mask.shape) * pos_mask).sum(-1))

    def logprobs(self, ids: torch.Tensor, mask: torch.Tensor, cands) -> torch.Tensor:
        """[P, C, L, V] next-token log-softmax along every candidate (as ``FastGPT2.logprobs``)."""
        tree = self.consts.tree(cands)
        logits = self.logits(ids, mask, tree)
        logits -= _logsumexp(logits)[..., None]
        return torch.from_numpy(logits[:, tree.index.numpy()])

    def prompt_logprobs(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[P, V] log P(first token | prompt): the prompt pass alone (as ``FastGPT2.prompt_logprobs``)."""
        tree = self.consts.get(("chain", 0), lambda: packing.chain(0))
        logits = self.logits(ids, mask, tree)[:, 0]
        logits -= _logsumexp(logits)[:, None]
        return torch.from_numpy(logits)

    def logits(self, ids: torch.Tensor, mask: torch.Tensor, tree: packing.Tree) -> np.ndarray:
        """[P, 1 + N, V] LM-head logits at each prompt's last token and at every tree node, with
        one BLAS thread (see :func:`_one_blas_thread`)."""
        with _one_blas_thread():
            return self._logits(ids, mask, tree)

    def _logits(self, ids: torch.Tensor, mask: torch.Tensor, tree: packing.Tree) -> np.ndarray:
        w = self.weights()
        ids_np, mask_np = ids.numpy(), mask.numpy().astype(bool, copy=False)
        P, Lp = ids_np.shape
        lengths = mask_np.sum(1)
        rule = self.positions
        ppos = None if rule.absolute else rule.numpy(ids_np, mask_np)
        k = packing.common_prefix(ids_np, mask_np, lengths, ppos) if P > 1 else 0
        Ls, N = Lp - k, tree.size
        dtype = w.wte.dtype
        lay = self._layout(k, Ls, tree, dtype)
        R = Ls + N
        tok = np.empty((P, R), dtype=np.int64)
        tok[:, :Ls] = ids_np[:, k:]
        pos = np.empty((P, R), dtype=np.int64)
        pos[:, :Ls] = lay.block_pos if ppos is None else ppos[:, k:]
        if N:
            tok[:, Ls:] = tree.tokens.numpy()
            start = lengths if ppos is None else rule.next_position(ppos, lengths)
            pos[:, Ls:] = start[:, None] + lay.depth
        x = w.wte[tok.reshape(-1)]
        x += w.wpe[pos.reshape(-1)]
        if k:
            xk = w.wte[ids_np[0, :k]]
            xk += w.wpe[:k] if ppos is None else w.wpe[ppos[0, :k]]
            x = np.concatenate([xk, x])
        pad = ~mask_np[:, k:]  # [P, Ls] padded block keys
        padded = bool(pad.any())
        if padded:
            keys = np.zeros((P, k + R), dtype=dtype)
            keys[:, k : k + Ls][pad] = -np.inf
            bias = lay.bias + keys[:, None, :]  # [P, R, k + R]
        else:
            bias = np.broadcast_to(lay.bias, (P, R, k + R))
        sel = np.empty((P, 1 + N), dtype=np.int64)
        sel[:, 0] = lengths - k - 1
        sel[:, 1:] = lay.tree_rows
        rows = (sel + (np.arange(P) * R + k)[:, None]).reshape(-1)
        fac = (self._body_factor(lay, pad if padded else None, P, dtype), lay.prefix_factor)
        last = len(w.blocks) - 1
        for i, b in enumerate(w.blocks):
            y = _normalize(x, b.eps1)
            if i == last:
                x = self._last_attention(x, y, b, k, P, R, sel, rows, bias, fac[0])
            else:
                x += self._attention(y, b, k, P, R, lay, bias, fac)
            h = _normalize(x, b.eps2) @ b.w_fc
            h += b.b_fc
            out = self.act(h) @ b.w_p
            out += b.b_p
            x += out
        logits = _normalize(x, w.eps_f) @ w.head_w
        logits += w.head_b
        return logits.reshape(P, 1 + N, -1)

    # ------------------------------------------------------------------ attention
    def _body_factor(self, lay: _Layout, pad: np.ndarray | None, P: int, dtype) -> np.ndarray | None:
        """[P, R, 1] attention-scale factor of every body row (:mod:`mfsg.language.attention_scale`,
        the same in every layer; None for the standard scale): the visible-key counts of the
        layout minus the padded block keys each row would see (``pad`` [P, Ls], None: none);
        equals ``AttentionScale.numpy_factor`` of the row's full bias."""
        if self.scale.standard:
            return None
        n = lay.visible if pad is None else lay.visible - pad.astype(dtype) @ lay.block_visible  # [P, R]
        f = self.scale.numpy_factor_of_counts(n, dtype)[..., None]
        return np.broadcast_to(f, (P, *f.shape[-2:]))

    def _split_kv(self, kv: np.ndarray, k: int, P: int, R: int) -> tuple:
        """The keys of :func:`_attend` from the packed key-value projection ``kv`` [k + P R, 2d],
        contiguous: a prefix longer than a prompt's own rows (k > R) is kept apart (kᵀ [H, dh, k],
        v [H, k, dh]) from every prompt's own (block, tree) kᵀ [P, H, dh, R] and v [P, H, R, dh];
        a shorter one is copied into every prompt's keys (kᵀ [P, H, dh, k + R], v [P, H, k + R, dh]):
        products over strided score slices cost more than the copy then (``mfsg bench policy``:
        the BS prompts at N = 8 share k = 58 tokens with R = 16 own rows, the UE prompts k ≤ 1)."""
        H, dh = self.n_heads, self.head_dim
        body = kv[k:].reshape(P, R, 2, H, dh)
        kt, v = body[:, :, 0].transpose(0, 2, 3, 1), body[:, :, 1].transpose(0, 2, 1, 3)
        if not k:
            return None, None, np.ascontiguousarray(kt), np.ascontiguousarray(v)
        pre = kv[:k].reshape(k, 2, H, dh)
        kt_pre, v_pre = pre[:, 0].transpose(1, 2, 0), pre[:, 1].transpose(1, 0, 2)
        if k > R:
            return (np.ascontiguousarray(kt_pre), np.ascontiguousarray(v_pre),
                    np.ascontiguousarray(kt), np.ascontiguousarray(v))
        kt_pre, v_pre = np.broadcast_to(kt_pre, (P, H, dh, k)), np.broadcast_to(v_pre, (P, H, k, dh))
        return None, None, np.concatenate([kt_pre, kt], axis=3), np.concatenate([v_pre, v], axis=2)

    def _attention(self, y, b: _Block, k: int, P: int, R: int, lay: _Layout, bias, fac) -> np.ndarray:
        """Attention output (after c_proj) [k + P * R, d] of every row (a non-last layer); ``fac``:
        the scale factors of the body rows [P, R, 1] and of the prefix rows [k, 1] (None: 1)."""
        H, dh = self.n_heads, self.head_dim
        d = H * dh
        qkv = y @ b.w_qkv
        qkv += b.b_qkv
        keys = self._split_kv(qkv[:, d:], k, P, R)
        q = np.ascontiguousarray(qkv[k:, :d].reshape(P, R, H, dh).transpose(0, 2, 1, 3))
        f_body, f_prefix = fac
        o = _attend(q, keys, bias[:, None], None if f_body is None else f_body[:, None])
        o = o.transpose(0, 2, 1, 3).reshape(P * R, d)
        if k:
            qp, kp, vp = qkv[:k].reshape(k, 3, H, dh).transpose(1, 2, 0, 3)  # [H, k, dh]
            op = _attend(qp, (None, None, kp.transpose(0, 2, 1), vp), lay.prefix_bias, f_prefix)
            o = np.concatenate([op.transpose(1, 0, 2).reshape(k, d), o])
        out = o @ b.w_o
        out += b.b_o
        return out

    def _last_attention(self, x, y, b: _Block, k: int, P: int, R: int, sel, rows, bias, f_body) -> np.ndarray:
        """Residual stream after the last layer's attention, only at the rows read out [P * (1 + N), d]:
        keys and values everywhere, queries at ``rows`` (``f_body``: the body rows' scale factors)."""
        H, dh = self.n_heads, self.head_dim
        d = H * dh
        kvp = y @ b.w_kv
        kvp += b.b_qkv[d:]
        keys = self._split_kv(kvp, k, P, R)
        n = sel.shape[1]
        q = y[rows] @ b.w_q
        q += b.b_qkv[:d]
        q = np.ascontiguousarray(q.reshape(P, n, H, dh).transpose(0, 2, 1, 3))
        at = (np.arange(P)[:, None], sel)
        read = bias[at][:, None]  # [P, 1, 1 + N, k + R]
        o = _attend(q, keys, read, None if f_body is None else f_body[at][:, None])
        o = o.transpose(0, 2, 1, 3).reshape(P * n, d)
        out = o @ b.w_o
        out += b.b_o
        out += x[rows]
        return out

    # ------------------------------------------------------------------ cached constants
    def _layout(self, k: int, Ls: int, tree: packing.Tree, dtype) -> _Layout:
        return self.consts.get(("np-l", k, Ls, id(tree), np.dtype(dtype)),
                               lambda: _make_layout(k, Ls, tree, dtype, self.scale))
