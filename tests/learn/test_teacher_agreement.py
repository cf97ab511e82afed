"""Case-by-case agreement of a leader with SR/grant (mfsg.learn.teacher_agreement)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mfsg.config import ChurnConfig, EnvConfig
from mfsg.learn.teacher_agreement import Case, leader_errors, requesters_ahead
from mfsg.protocols.base import DCM_ACK, DCM_NONE, UCM_REQUEST, acked
from mfsg.protocols.sr_grant import observed_pointer


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9).flatmap(lambda S: st.tuples(
    st.lists(st.lists(st.booleans(), min_size=S, max_size=S), min_size=1, max_size=4),
    st.integers(0, S - 1))))
def test_requesters_ahead_counts_the_cyclic_interval(args):
    rows, p = args
    req = torch.tensor(rows)
    E, S = req.shape
    got = requesters_ahead(req, torch.full((E,), p))
    for e in range(E):
        for s in range(S):
            assert got[e, s] == sum(rows[e][(p + j) % S] for j in range((s - p) % S))


def by_case(n_rbg: int):
    """SR/grant's DCM written as a function of the case alone: ACK, else RBG (ahead + 1) if requesting
    and fewer than K requesters are ahead, else none."""
    def decide(obs, e, s):
        ack = acked(obs)
        req = obs.active & (obs.prev_ucm == UCM_REQUEST) & ~ack
        ahead = requesters_ahead(req, observed_pointer(obs))
        grant = torch.where(req & (ahead < n_rbg), ahead + 1 + DCM_ACK, DCM_NONE)
        return torch.where(ack, DCM_ACK, grant)[e, s]
    return decide


@pytest.mark.parametrize("n", [2, 5, 8])
def test_the_case_determines_the_teachers_dcm(n):
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=n), p_arrival=0.5, horizon=40)
    cases, confusion = leader_errors(by_case(cfg.n_rbg), cfg, episodes=6, seed=3)
    assert sum(t for t, _ in cases.values()) == 6 * 40 * n
    assert sum(w for _, w in cases.values()) == 0 and confusion == {}
    assert {c.ahead for c in cases} == set(range(min(n - 1, cfg.n_rbg) + 1))  # every case occurs


def test_a_wrong_leader_is_counted_per_case():
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=4), p_arrival=0.5, horizon=30)
    cases, confusion = leader_errors(lambda obs, e, s: torch.full((len(e),), DCM_NONE), cfg, episodes=4, seed=1)
    right, _ = leader_errors(by_case(cfg.n_rbg), cfg, episodes=4, seed=1)
    assert cases.keys() == right.keys()
    for case, (total, wrong) in cases.items():
        # never sending a DCM is wrong exactly where SR/grant ACKs or grants
        assert wrong == (total if case.acked or (case.requesting and case.ahead < cfg.n_rbg) else 0)
    assert all(leader == DCM_NONE and teacher != DCM_NONE for (_, teacher, leader) in confusion)
    assert sum(confusion.values()) == sum(w for _, w in cases.values()) > 0
    assert Case(True, 0, True, False) in cases
