"""Figures of a protocol's reading: the heatmap of P(UE action | DCM, buffer) and the mutual-information
bars (model §2, §7). Each function draws on a given matplotlib axis; :func:`write_figures` saves them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mfsg.interpret.tables import BUFFER_CLASSES, action_heatmap, joint_labels
from mfsg.interpret.transcripts import Transcript

FIGURE_FORMATS = ("svg", "png")


def plot_action_heatmap(tr: Transcript, ax) -> None:
    """P(UCM, access | DCM d, buffer empty / non-empty): one row per (d, buffer class), with its count."""
    p, counts = action_heatmap(tr)
    D, B, J = p.shape
    img = p.reshape(D * B, J)
    ax.imshow(np.nan_to_num(img, nan=0.0), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(J), joint_labels(tr), rotation=45, ha="right")
    ax.set_yticks(range(D * B), [f"DCM {d}, buffer {b} (n={counts[d, i]})"
                                 for d in range(D) for i, b in enumerate(BUFFER_CLASSES)])
    for r in range(D * B):
        for c in range(J):
            v = img[r, c]
            if not math.isnan(v) and v > 0:
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if v > 0.5 else "white")
    ax.set_title(f"{tr.name}: P(UE action | DCM, buffer)")


def plot_information(rows: list[dict], ax, title: str = "") -> None:
    """Bias-corrected MI (bits) of each message stream with each hidden quantity, with its interval,
    next to the hidden quantity's entropy (the most a message could carry about it)."""
    x = np.arange(len(rows))
    mi = np.array([r["corrected"] for r in rows])
    err = np.array([[r["corrected"] - r["lo"] for r in rows], [r["hi"] - r["corrected"] for r in rows]])
    ax.bar(x, [r["h_y"] for r in rows], color="lightgrey", label="H(hidden)")
    ax.bar(x, mi, yerr=np.clip(err, 0, None), capsize=3, label="I(message; hidden)")
    ax.set_xticks(x, [f"{r['stream']}\n{r['hidden']}" for r in rows], fontsize=7)
    ax.set_ylabel("bits")
    ax.legend(fontsize=7)
    ax.set_title(title)


def write_figures(tr: Transcript, report: dict, out: Path, fmt: str = "svg") -> list[Path]:
    """Save the heatmap and the MI bars of ``tr`` under ``out``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"fmt={fmt!r} is invalid: allowed one of {', '.join(FIGURE_FORMATS)}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.45 * tr.cfg.dcm_vocab * len(BUFFER_CLASSES)), layout="constrained")
    plot_action_heatmap(tr, ax)
    written.append(out / f"action_heatmap.{fmt}")
    fig.savefig(written[-1])
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    plot_information(report["mutual_information"], ax, f"{tr.name}: what the messages carry")
    written.append(out / f"information.{fmt}")
    fig.savefig(written[-1])
    plt.close(fig)
    return written


__all__ = ["FIGURE_FORMATS", "plot_action_heatmap", "plot_information", "write_figures"]
