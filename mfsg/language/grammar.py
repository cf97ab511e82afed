"""PAG, the protocol action grammar (model §5), written once as data.

:data:`GRAMMAR` holds the productions; upper-case words are terminals, keys of
:data:`GRAMMAR` are nonterminals and keys of :data:`SLOTS` are integer slots whose range
depends on the scenario (ucm < U, 1 <= rbg <= K, dcm < D). Everything else here —
candidate enumeration, validity, parsing, formatting, the token trie — is derived from
these tables. An action string that does not parse, or parses but is not valid in the
state, maps to :data:`INVALID`; nothing here ever repairs an action.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import torch

from mfsg.env import spec

INVALID = -1  # explicit marker for an action that does not parse or is not valid in the state

GRAMMAR: dict[str, tuple[tuple[str, ...], ...]] = {
    "ue_action": (("UCM", "ucm", "access"),),
    "access": (("IDLE",), ("TX", "RBG", "rbg"), ("DELETE",)),
    "bs_action": (("DCM", "dcm"),),
}
SLOTS = ("ucm", "rbg", "dcm")
NEEDS_DPDU = ("TX", "DELETE")  # model §2.4: these access alternatives need a non-empty buffer


def terminals() -> list[str]:
    """Every terminal word of the grammar (for the tokenizer's vocabulary)."""
    words = {w for alts in GRAMMAR.values() for alt in alts for w in alt if w not in GRAMMAR and w not in SLOTS}
    return sorted(words)


@dataclass(frozen=True)
class Limits:
    """Slot ranges of one scenario: ucm in [0, U), rbg in [1, K], dcm in [0, D)."""

    n_ucm: int
    n_rbg: int
    n_dcm: int

    @classmethod
    def from_env(cls, cfg) -> Limits:
        return cls(n_ucm=cfg.ucm_vocab, n_rbg=cfg.n_rbg, n_dcm=cfg.dcm_vocab)

    def slot_range(self, slot: str) -> range:
        return {"ucm": range(self.n_ucm), "rbg": range(1, self.n_rbg + 1), "dcm": range(self.n_dcm)}[slot]


# ------------------------------------------------------------------ enumeration and parsing
def expand(symbol: str, lim: Limits) -> list[tuple[tuple[str, ...], dict]]:
    """All derivations of ``symbol``: (words, bindings) with bindings slot -> int and 'alt' words."""
    if symbol in SLOTS:
        return [((str(v),), {symbol: v}) for v in lim.slot_range(symbol)]
    if symbol not in GRAMMAR:
        return [((symbol,), {})]
    out = []
    for alt in GRAMMAR[symbol]:
        for parts in itertools.product(*(expand(s, lim) for s in alt)):
            words = tuple(w for p in parts for w in p[0])
            bind = {k: v for p in parts for k, v in p[1].items()}
            if symbol == "access":
                bind["access_word"] = alt[0]
            out.append((words, bind))
    return out


def _match(symbol: str, words: list[str], i: int, lim: Limits) -> list[tuple[int, dict]]:
    """Recursive-descent matches of ``symbol`` at ``words[i:]``: (end index, bindings)."""
    if symbol in SLOTS:
        w = words[i] if i < len(words) else None
        ok = w is not None and w.isdigit() and (len(w) == 1 or w[0] != "0") and int(w) in lim.slot_range(symbol)
        return [(i + 1, {symbol: int(w)})] if ok else []
    if symbol not in GRAMMAR:
        return [(i + 1, {})] if i < len(words) and words[i] == symbol else []
    out = []
    for alt in GRAMMAR[symbol]:
        states = [(i, {"access_word": alt[0]} if symbol == "access" else {})]
        for s in alt:
            states = [(e2, {**b, **b2}) for e, b in states for e2, b2 in _match(s, words, e, lim)]
        out.extend(states)
    return out


def parse_words(symbol: str, text: str, lim: Limits) -> dict | None:
    """Bindings of the unique full parse of ``text`` as ``symbol``, or None."""
    words = text.split()
    full = [b for e, b in _match(symbol, words, 0, lim) if e == len(words)]
    return full[0] if len(full) == 1 else None


def access_code(bind: dict, lim: Limits) -> int:
    word = bind["access_word"]
    if word == "TX":
        return spec.tx_action(bind["rbg"])
    if word == "DELETE":
        return spec.delete_action(lim.n_rbg)
    return spec.IDLE


# ------------------------------------------------------------------ formatting
def format_access(access: int, n_rbg: int) -> str:
    if access == spec.IDLE:
        return "IDLE"
    if access == spec.delete_action(n_rbg):
        return "DELETE"
    return f"TX RBG {access}"


def format_ue(ucm: int, access: int, n_rbg: int) -> str:
    """ue_action string of (ucm, access code)."""
    return f"UCM {ucm} {format_access(access, n_rbg)}"


def format_bs(dcm: int) -> str:
    return f"DCM {dcm}"


def parse_ue(text: str, lim: Limits, has_dpdu: bool) -> tuple[int, int]:
    """(ucm, access) of a ue_action string, or (INVALID, INVALID) if it does not parse or is not valid."""
    bind = parse_words("ue_action", text, lim)
    if bind is None or (bind["access_word"] in NEEDS_DPDU and not has_dpdu):
        return INVALID, INVALID
    return bind["ucm"], access_code(bind, lim)


def parse_bs(text: str, lim: Limits) -> int:
    """dcm of a bs_action string, or INVALID."""
    bind = parse_words("bs_action", text, lim)
    return INVALID if bind is None else bind["dcm"]


# ------------------------------------------------------------------ candidate tables
@dataclass(frozen=True)
class CandidateTable:
    """The syntactic candidates of one player and which are valid in each state class.

    ``texts[c]`` is candidate c's action string; ``actions[c]`` its meaning ((ucm, access)
    for UEs, (dcm,) for the BS); ``valid[state_class, c]``: follower state class 0 = empty
    buffer, 1 = holds a dPDU; the BS has one class.
    """

    symbol: str
    texts: tuple[str, ...]
    actions: tuple[tuple[int, ...], ...]
    valid: torch.Tensor  # [n_classes, C] bool

    @property
    def n(self) -> int:
        return len(self.texts)

    @cached_property
    def index(self) -> dict[tuple[int, ...], int]:
        return {a: c for c, a in enumerate(self.actions)}

    def action_tensor(self) -> torch.Tensor:
        """[C, len(action)] meaning of each candidate."""
        return torch.tensor(self.actions, dtype=torch.long)


def ue_table(lim: Limits) -> CandidateTable:
    """ue_action candidates; class 1 (has a dPDU) allows all, class 0 only IDLE (model §2.4)."""
    derivs = expand("ue_action", lim)
    texts = tuple(" ".join(w) for w, _ in derivs)
    actions = tuple((b["ucm"], access_code(b, lim)) for _, b in derivs)
    needs = torch.tensor([b["access_word"] in NEEDS_DPDU for _, b in derivs])
    valid = torch.stack([~needs, torch.ones_like(needs)])
    return CandidateTable("ue_action", texts, actions, valid)


def bs_table(lim: Limits) -> CandidateTable:
    derivs = expand("bs_action", lim)
    texts = tuple(" ".join(w) for w, _ in derivs)
    actions = tuple((b["dcm"],) for _, b in derivs)
    return CandidateTable("bs_action", texts, actions, torch.ones(1, len(texts), dtype=torch.bool))


def candidate_summary(symbol: str, lim: Limits, has_dpdu: bool = True) -> str:
    """f_act(Ã) of LLM4MAC Eqs. 7–8: a compact, length-constant rendering of the valid candidate set."""
    if symbol == "bs_action":
        return f"DCM 0 to {lim.n_dcm - 1}"
    acc = f"IDLE TX RBG 1 to {lim.n_rbg} DELETE" if has_dpdu else "IDLE"
    return f"UCM 0 to {lim.n_ucm - 1} {acc}"


# ------------------------------------------------------------------ token trie
class TokenTrie:
    """Prefix trie over token-id sequences of the valid candidates of every state class.

    Nodes of all classes live in one table so that constrained generation is vectorized:
    ``allowed[node]`` is a [V] mask of tokens allowed after the node's prefix,
    ``child[node, tok]`` the next node (-1 if not allowed), ``leaf[node]`` the candidate
    index a complete sequence ends in (-1 for inner nodes); ``root[class]`` the start node.
    """

    def __init__(self, seqs: list[list[int]], valid: torch.Tensor, vocab_size: int):
        nodes: list[dict[int, int]] = []
        leaf: list[int] = []
        roots = []
        for cls in range(valid.shape[0]):
            roots.append(len(nodes))
            nodes.append({})
            leaf.append(INVALID)
            for c in valid[cls].nonzero().flatten().tolist():
                node = roots[-1]
                for tok in seqs[c]:
                    if leaf[node] != INVALID:
                        raise ValueError(f"candidate {leaf[node]} is a prefix of candidate {c}: append an end token")
                    if tok not in nodes[node]:
                        nodes[node][tok] = len(nodes)
                        nodes.append({})
                        leaf.append(INVALID)
                    node = nodes[node][tok]
                if nodes[node] or leaf[node] != INVALID:
                    raise ValueError(
                        f"candidate {c} is a prefix of another: append an end token to make the set prefix-free"
                    )
                leaf[node] = c
        self.child = torch.full((len(nodes), vocab_size), INVALID, dtype=torch.long)
        for i, ch in enumerate(nodes):
            for tok, j in ch.items():
                self.child[i, tok] = j
        self.allowed = self.child >= 0
        self.leaf = torch.tensor(leaf, dtype=torch.long)
        self.root = torch.tensor(roots, dtype=torch.long)

    def step_allowed(self, seqs: torch.Tensor, state_class: torch.Tensor) -> torch.Tensor:
        """[C, L, V] allowed-token masks along each (padded) candidate path of ``seqs`` [C, L]
        under ``state_class``; positions past a path's end or off the trie are all False."""
        C, L = seqs.shape
        node = self.root[state_class].expand(C).clone()
        out = torch.zeros(C, L, self.child.shape[1], dtype=torch.bool)
        for j in range(L):
            on = node >= 0
            out[on, j] = self.allowed[node[on]]
            nxt = torch.full_like(node, INVALID)
            nxt[on] = self.child[node[on], seqs[on, j].clamp(min=0)]
            node = nxt
        return out
