"""Transcripts: one row per active UE-TTI, the env's own counters, the hidden state behind each decision,
the same env draws as ``mfsg simulate``, and trained players through the rollout (model §2)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from mfsg.config import ChurnConfig, EnvConfig
from mfsg.env import spec
from mfsg.interpret.transcripts import NO_NEXT, record_players, record_protocol
from mfsg.learn.mappo import MLPConfig, MLPPlayer
from mfsg.protocols import make_protocol, run_protocol

HORIZON = 12


def _cfg(n: int, p: float, churn: str = "fixed") -> EnvConfig:
    kind = ChurnConfig(kind="markov", n_min=1, n_max=n, p_join=0.3, p_leave=0.2) if churn == "markov" \
        else ChurnConfig(kind="fixed", n=n)
    return EnvConfig(p_arrival=p, horizon=HORIZON, churn=kind)


@given(protocol=st.sampled_from(["sr-grant", "genie", "aloha"]), n=st.integers(1, 5),
       p=st.floats(0.05, 1.0), churn=st.sampled_from(["fixed", "markov"]), seed=st.integers(0, 2**16))
def test_rows_match_the_env(protocol, n, p, churn, seed):
    cfg = _cfg(n, p, churn)
    tr = record_protocol(cfg, protocol, 6, seed)
    run = run_protocol(cfg, make_protocol(protocol, seed=seed), 6, seed)  # the same draws
    assert np.array_equal(tr.delivered, run["delivered"].numpy())
    assert tr.n_decisions == int(run["ue_ttis"].sum())
    per_ep = lambda m: np.bincount(tr.episode, weights=m, minlength=6)  # noqa: E731
    assert np.array_equal(per_ep(tr.ucm != 0), run["ucm_nonzero"].numpy())
    assert np.array_equal(per_ep(tr.dcm != 0), run["dcm_nonzero"].numpy())
    assert np.array_equal(per_ep(tr.access == spec.delete_action(cfg.n_rbg)), run["deleted"].numpy())
    # the hidden state is consistent with what the UE holds and what the BS decoded
    assert not (tr.hol_rx & (tr.buffer == 0)).any()
    assert not (tr.decoded_prev & ~tr.hol_rx).any()  # decoded in t−1 and not deleted since: received
    assert ((tr.access == spec.IDLE) | (tr.buffer > 0)).all()
    assert (tr.n_requesters >= (tr.prev_ucm != 0)).all()


def test_next_dcm_is_the_same_ues_next_dcm():
    tr = record_protocol(_cfg(3, 0.5, "markov"), "sr-grant", 8, 3)
    row = {(e, t, s): i for i, (e, t, s) in enumerate(zip(tr.episode, tr.t, tr.slot, strict=True))}
    follows = 0
    for i, (e, t, s, nxt) in enumerate(zip(tr.episode, tr.t, tr.slot, tr.next_dcm, strict=True)):
        if nxt != NO_NEXT:
            later = row[(e, t + 1, s)]
            assert tr.dcm[later] == nxt and tr.prev_dcm[later] == tr.dcm[i]  # what the BS sees next TTI
            follows += 1
    assert follows > 0
    assert (tr.next_dcm[tr.t == HORIZON - 1] == NO_NEXT).all()


def test_sr_grant_acks_exactly_the_received_head_of_line():
    tr = record_protocol(_cfg(4, 0.5), "sr-grant", 20, 1)
    # an ACKed dPDU is deleted in the TTI of the ACK, so "received" is "decoded in t−1"
    assert np.array_equal(tr.hol_rx, tr.decoded_prev)
    assert np.array_equal(tr.dcm == 1, tr.decoded_prev)


def test_trained_players_through_the_rollout():
    cfg = _cfg(3, 0.6)
    torch.manual_seed(0)
    leader = MLPPlayer("leader", cfg, MLPConfig(4, 16))
    follower = MLPPlayer("follower", cfg, MLPConfig(4, 16))
    tr = record_players(leader, follower, cfg, 8, 5, name="mlp")
    assert tr.name == "mlp" and tr.n_decisions == 8 * HORIZON * 3
    # random players use every message; the env would have raised on an invalid action
    assert set(np.unique(tr.dcm)) == set(range(cfg.dcm_vocab))
    again = record_players(leader, follower, cfg, 8, 5)
    assert np.array_equal(tr.ucm, again.ucm) and np.array_equal(tr.access, again.access)
    # same seed, same arrivals as the protocols see (arrivals do not depend on the actions)
    ref = record_protocol(cfg, "sr-grant", 8, 5)
    assert np.array_equal(tr.t, ref.t) and np.array_equal(tr.slot, ref.slot)


def test_subset_keeps_totals():
    tr = record_protocol(_cfg(2, 0.5), "aloha", 4, 0)
    sub = tr.subset(tr.buffer > 0)
    assert sub.n_decisions == int((tr.buffer > 0).sum()) and (sub.buffer > 0).all()
    assert np.array_equal(sub.delivered, tr.delivered)
