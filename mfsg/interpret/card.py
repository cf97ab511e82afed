"""The protocol card: a protocol summarized as a few rules "condition → message or action", each with
its support and accuracy, mined from a :class:`~mfsg.interpret.transcripts.Transcript` (model §2, §6).

For every non-default outcome that occurs — each DCM symbol d ≥ 1 the BS sends, each access action
other than IDLE, each UCM symbol u ≥ 1 a UE sends (symbol 0 and IDLE are "otherwise") — the card
keeps the condition, a conjunction of at most ``max_literals`` literals over that side's *atoms*,
that best matches the outcome: the highest Jaccard index |C ∧ O| / |C ∨ O|, which is 1 exactly when
"C if and only if O" holds on every decision. Ties go to fewer literals, then to atoms the deciding
side observes (a hidden atom is marked as such), then to the order atoms are listed in.

A rule reports its ``support`` (decisions where C holds), ``confidence`` = P(O | C) ("% of such
cases") and ``coverage`` = P(C | O) ("% of the outcome's occurrences").

Atoms: the BS's (what it observes when it sends d_n(t): this UE decoded in t−1, its last UCM and
DCM, whether the requesters fit in the K RBGs); the UE's (the DCM just received, its buffer, its
own last UCM and access; hidden from it: its head-of-line dPDU was already received); for UCMs
also the access chosen with it and whether the UE still holds data after that action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mfsg.config import check_int, check_prob
from mfsg.env import spec
from mfsg.interpret.transcripts import Transcript, access_name

BS, UE_ACCESS, UE_UCM = "BS", "UE access", "UE UCM"
PERCENT_DIGITS_MAX = 6  # decimals a near-100 % figure may need to show it is not exact
SIDES = (BS, UE_ACCESS, UE_UCM)


@dataclass(frozen=True)
class CardConfig:
    """``max_literals`` per condition (1 or 2); a rule of another card ``holds`` here when both its
    confidence and its coverage here reach this fraction of their values on that card's transcript."""

    max_literals: int = 2
    holds: float = 0.95

    def __post_init__(self) -> None:
        check_int("card.max_literals", self.max_literals, 1, 2)
        check_prob("card.holds", self.holds, open_low=True)


@dataclass(frozen=True)
class Atom:
    name: str
    phrase: str
    hidden: bool = False


def atoms(tr: Transcript) -> dict[str, tuple[Atom, np.ndarray]]:
    """Every atom by name, with its per-decision truth values."""
    cfg, K = tr.cfg, tr.cfg.n_rbg
    out: dict[str, tuple[Atom, np.ndarray]] = {}

    def add(name, phrase, values, hidden=False):
        out[name] = (Atom(name, phrase, hidden), np.asarray(values, dtype=bool))

    # the BS's view before it sends d_n(t)
    add("decoded_prev", "its dPDU was decoded in t−1", tr.decoded_prev)
    for u in range(1, cfg.ucm_vocab):
        add(f"prev_ucm={u}", f"its UCM in t−1 was {u}", tr.prev_ucm == u)
    for d in range(cfg.dcm_vocab):
        add(f"prev_dcm={d}", f"its DCM in t−1 was {d}", tr.prev_dcm == d)
    add("requesters<=K", f"at most K = {K} UEs sent a non-zero UCM in t−1", tr.n_requesters <= K)
    # the UE's view before it acts
    for d in range(cfg.dcm_vocab):
        add(f"dcm={d}", f"DCM {d} received", tr.dcm == d)
    add("buffer>0", "buffer non-empty", tr.buffer > 0)
    add("buffer>1", "two or more dPDUs buffered", tr.buffer > 1)
    for a in range(cfg.n_access):
        add(f"prev_access={a}", f"its access in t−1 was {access_name(a, K)}", tr.prev_access == a)
    add("hol_rx", "its head-of-line dPDU was already received", tr.hol_rx, hidden=True)
    # what the UE does in the same decision
    for a in range(cfg.n_access):
        add(f"access={a}", f"access {access_name(a, K)}", tr.access == a)
    add("holding_after", "it still holds data after its action", tr.holding_after)
    for u in range(cfg.ucm_vocab):
        add(f"ucm={u}", f"UCM {u} sent", tr.ucm == u)
    return out


def _candidates(tr: Transcript, side: str) -> list[str]:
    cfg = tr.cfg
    bs = ["decoded_prev", *[f"prev_ucm={u}" for u in range(1, cfg.ucm_vocab)],
          *[f"prev_dcm={d}" for d in range(cfg.dcm_vocab)], "requesters<=K"]
    ue = [*[f"dcm={d}" for d in range(cfg.dcm_vocab)], "buffer>0", "buffer>1",
          *[f"prev_access={a}" for a in range(cfg.n_access)], *[f"prev_ucm={u}" for u in range(1, cfg.ucm_vocab)],
          "hol_rx"]
    if side == BS:
        return bs
    if side == UE_ACCESS:
        return ue
    return ["holding_after", *ue, *[f"access={a}" for a in range(cfg.n_access)]]


def _outcomes(tr: Transcript, side: str) -> list[str]:
    cfg = tr.cfg
    if side == BS:
        return [f"dcm={d}" for d in range(1, cfg.dcm_vocab)]
    if side == UE_ACCESS:
        return [f"access={a}" for a in range(cfg.n_access) if a != spec.IDLE]
    return [f"ucm={u}" for u in range(1, cfg.ucm_vocab)]


Literal = tuple[str, bool]  # (atom name, True for the atom, False for its negation)


@dataclass(frozen=True)
class Rule:
    """``condition`` (a conjunction of literals) → ``outcome`` (an atom), as measured on a transcript."""

    side: str
    outcome: str
    condition: tuple[Literal, ...]
    support: int
    n_outcome: int
    hits: int

    @property
    def confidence(self) -> float:
        return self.hits / self.support if self.support else math.nan

    @property
    def coverage(self) -> float:
        return self.hits / self.n_outcome if self.n_outcome else math.nan

    @property
    def exact(self) -> bool:
        return self.support > 0 and self.hits == self.support == self.n_outcome

    def as_dict(self) -> dict:
        return {"side": self.side, "outcome": self.outcome, "condition": [list(lit) for lit in self.condition],
                "support": self.support, "n_outcome": self.n_outcome, "hits": self.hits,
                "confidence": self.confidence, "coverage": self.coverage, "exact": self.exact}


def condition_text(condition: tuple[Literal, ...], table: dict[str, tuple[Atom, np.ndarray]]) -> str:
    parts = []
    for name, positive in condition:
        atom = table[name][0]
        text = atom.phrase if positive else f"not ({atom.phrase})"
        parts.append(text + (" [hidden]" if atom.hidden else ""))
    return " and ".join(parts)


def outcome_text(outcome: str, n_rbg: int) -> str:
    """What the deciding side does: "sends DCM d", "TX k" / "DELETE", "sends UCM u"."""
    name, value = outcome.split("=")
    if name == "access":
        return access_name(int(value), n_rbg)
    return f"sends {name.upper()} {value}"


def evaluate_rule(rule_side: str, outcome: str, condition: tuple[Literal, ...], tr: Transcript) -> Rule:
    """The rule's support and accuracy on ``tr``."""
    table = atoms(tr)
    cond = np.ones(tr.n_decisions, dtype=bool)
    for name, positive in condition:
        cond &= table[name][1] == positive
    o = table[outcome][1]
    return Rule(rule_side, outcome, tuple(condition), int(cond.sum()), int(o.sum()), int((cond & o).sum()))


def best_rule(tr: Transcript, side: str, outcome: str, cfg: CardConfig) -> Rule:
    """The condition of at most ``cfg.max_literals`` literals with the highest Jaccard index to ``outcome``."""
    table = atoms(tr)
    names = _candidates(tr, side)
    A = np.stack([table[n][1] for n in names], axis=1)  # [M, a]
    lits = np.concatenate([A, ~A], axis=1).astype(np.float64)  # literal i: atom i % a, positive iff i < a
    o = table[outcome][1].astype(np.float64)
    support = lits.T @ lits  # [2a, 2a]: |L_i ∧ L_j|, the diagonal single literals
    hits = (lits * o[:, None]).T @ lits
    union = support + o.sum() - hits
    jac = np.divide(hits, union, out=np.zeros_like(hits), where=union > 0)
    a = len(names)
    i, j = np.triu_indices(2 * a)
    pair = i != j
    ok = ~pair | ((i % a) != (j % a))  # never an atom with itself or its negation
    if cfg.max_literals == 1:
        ok &= ~pair
    hidden = np.array([table[n][0].hidden for n in names] * 2)
    n_lit = np.where(pair, 2, 1)
    n_hidden = hidden[i].astype(int) + (hidden[j] & pair).astype(int)
    score = np.where(ok, jac[i, j], -1.0)
    # best Jaccard, then fewer literals, then fewer hidden atoms, then listing order (lexsort: last key first)
    best = np.lexsort((j, i, n_hidden, n_lit, -score))[0]
    bi, bj = int(i[best]), int(j[best])
    condition = tuple((names[k % a], k < a) for k in ((bi,) if bi == bj else (bi, bj)))
    return Rule(side, outcome, condition, int(support[bi, bj]), int(o.sum()), int(hits[bi, bj]))


@dataclass(frozen=True)
class Card:
    """A protocol's rules; ``silent`` when it never sends a non-zero UCM or DCM."""

    name: str
    rules: tuple[Rule, ...]
    n_decisions: int
    n_ucm_nonzero: int
    n_dcm_nonzero: int

    @property
    def silent(self) -> bool:
        return self.n_ucm_nonzero == 0 and self.n_dcm_nonzero == 0

    def rule(self, outcome: str) -> Rule | None:
        return next((r for r in self.rules if r.outcome == outcome), None)

    def as_dict(self) -> dict:
        return {"name": self.name, "silent": self.silent, "n_decisions": self.n_decisions,
                "n_ucm_nonzero": self.n_ucm_nonzero, "n_dcm_nonzero": self.n_dcm_nonzero,
                "rules": [r.as_dict() for r in self.rules]}


def protocol_card(tr: Transcript, cfg: CardConfig | None = None) -> Card:
    """Mine the card of the protocol that produced ``tr`` (outcomes that never occur get no rule)."""
    cfg = cfg or CardConfig()
    table = atoms(tr)
    rules = [best_rule(tr, side, outcome, cfg) for side in SIDES for outcome in _outcomes(tr, side)
             if table[outcome][1].any()]
    return Card(tr.name, tuple(rules), tr.n_decisions, int((tr.ucm != 0).sum()), int((tr.dcm != 0).sum()))


def rule_text(rule: Rule, tr: Transcript) -> str:
    """One line: "BS: if C then O — x % of such cases (n), y % of O"."""
    table = atoms(tr)
    who = "BS" if rule.side == BS else "UE"
    return (f"{who}: if {condition_text(rule.condition, table)} then {outcome_text(rule.outcome, tr.cfg.n_rbg)} — "
            f"{percent(rule.confidence)} of such cases (n = {rule.support}), "
            f"{percent(rule.coverage)} of its {rule.n_outcome} occurrences")


def percent(x: float | None) -> str:
    """A fraction as a percentage: "100 %" only when exact; a near miss never prints as 100.0 %."""
    if x is None or math.isnan(x):
        return "-"
    if x == 1.0:
        return "100 %"
    digits = 1
    while round(100 * x, digits) >= 100.0 and digits < PERCENT_DIGITS_MAX:
        digits += 1
    return f"{100 * x:.{digits}f} %"


def card_text(card: Card, tr: Transcript) -> list[str]:
    """The card as lines of text."""
    lines = [f"protocol card of {card.name} ({card.n_decisions} decisions)"]
    if card.silent:
        lines.append(f"sends no messages: all {card.n_decisions} UCMs and DCMs are 0")
    lines += [rule_text(r, tr) for r in card.rules]
    return lines


@dataclass(frozen=True)
class RuleComparison:
    """A reference rule measured on another transcript, next to that protocol's own rule for the outcome."""

    outcome: str
    reference: Rule | None  # the reference card's rule (measured on the reference transcript)
    reference_here: Rule | None  # the same condition → outcome, measured on this transcript
    own: Rule | None  # this card's rule for the outcome
    verdict: str  # "same rule", "holds", "differs", "reference only", "new"

    def as_dict(self) -> dict:
        d = lambda r: None if r is None else r.as_dict()  # noqa: E731
        return {"outcome": self.outcome, "reference": d(self.reference), "reference_here": d(self.reference_here),
                "own": d(self.own), "verdict": self.verdict}


def compare_cards(card: Card, tr: Transcript, reference: Card, cfg: CardConfig | None = None) -> list[RuleComparison]:
    """Where ``card`` (mined from ``tr``) differs from ``reference``: every outcome of either card, with
    the reference rule's accuracy on ``tr``. Verdicts: ``same rule`` (same condition), ``holds`` (the
    reference rule keeps ``cfg.holds`` of its confidence and of its coverage here), ``differs``,
    ``reference only`` (the outcome never occurs here), ``new`` (an outcome the reference never produces)."""
    cfg = cfg or CardConfig()
    outcomes = list(dict.fromkeys([r.outcome for r in reference.rules] + [r.outcome for r in card.rules]))
    out = []
    for o in outcomes:
        ref, own = reference.rule(o), card.rule(o)
        here = None if ref is None else evaluate_rule(ref.side, o, ref.condition, tr)
        if ref is None:
            verdict = "new"
        elif own is None:
            verdict = "reference only"
        elif set(own.condition) == set(ref.condition):
            verdict = "same rule"
        elif here.support and here.confidence >= cfg.holds * ref.confidence and \
                here.coverage >= cfg.holds * ref.coverage:
            verdict = "holds"
        else:
            verdict = "differs"
        out.append(RuleComparison(o, ref, here, own, verdict))
    return out


__all__ = ["Atom", "BS", "Card", "CardConfig", "Rule", "RuleComparison", "SIDES", "UE_ACCESS", "UE_UCM",
           "atoms", "best_rule", "card_text", "compare_cards", "condition_text", "evaluate_rule",
           "outcome_text", "percent", "protocol_card", "rule_text"]
