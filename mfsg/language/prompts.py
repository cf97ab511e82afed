"""SIE prompts (model §5; LLM4MAC Eqs. 7–8) rendered from batched observations.

A decision prompt is ``õ ⊕ Concat(f_role(n), f_tar(g), f_act(Ã))``: the observation text,
then ``<Role>``, ``<Target>`` and ``<Action candidate>``, then ``<Action>`` where the action
string starts. Prompts are short word sequences so that a word-level vocabulary covers them:

- UE n (Eq. 7): ``buf 2 ucm 0 acc IDLE dcm 3 <Role> UE 2 <Target> send own data
  <Action candidate> UCM 0 to 1 IDLE TX RBG 1 to 2 DELETE <Action>``
- BS-for-UE-n (Eq. 8): ``RBG 1 idle RBG 2 UE 1 UE 1 ucm 1 dcm 2 UE 2 ucm 0 dcm 0 <Role> BS for
  UE 2 <Target> max team data <Action candidate> DCM 0 to 3 <Action>`` — it lists every
  active UE, so its length grows with N.

Two UE prompts differ only in the role (``UE n``) and the UE's own observation; the BS
prompts of one TTI differ only in the role. ``no_sie`` drops role and target (the ablation).
UE numbers are slot indices + 1. The centralized-state prompt (value heads) lists all
agents' information, one segment per active UE, whose character spans are returned so a
critic can pool each UE's segment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mfsg.env import spec
from mfsg.language import grammar

ROLE, TARGET, CANDIDATES, ACTION, STATE = "<Role>", "<Target>", "<Action candidate>", "<Action>", "<State>"
TAGS = (ROLE, TARGET, CANDIDATES, ACTION, STATE)
UE_TARGET = "send own data"
BS_TARGET = "max team data"
OUTCOME_WORDS = {spec.OUT_IDLE: "idle", spec.OUT_UNDECODABLE: "bad"}
DEPARTED = "left"  # decoded dPDU of a UE that has since left
FIELD_WORDS = ("buf", "ucm", "acc", "dcm", "now", "t", "UE", "BS", "for", "RBG", "to")
# A UE segment of a BS prompt (``UE n ucm ...``) or a state prompt (``UE n buf ...``) opens with
# SEGMENT_OPENER, its label, then one of SEGMENT_FIELDS (see mfsg.language.positions).
SEGMENT_OPENER = "UE"
SEGMENT_FIELDS = ("ucm", "buf")


def words() -> list[str]:
    """Every non-digit word a prompt or an action can contain (the tokenizer's vocabulary)."""
    ws = set(grammar.terminals()) | set(FIELD_WORDS) | set(OUTCOME_WORDS.values()) | {DEPARTED}
    ws |= set(UE_TARGET.split()) | set(BS_TARGET.split())
    return sorted(ws)


@dataclass(frozen=True)
class PromptConfig:
    """``no_sie``: drop <Role> and <Target> (ablation); ``actor_time``: put t in decision prompts
    (off by default: the policy needs no clock and prompts then repeat, which deduplication exploits)."""

    no_sie: bool = False
    actor_time: bool = False


@dataclass
class Rendered:
    """Prompts of one batch of decisions: ``env[i], slot[i]`` say whose decision text ``i`` is;
    ``state_class[i]`` indexes the player's candidate table validity (UE: 1 = holds a dPDU).
    ``pieces[i]`` (when given) splits ``texts[i]`` at spaces between words, ``texts[i] ==
    " ".join(pieces[i])``: the observation part, then the SIE part; the pieces repeat across
    prompts (the BS prompts of an episode share their observation), so a word-level tokenizer
    can encode each piece once (:meth:`mfsg.language.policy.LanguagePolicy.encode`)."""

    texts: list[str]
    env: list[int]
    slot: list[int]
    state_class: list[int]
    pieces: list[tuple[str, ...]] = field(default_factory=list)

    def add(self, pieces: tuple[str, ...], env: int, slot: int, state_class: int) -> None:
        self.texts.append(" ".join(pieces))
        self.pieces.append(pieces)
        self.env.append(env)
        self.slot.append(slot)
        self.state_class.append(state_class)


def _sie(role: str, target: str, cands: str, cfg: PromptConfig) -> str:
    if cfg.no_sie:
        return f"{CANDIDATES} {cands} {ACTION}"
    return f"{ROLE} {role} {TARGET} {target} {CANDIDATES} {cands} {ACTION}"


def _outcomes(outcome: list[int], decoded: list[int], ue_id: list[int]) -> str:
    slot_of = {u: s for s, u in enumerate(ue_id) if u != spec.NO_UE}
    parts = []
    for k, (o, d) in enumerate(zip(outcome, decoded, strict=True), start=1):
        if o == spec.OUT_DECODED:
            who = f"UE {slot_of[d] + 1}" if d in slot_of else f"UE {DEPARTED}"
        else:
            who = OUTCOME_WORDS[o]
        parts.append(f"RBG {k} {who}")
    return " ".join(parts)


def _time(t: int, on: bool) -> str:
    return f"t {t} " if on else ""


def leader_prompts(obs: spec.LeaderObs, lim: grammar.Limits, cfg: PromptConfig) -> Rendered:
    """One BS-for-UE-n prompt per active (episode, slot) (Eq. 8), in row-major order."""
    active, ue_id = obs.active.tolist(), obs.ue_id.tolist()
    outc, dec = obs.outcome.tolist(), obs.decoded_id.tolist()
    pu, pd = obs.prev_ucm.tolist(), obs.prev_dcm.tolist()
    cands = grammar.candidate_summary("bs_action", lim)
    out = Rendered([], [], [], [])
    for e, act in enumerate(active):
        slots = [s for s, a in enumerate(act) if a]
        ues = " ".join(f"UE {s + 1} ucm {pu[e][s]} dcm {pd[e][s]}" for s in slots)
        o = f"{_time(int(obs.t), cfg.actor_time)}{_outcomes(outc[e], dec[e], ue_id[e])} {ues}"
        for s in slots:
            out.add((o, _sie(f"BS for UE {s + 1}", BS_TARGET, cands, cfg)), e, s, 0)
    return out


def follower_prompts(obs: spec.FollowerObs, lim: grammar.Limits, cfg: PromptConfig) -> Rendered:
    """One UE-n prompt per active (episode, slot) (Eq. 7), in row-major order."""
    active, buf = obs.active.tolist(), obs.buffer.tolist()
    pu, pa, dcm = obs.prev_ucm.tolist(), obs.prev_access.tolist(), obs.dcm.tolist()
    cands = {h: grammar.candidate_summary("ue_action", lim, has_dpdu=h) for h in (False, True)}
    tpart = _time(int(obs.t), cfg.actor_time)
    out = Rendered([], [], [], [])
    for e, act in enumerate(active):
        for s, a in enumerate(act):
            if not a:
                continue
            b = buf[e][s]
            o = f"{tpart}buf {b} ucm {pu[e][s]} acc {grammar.format_access(pa[e][s], lim.n_rbg)} dcm {dcm[e][s]}"
            out.add((o, _sie(f"UE {s + 1}", UE_TARGET, cands[b > 0], cfg)), e, s, int(b > 0))
    return out


@dataclass
class StatePrompts:
    """Centralized-state prompts, one per episode; ``spans[e]`` maps slot -> (start, end) chars
    of that UE's segment in ``texts[e]``."""

    texts: list[str]
    spans: list[dict[int, tuple[int, int]]]


def state_prompts(lobs: spec.LeaderObs, fobs: spec.FollowerObs, lim: grammar.Limits, with_dcm: bool) -> StatePrompts:
    """All agents' information (LLM4MAC §III-B3 critic input): t, per-RBG outcomes and, per active
    UE, buffer, last UCM/access/DCM; ``with_dcm`` adds the DCM just sent (``now d``), the
    followers' state after the leader's move. The leader's state (``with_dcm=False``) excludes it."""
    active, ue_id = lobs.active.tolist(), lobs.ue_id.tolist()
    outc, dec = lobs.outcome.tolist(), lobs.decoded_id.tolist()
    buf, pu, pa = fobs.buffer.tolist(), lobs.prev_ucm.tolist(), fobs.prev_access.tolist()
    pd, dcm = lobs.prev_dcm.tolist(), fobs.dcm.tolist()
    res = StatePrompts([], [])
    for e, act in enumerate(active):
        text = f"{STATE} t {int(lobs.t)} {_outcomes(outc[e], dec[e], ue_id[e])}"
        spans = {}
        for s, a in enumerate(act):
            if not a:
                continue
            acc = grammar.format_access(pa[e][s], lim.n_rbg)
            seg = f"UE {s + 1} buf {buf[e][s]} ucm {pu[e][s]} acc {acc} dcm {pd[e][s]}"
            if with_dcm:
                seg += f" now {dcm[e][s]}"
            start = len(text) + 1
            text = f"{text} {seg}"
            spans[s] = (start, len(text))
        res.texts.append(text)
        res.spans.append(spans)
    return res
