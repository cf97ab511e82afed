"""Packed-tree layout shared by the packed scoring engines (model §5; LLM4MAC Eq. 9).

All candidates of a prompt are scored in one forward pass: the prompt is followed by the candidate
*tree* (the distinct prefixes of the candidates' input tokens, each prefix one packed token). A tree
token attends to the (unpadded) prompt and to its own ancestors only. This module holds what the
torch engine (:mod:`mfsg.language.fastlm`) and the NumPy engine (:mod:`mfsg.language.npengine`)
share: the tree, where scores are read from, who may attend to whom (:func:`layout`, one source of
truth) and bounded caches of these per-shape constants.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

# Bounded caches of per-shape constant tensors (structural masks, candidate trees).
MASK_CACHE_SIZE = 256
TREE_CACHE_SIZE = 16


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


@dataclass(frozen=True)
class Readout:
    """Where candidate scores are read from the flattened [1 + N, V] output of one prompt:
    ``flat`` [C * L] = row * V + token of each (candidate, position), ``row`` [C * L] its row and
    ``mask`` [C, L] the positions that are real tokens (eos included)."""

    flat: torch.Tensor
    row: torch.Tensor
    mask: torch.Tensor


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


def readout(tree: Tree, ids: torch.Tensor, length: torch.Tensor, vocab: int) -> Readout:
    """The :class:`Readout` of candidates ``ids`` [C, L] (``length`` [C]) scored with ``tree``."""
    mask = torch.arange(ids.shape[1]) < length[:, None]
    row = tree.index.reshape(-1)
    return Readout(row * vocab + ids.reshape(-1), row, mask)


@dataclass(frozen=True)
class PackedLayout:
    """Per-shape constants of a packed call of P prompts (shared prefix ``k``, ``Ls`` block prompt
    tokens, a tree of ``N`` nodes): ``pos`` [k + P * Ls] position ids of the prefix and the prompt
    blocks, ``depth`` [N] of the tree nodes, ``start`` [P] packed index of each block minus one,
    ``tree_rows`` [P, N] packed index of each tree node, and additive biases (0 = may attend,
    -inf = may not): ``prefix`` [1, k, k] causal, ``prompt`` [1, Ls, k + Ls] (every block token sees
    the prefix and is causal in its block) and ``read`` [1 + N, k + Ls + N] for the rows read out in
    the last layer: the prompt's last token (prompt keys only; its own padding is removed per row)
    then each tree node (prompt keys and its ancestors-or-self). ``read[1:]`` is also the tree
    queries' bias in the other layers."""

    pos: torch.Tensor
    depth: torch.Tensor
    start: torch.Tensor
    tree_rows: torch.Tensor
    prefix: torch.Tensor
    prompt: torch.Tensor
    read: torch.Tensor


def layout(P: int, k: int, Ls: int, tree: Tree, dtype: torch.dtype) -> PackedLayout:
    """The :class:`PackedLayout` of P prompts (shared prefix ``k``, ``Ls`` block tokens) followed by their trees."""
    N = tree.size
    neg = -math.inf
    causal = torch.ones(Ls, Ls, dtype=torch.bool).tril()
    prompt = torch.zeros(Ls, k + Ls, dtype=dtype)
    prompt[:, k:].masked_fill_(~causal, neg)
    read = torch.zeros(1 + N, k + Ls + N, dtype=dtype)
    read[0, k + Ls :] = neg
    read[1:, k + Ls :].masked_fill_(~tree.attend, neg)
    prefix = torch.zeros(k, k, dtype=dtype).masked_fill_(~torch.ones(k, k, dtype=torch.bool).tril(), neg)
    pos = torch.cat([torch.arange(k), torch.arange(k, k + Ls).repeat(P)])
    start = torch.arange(0, P * Ls, Ls) - 1
    tree_rows = torch.arange(k + P * Ls, k + P * (Ls + N)).view(P, N)
    return PackedLayout(pos, tree.depth, start, tree_rows, prefix[None], prompt[None], read)


class Constants:
    """Bounded caches of per-shape constants: candidate trees (keyed by the candidate set) and
    anything derived from a tree (layouts, readouts), cleared together with the trees so that a
    tree's ``id`` in a key always names a live tree. Built outside inference mode, so cached
    tensors stay usable under autograd."""

    def __init__(self):
        self._trees: dict[int, tuple[object, Tree]] = {}
        self._masks: dict[tuple, object] = {}

    def tree(self, cands, device: torch.device | None = None) -> Tree:
        """The candidate tree of ``cands``, its tensors on ``device`` (None: the default device)."""
        hit = self._trees.get((id(cands), device))
        if hit is not None and hit[0] is cands:
            return hit[1]
        if len(self._trees) >= TREE_CACHE_SIZE:
            self._trees.clear()
            self._masks.clear()  # keyed by tree identity
        with torch.inference_mode(False), _on(device):
            tree = candidate_tree(cands.ids, cands.length)
        self._trees[(id(cands), device)] = (cands, tree)
        return tree

    def readout(self, cands, tree: Tree, vocab: int, device: torch.device | None = None) -> Readout:
        return self.get(("r", id(tree), vocab, device),
                        lambda: readout(tree, cands.ids.to(device), cands.length.to(device), vocab), device)

    def get(self, key, make, device: torch.device | None = None):
        """The cached value of ``key``, made by ``make()`` on a miss with ``device`` (when given) as the default
        device of the tensors it creates (the key names the device)."""
        value = self._masks.get(key)
        if value is None:
            if len(self._masks) >= MASK_CACHE_SIZE:
                self._masks = {}
            with torch.inference_mode(False), _on(device):  # cached constants must stay usable under autograd
                value = self._masks[key] = make()
        return value


def _on(device: torch.device | None):
    """``device`` as the default device of the tensors created in the block (nothing for None)."""
    return contextlib.nullcontext() if device is None else torch.device(device)


def common_prefix(ids, mask, lengths, pos=None) -> int:
    """Length of the token prefix shared by all rows (tokens and, when given, position ids
    ``pos``), at most the shortest row minus one (every row keeps its last token in its own
    block). Arrays or tensors (read as NumPy, no grad)."""
    ids, mask, lengths = (np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x) for x in (ids, mask, lengths))
    same = (ids == ids[:1]) & mask
    if pos is not None:
        pos = np.asarray(pos.cpu() if isinstance(pos, torch.Tensor) else pos)
        same &= pos == pos[:1]
    same = same.all(0)
    run = int(same.argmin()) if not same.all() else same.shape[0]
    return min(run, int(lengths.min()) - 1)
