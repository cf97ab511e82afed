"""One protocol's reading, as a JSON-ready dict and as text: per-symbol tables, mutual information between
the message streams and the hidden state, signaling cost, the protocol card and where it departs from
a reference card (SR/grant's) (model §2, §6, §7)."""

from __future__ import annotations

import math

import numpy as np

from mfsg.interpret.card import (
    Card,
    CardConfig,
    atoms,
    card_text,
    compare_cards,
    condition_text,
    percent,
    protocol_card,
    rule_text,
)
from mfsg.interpret.information import InformationConfig, mutual_information
from mfsg.interpret.tables import dcm_table, signaling_cost, ucm_table
from mfsg.interpret.transcripts import Transcript, access_name

# hidden quantities (model §2) by name, described
HIDDEN = {
    "buffer_nonempty": "the UE's buffer is non-empty",
    "hol_received": "its head-of-line dPDU was already received",
    "decoded_prev": "its dPDU was decoded in t−1",
}
STREAMS = ("DCM", "UCM")


def hidden_values(tr: Transcript) -> dict[str, np.ndarray]:
    return {"buffer_nonempty": tr.buffer > 0, "hol_received": tr.hol_rx, "decoded_prev": tr.decoded_prev}


def information_table(tr: Transcript, cfg: InformationConfig | None = None) -> list[dict]:
    """I(stream; hidden) in bits for the DCM d_n(t) and UCM u_n(t) of each decision against each
    hidden quantity at that decision, bootstrapped over episodes (:mod:`mfsg.interpret.information`)."""
    streams = {"DCM": tr.dcm, "UCM": tr.ucm}
    rows = []
    for s in STREAMS:
        for h, values in hidden_values(tr).items():
            mi = mutual_information(streams[s], values, tr.episode, cfg)
            rows.append({"stream": s, "hidden": h, **mi.as_dict()})
    return rows


def interpret(tr: Transcript, reference: tuple[Transcript, Card] | None = None, *,
              card_cfg: CardConfig | None = None, info_cfg: InformationConfig | None = None) -> dict:
    """Everything ``mfsg protocol`` reports about the protocol behind ``tr``; ``reference`` is
    (transcript, card) of the protocol to compare the card with."""
    card = protocol_card(tr, card_cfg)
    table = atoms(tr)
    rules = [r.as_dict() | {"text": rule_text(r, tr)} for r in card.rules]
    out = {
        "protocol": tr.name,
        "episodes": tr.n_episodes,
        "decisions": tr.n_decisions,
        "access_names": [access_name(a, tr.cfg.n_rbg) for a in range(tr.cfg.n_access)],
        "dcm_symbols": dcm_table(tr),
        "ucm_symbols": ucm_table(tr),
        "mutual_information": information_table(tr, info_cfg),
        "signaling": signaling_cost(tr),
        "card": card.as_dict() | {"rules": rules, "text": card_text(card, tr)},
    }
    if reference is not None:
        ref_tr, ref_card = reference
        comp = compare_cards(card, tr, ref_card, card_cfg)
        ref_table = atoms(ref_tr)
        out["reference_signaling"] = signaling_cost(ref_tr)
        out["card_vs_reference"] = {
            "reference": ref_card.name,
            "rows": [c.as_dict() | {
                "reference_text": None if c.reference is None else condition_text(c.reference.condition, ref_table),
                "own_text": None if c.own is None else condition_text(c.own.condition, table),
            } for c in comp],
        }
    return out


# ----------------------------------------------------------------------------- text
def _cell(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def text_table(columns: list[str], rows: list[list]) -> str:
    """A fixed-width text table."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = lambda r: "  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def format_report(rep: dict) -> str:
    """The report as text."""
    acc = rep["access_names"]
    U = len(rep["ucm_symbols"])
    out = [f"== {rep['protocol']}: {rep['episodes']} episodes, {rep['decisions']} decisions =="]
    cols = ["DCM", "count", "share", "P(dec t-1)", "P(req t-1)", "E[requesters]", "P(buf>0)", "n buf>0",
            *[f"{a}|buf>0" for a in acc], *[f"UCM {u}|buf>0" for u in range(1, U)], "n buf=0",
            *[f"UCM {u}|buf=0" for u in range(1, U)]]
    rows = [[r["dcm"], r["count"], r["share"], r["p_decoded_prev"], r["p_requested"], r["mean_requesters"],
             r["p_buffer_nonempty"], r["nonempty"]["count"], *r["nonempty"]["access"], *r["nonempty"]["ucm"][1:],
             r["empty"]["count"], *r["empty"]["ucm"][1:]] for r in rep["dcm_symbols"]]
    out += ["", "per DCM symbol: the BS's situation when it sends it, the UE's access and UCM that follow",
            text_table(cols, rows)]
    D = len(rep["dcm_symbols"])
    cols = ["UCM", "count", "share", "P(buf>0)", "E[buffer]", "P(holds after)", *[f"{a} now" for a in acc],
            *[f"{a} t-1" for a in acc], *[f"next DCM {d}" for d in range(D)]]
    rows = [[r["ucm"], r["count"], r["share"], r["p_buffer_nonempty"], r["mean_buffer"], r["p_holding_after"],
             *r["access"], *r["prev_access"], *r["next_dcm"]] for r in rep["ucm_symbols"]]
    out += ["", "per UCM symbol: the UE's buffer and actions when it sends it, the BS's next DCM to it",
            text_table(cols, rows)]
    rows = [[m["stream"], m["hidden"], m["h_y"], m["plugin"], m["corrected"], m["lo"], m["hi"]]
            for m in rep["mutual_information"]]
    out += ["", "mutual information (bits; Miller–Madow corrected, 95 % bootstrap interval over episodes)",
            text_table(["stream", "hidden", "H(hidden)", "plug-in", "corrected", "lo", "hi"], rows)]
    sig, ref = rep["signaling"], rep.get("reference_signaling")
    pm = lambda v: f"{_cell(v['mean'])} ± {_cell(v['ci95'])}"  # noqa: E731
    rows = [[k, pm(v), *([pm(ref[k])] if ref else [])] for k, v in sig.items()]
    cols = ["quantity", rep["protocol"], *([rep["card_vs_reference"]["reference"]] if ref else [])]
    out += ["", "signaling cost (non-zero messages) and throughput (dPDUs/TTI), mean ± 95 % over episodes",
            text_table(cols, rows)]
    out += ["", *rep["card"]["text"]]
    if "card_vs_reference" in rep:
        cmp = rep["card_vs_reference"]
        rows = []
        for c in cmp["rows"]:
            here = c["reference_here"]
            rows.append([c["outcome"], c["reference_text"] or "-",
                         "-" if here is None else f"{percent(here['confidence'])} / {percent(here['coverage'])}",
                         c["own_text"] or "-", c["verdict"]])
        out += ["", f"differences from {cmp['reference']}'s card (its rule's confidence / coverage here)",
                text_table(["outcome", f"{cmp['reference']} rule", "here", "own rule", "verdict"], rows)]
    return "\n".join(out)


__all__ = ["HIDDEN", "STREAMS", "format_report", "hidden_values", "information_table", "interpret", "text_table"]
