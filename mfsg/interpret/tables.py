"""What each message symbol goes with, and what the signaling costs (model §2, §7).

- :func:`dcm_table`: per DCM symbol d, the BS's situation when it sends d (this UE decoded in t−1,
  it requested in t−1, how many UEs requested) and the UE's UCM and access that follow, split by
  the UE's buffer (empty / non-empty).
- :func:`ucm_table`: per UCM symbol u, the UE's buffer and actions when it sends u and the BS's
  next DCM to that UE.
- :func:`action_heatmap`: P(UCM, access | DCM, buffer empty / non-empty), with the counts.
- :func:`signaling_cost`: non-zero UCMs and DCMs per delivered dPDU and per TTI, next to the
  throughput they buy (means over episodes with 95 % half-widths, :mod:`mfsg.metrics`).

"Requested" means a non-zero UCM; the symbols' meanings are whatever the transcript shows.
"""

from __future__ import annotations

import math

import numpy as np

from mfsg.interpret.transcripts import NO_NEXT, Transcript, access_name
from mfsg.metrics import mean_ci, ratio_ci

BUFFER_CLASSES = ("empty", "non-empty")


def _share(mask: np.ndarray, within: np.ndarray) -> float:
    n = int(within.sum())
    return float((mask & within).sum() / n) if n else math.nan


def _dist(values: np.ndarray, within: np.ndarray, size: int) -> list[float]:
    n = int(within.sum())
    if not n:
        return [math.nan] * size
    return (np.bincount(values[within], minlength=size)[:size] / n).tolist()


def dcm_table(tr: Transcript) -> list[dict]:
    """One row per DCM symbol (model §2.3–§2.4): see the module docstring."""
    cfg = tr.cfg
    rows = []
    nonempty = tr.buffer > 0
    for d in range(cfg.dcm_vocab):
        sent = tr.dcm == d
        rows.append({
            "dcm": d,
            "count": int(sent.sum()),
            "share": _share(sent, np.ones_like(sent)),
            "p_decoded_prev": _share(tr.decoded_prev, sent),
            "p_requested": _share(tr.prev_ucm != 0, sent),
            "mean_requesters": float(tr.n_requesters[sent].mean()) if sent.any() else math.nan,
            "p_buffer_nonempty": _share(nonempty, sent),
            "nonempty": {"count": int((sent & nonempty).sum()),
                         "access": _dist(tr.access, sent & nonempty, cfg.n_access),
                         "ucm": _dist(tr.ucm, sent & nonempty, cfg.ucm_vocab)},
            "empty": {"count": int((sent & ~nonempty).sum()),
                      "access": _dist(tr.access, sent & ~nonempty, cfg.n_access),
                      "ucm": _dist(tr.ucm, sent & ~nonempty, cfg.ucm_vocab)},
        })
    return rows


def ucm_table(tr: Transcript) -> list[dict]:
    """One row per UCM symbol (model §2.3–§2.4): see the module docstring."""
    cfg = tr.cfg
    rows = []
    for u in range(cfg.ucm_vocab):
        sent = tr.ucm == u
        has_next = sent & (tr.next_dcm != NO_NEXT)
        rows.append({
            "ucm": u,
            "count": int(sent.sum()),
            "share": _share(sent, np.ones_like(sent)),
            "p_buffer_nonempty": _share(tr.buffer > 0, sent),
            "mean_buffer": float(tr.buffer[sent].mean()) if sent.any() else math.nan,
            "p_holding_after": _share(tr.holding_after, sent),
            "access": _dist(tr.access, sent, cfg.n_access),
            "prev_access": _dist(tr.prev_access, sent, cfg.n_access),
            "next_dcm": _dist(tr.next_dcm, has_next, cfg.dcm_vocab),
            "next_count": int(has_next.sum()),
        })
    return rows


def joint_labels(tr: Transcript) -> list[str]:
    """Labels of the follower's joint actions (UCM u, access a), index u·(K+2) + a (:mod:`mfsg.learn.actions`)."""
    K = tr.cfg.n_rbg
    return [f"UCM {u} {access_name(a, K)}" for u in range(tr.cfg.ucm_vocab) for a in range(tr.cfg.n_access)]


def action_heatmap(tr: Transcript) -> tuple[np.ndarray, np.ndarray]:
    """(P, counts): ``P[d, b, j]`` = P(joint action j | DCM d, buffer class b) (NaN without cases),
    ``counts[d, b]`` the decisions behind each row; b indexes :data:`BUFFER_CLASSES`."""
    cfg = tr.cfg
    n_joint = cfg.ucm_vocab * cfg.n_access
    joint = tr.ucm * cfg.n_access + tr.access
    b = (tr.buffer > 0).astype(np.int64)
    flat = (tr.dcm * len(BUFFER_CLASSES) + b) * n_joint + joint
    hist = np.bincount(flat, minlength=cfg.dcm_vocab * len(BUFFER_CLASSES) * n_joint).astype(np.float64)
    hist = hist.reshape(cfg.dcm_vocab, len(BUFFER_CLASSES), n_joint)
    counts = hist.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = hist / counts[..., None]
    return p, counts.astype(np.int64)


def signaling_cost(tr: Transcript) -> dict:
    """Non-zero UCMs and DCMs per delivered dPDU and per TTI, and the throughput (dPDUs/TTI), each as
    ``{"mean", "ci95"}`` over the transcript's episodes (ratios pooled, :func:`mfsg.metrics.ratio_ci`)."""
    E, T = tr.n_episodes, tr.cfg.horizon
    per_ep = lambda mask: np.bincount(tr.episode, weights=mask.astype(np.float64), minlength=E)  # noqa: E731
    ucm, dcm = per_ep(tr.ucm != 0), per_ep(tr.dcm != 0)
    delivered = tr.delivered.astype(np.float64)
    out = {
        "messages_per_delivered": ratio_ci(ucm + dcm, delivered),
        "ucm_per_delivered": ratio_ci(ucm, delivered),
        "dcm_per_delivered": ratio_ci(dcm, delivered),
        "messages_per_tti": mean_ci((ucm + dcm) / T),
        "ucm_per_tti": mean_ci(ucm / T),
        "dcm_per_tti": mean_ci(dcm / T),
        "throughput": mean_ci(delivered / T),
    }
    return {k: v.as_dict() for k, v in out.items()}


__all__ = ["BUFFER_CLASSES", "action_heatmap", "dcm_table", "joint_labels", "signaling_cost", "ucm_table"]
