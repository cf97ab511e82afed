"""Consensus policy fusion (LLM4MAC Eq. 11), an option of the language policies (model §5).

``π_llm = (1/Z) Σ_e exp(−ε·KL(π_e ‖ π_avg)) · π_e`` with ``π_avg = mean_e π_e`` and Z the sum of
the consensus factors. The agents ``e`` fused together are the decisions of one group (one
player's decisions in one episode and TTI), whose distributions live on the same candidate
table. Each agent then acts from the fused distribution restricted to its own valid candidates
(so PAG's guarantee is kept) — see :func:`restrict`.
"""

from __future__ import annotations

import torch


def _group_mean(x: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    tot = torch.zeros(n_groups, *x.shape[1:], dtype=x.dtype, device=x.device).index_add(0, group, x)
    cnt = torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add(0, group, torch.ones_like(group, dtype=x.dtype))
    return tot / cnt.view(-1, *([1] * (x.dim() - 1)))


def consensus_weights(probs: torch.Tensor, group: torch.Tensor, eps: float) -> torch.Tensor:
    """[M] consensus factors exp(−ε·KL(π_e ‖ π_avg of e's group))."""
    group = torch.unique(group, return_inverse=True)[1]
    avg = _group_mean(probs, group, int(group.max()) + 1)[group]
    ratio = torch.where(probs > 0, probs / avg.clamp(min=torch.finfo(probs.dtype).tiny), torch.ones_like(probs))
    kl = (probs * ratio.log()).sum(-1)
    return torch.exp(-eps * kl)


def consensus_fusion(probs: torch.Tensor, group: torch.Tensor, eps: float) -> torch.Tensor:
    """[M, C] the fused distribution π_llm of each row's group (LLM4MAC Eq. 11)."""
    g = torch.unique(group, return_inverse=True)[1]
    n = int(g.max()) + 1
    w = consensus_weights(probs, g, eps)
    num = torch.zeros(n, probs.shape[1], dtype=probs.dtype, device=probs.device).index_add(0, g, w[:, None] * probs)
    z = torch.zeros(n, dtype=probs.dtype, device=probs.device).index_add(0, g, w)
    return (num / z[:, None])[g]


def restrict(probs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Renormalize each row over its valid candidates (invalid ones get exactly 0)."""
    p = probs * valid
    return p / p.sum(-1, keepdim=True)
