"""Rule-based baselines (model §6): valid actions, their defining behaviour, ordering, determinism."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.env import BatchedEnv
from mfsg.metrics import ratio_ci
from mfsg.protocols import (
    PROTOCOLS,
    Aloha,
    AlohaConfig,
    Genie,
    SpeculativeSrGrant,
    SrGrant,
    make_protocol,
    run_protocol,
)
from mfsg.protocols.sr_grant import observed_pointer

CHURNS = {
    "fixed": ChurnConfig(kind="fixed", n=4),
    "per_episode": ChurnConfig(kind="per_episode", n_min=1, n_max=5),
    "markov": ChurnConfig(kind="markov", n_min=1, n_max=5, p_join=0.4, p_leave=0.2),
    "trace": ChurnConfig(kind="trace", schedule=[[0, 1], [1, 2, 3], [0, 3], [2]] * 6),
}


@pytest.mark.parametrize("churn", CHURNS)
@pytest.mark.parametrize("name", PROTOCOLS)
@settings(max_examples=8)
@given(k=st.integers(1, 3), buffer=st.integers(1, 4), p=st.sampled_from([0.2, 0.7, 1.0]), seed=st.integers(0, 99))
def test_only_valid_actions(churn, name, k, buffer, p, seed):
    """check_actions=True raises on any invalid action; whole episodes must run through."""
    cfg = EnvConfig(n_rbg=k, buffer=buffer, p_arrival=p, tbler=0.1, churn=CHURNS[churn])
    run = run_protocol(cfg, make_protocol(name), 8, seed, chunk=5)
    assert run["ue_ttis"].shape == (8,)
    assert int(run["duplicates"].sum()) == 0  # every protocol deletes a dPDU once it is known received


@pytest.mark.parametrize("name", ["genie", "sr-grant", "sr-grant-speculative"])
@pytest.mark.parametrize("tbler", [0.0, 0.2])
@pytest.mark.parametrize("churn", CHURNS)
def test_only_received_dpdus_are_deleted(name, tbler, churn):
    cfg = EnvConfig(tbler=tbler, churn=CHURNS[churn])
    run = run_protocol(cfg, make_protocol(name), 64, 3)
    assert int(run["deleted_unreceived"].sum()) == 0
    if churn != "trace":  # the test trace replaces UEs faster than a request-grant-ACK cycle
        assert int(run["deleted"].sum()) > 0


def test_throughput_ordering():
    """genie >= sr-grant-speculative >= sr-grant >= aloha at p_a = 0.48, N = 6, K = 2 (seeded)."""
    cfg = EnvConfig(p_arrival=0.48, n_rbg=2, churn=ChurnConfig(kind="fixed", n=6))
    thr = {n: run_protocol(cfg, make_protocol(n), 400, 0)["delivered"].double().mean().item() for n in PROTOCOLS}
    assert thr["genie"] >= thr["sr-grant-speculative"] >= thr["sr-grant"] >= thr["aloha"]
    assert thr["aloha"] > 0


def test_same_seed_same_arrivals_across_protocols():
    """The env's draws do not depend on the actions: every protocol sees the same traffic."""
    cfg = EnvConfig(churn=CHURNS["markov"])
    runs = [run_protocol(cfg, make_protocol(n), 40, 11, chunk=16) for n in PROTOCOLS]
    for r in runs[1:]:
        assert torch.equal(r["generated"], runs[0]["generated"])
        assert torch.equal(r["joins"], runs[0]["joins"])


@pytest.mark.parametrize("name", PROTOCOLS)
def test_deterministic(name):
    cfg = EnvConfig(churn=CHURNS["per_episode"])
    a, b = (run_protocol(cfg, make_protocol(name, seed=5), 30, 2, chunk=16) for _ in range(2))
    for k in ("delivered", "collisions", "latency_hist", "jain", "buffer_sum"):
        assert torch.equal(a[k], b[k]), k


def _play(cfg: EnvConfig, proto, E: int, seed: int, check):
    """Drive ``proto`` by hand, calling ``check(env, lead, dcm, fol, ucm, access)`` every TTI."""
    env = BatchedEnv(cfg, E, seed=seed)
    proto.reset(env, seed)
    while not env.done:
        lead = env.begin_tti()
        dcm = proto.leader(lead)
        fol = env.deliver(dcm)
        ucm, access = proto.followers(fol)
        check(env, lead, dcm, fol, ucm, access)
        env.end_tti(ucm, access)
    return env


def test_genie_serves_longest_buffers_without_signaling():
    cfg = EnvConfig(n_rbg=2, p_arrival=(0.9, 0.6, 0.3, 0.1, 0.5), tbler=0.05, churn=ChurnConfig(kind="fixed", n=5))

    def check(env, lead, dcm, fol, ucm, access):
        assert not dcm.any() and not ucm.any()
        tx = (access >= 1) & (access <= cfg.n_rbg)
        eligible = fol.active & (fol.buffer > 0) & ~env.hol_rx
        assert torch.equal(access == cfg.n_rbg + 1, fol.active & (fol.buffer > 0) & env.hol_rx)
        n_tx = tx.sum(dim=1)
        assert torch.equal(n_tx, eligible.sum(dim=1).clamp(max=cfg.n_rbg))
        for e in range(env.E):  # RBGs distinct, and no waiting eligible UE has a longer buffer
            rbgs = access[e][tx[e]]
            assert len(set(rbgs.tolist())) == len(rbgs)
            waiting = eligible[e] & ~tx[e]
            if waiting.any() and tx[e].any():
                assert fol.buffer[e][waiting].max() <= fol.buffer[e][tx[e]].min()

    env = _play(cfg, Genie(), 16, 4, check)
    assert int(env.c.collisions.sum()) == 0


def test_sr_grant_transmits_only_on_grants_and_acks_receptions():
    cfg = EnvConfig(n_rbg=2, tbler=0.1, churn=ChurnConfig(kind="markov", n_min=2, n_max=6, p_join=0.3, p_leave=0.1))
    K = cfg.n_rbg

    def check(env, lead, dcm, fol, ucm, access):
        tx = (access >= 1) & (access <= K)
        assert torch.equal(access[tx], dcm[tx] - 1)  # TX exactly on the granted RBG
        decoded_prev = (lead.decoded_id[:, None, :] == lead.ue_id[:, :, None]).any(dim=2) & lead.active
        assert torch.equal(dcm == 1, decoded_prev)  # ACK exactly the UEs decoded in t-1
        granted = dcm >= 2
        assert (granted.sum(dim=1) <= K).all()
        assert not (granted & ~(lead.prev_ucm == 1)).any()  # grants only to requesters
        assert torch.equal(ucm == 1, fol.active & (fol.buffer - (access == K + 1).long() > 0))

    env = _play(cfg, SrGrant(), 16, 9, check)
    assert int(env.c.collisions.sum()) == 0
    assert int(env.c.delivered.sum()) > 0


def test_speculative_grants_fill_only_the_rbgs_sr_grant_leaves_idle():
    """The BS ACKs as SR/grant; the requesters are granted first (in cyclic order from the observed pointer), then
    the free RBGs go to active UEs neither requesting nor ACKed; RBGs distinct; the UE rule is SR/grant's."""
    cfg = EnvConfig(n_rbg=2, tbler=0.1, churn=ChurnConfig(kind="markov", n_min=1, n_max=6, p_join=0.3, p_leave=0.1))
    K = cfg.n_rbg
    reference = SrGrant()

    def check(env, lead, dcm, fol, ucm, access):
        ack = (lead.decoded_id[:, None, :] == lead.ue_id[:, :, None]).any(dim=2) & lead.active
        assert torch.equal(dcm == 1, ack)
        req = lead.active & (lead.prev_ucm == 1) & ~ack
        idle = lead.active & ~ack & ~req
        granted = dcm >= 2
        assert torch.equal(granted.sum(dim=1), (req | idle).sum(dim=1).clamp(max=K))  # every RBG that can be used
        assert not (granted & ~(req | idle)).any()
        assert torch.equal((granted & req).sum(dim=1), req.sum(dim=1).clamp(max=K))  # requesters first
        for e in range(env.E):
            rbgs = dcm[e][granted[e]]
            assert len(set(rbgs.tolist())) == len(rbgs)
        reference.K = K
        assert torch.equal(reference.followers(fol)[0], ucm) and torch.equal(reference.followers(fol)[1], access)

    env = _play(cfg, SpeculativeSrGrant(), 16, 9, check)
    assert int(env.c.collisions.sum()) == 0


def test_speculative_pointer_is_what_the_bs_observes():
    """The protocol keeps no memory: its pointer each TTI is observed_pointer of that TTI's observation."""
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=5))
    proto = SpeculativeSrGrant()

    def check(env, lead, dcm, fol, ucm, access):
        assert torch.equal(proto.ptr, observed_pointer(lead))

    _play(cfg, proto, 8, 3, check)
    assert proto.memoryless and not SrGrant.memoryless


@pytest.mark.parametrize("n", [2, 4, 8])
def test_speculative_grants_beat_sr_grant(n):
    """On the same draws the speculative BS delivers more than SR/grant by more than the 95 % interval, and
    at N <= K as much as the genie (every UE has an RBG of its own every TTI)."""
    cfg = EnvConfig(p_arrival=0.48, churn=ChurnConfig(kind="fixed", n=n))
    runs = {m: run_protocol(cfg, make_protocol(m), 256, 1)["delivered"].double().numpy() for m in
            ("genie", "sr-grant", "sr-grant-speculative")}
    gain = ratio_ci(runs["sr-grant-speculative"], runs["sr-grant"])
    assert gain.mean - gain.ci95 > 1.0, gain
    if n <= cfg.n_rbg:
        assert (runs["sr-grant-speculative"] == runs["genie"]).all()


def test_aloha_transmit_probability():
    """With q fixed, backlogged un-ACKed UEs transmit at rate q on uniform RBGs."""
    cfg = EnvConfig(n_rbg=2, p_arrival=1.0, churn=ChurnConfig(kind="fixed", n=4))
    seen = {"eligible": 0, "tx": 0, "rbg1": 0}

    def check(env, lead, dcm, fol, ucm, access):
        assert not ucm.any()
        eligible = fol.active & (fol.buffer > 0) & (dcm != 1)
        tx = (access >= 1) & (access <= 2)
        assert not (tx & ~eligible).any()
        seen["eligible"] += int(eligible.sum())
        seen["tx"] += int(tx.sum())
        seen["rbg1"] += int((access == 1).sum())

    _play(cfg, Aloha(AlohaConfig(q=0.3), seed=1), 256, 2, check)
    rate = seen["tx"] / seen["eligible"]
    assert abs(rate - 0.3) < 0.02
    assert abs(seen["rbg1"] / seen["tx"] - 0.5) < 0.03


def test_aloha_config_validated():
    for bad in (0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="aloha.q"):
            AlohaConfig(q=bad)
    assert AlohaConfig().q is None
    with pytest.raises(ConfigError, match="protocol"):
        make_protocol("csma")
