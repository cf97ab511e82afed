"""Imitation of a rule-based protocol (warm start and LLM-PL's training) and the warm-start config."""

import dataclasses
import json

import pytest
import torch

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.env import BatchedEnv, spec
from mfsg.learn import actions
from mfsg.learn.config import PolicyConfig, RunConfig, TrainConfig, train_config_from_dict
from mfsg.learn.imitation import (
    ImitationConfig,
    ObservedSrGrant,
    agreement,
    cosine_lr,
    dagger,
    deduplicate,
    demonstrations,
    fit,
    imitation_loss,
    sequence_log_likelihood,
)
from mfsg.learn.mappo import MLPConfig, MLPPlayer
from mfsg.learn.players import masked_log_probs
from mfsg.learn.train import Trainer, evaluate_players, load_players
from mfsg.protocols import make_protocol, run_protocol
from mfsg.protocols.sr_grant import SrGrant


def test_behaviour_cloning_reproduces_sr_grant():
    torch.manual_seed(0)
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=4), horizon=12)
    leader, follower = MLPPlayer("leader", cfg, MLPConfig(4, 64)), MLPPlayer("follower", cfg, MLPConfig(4, 64))
    demo_l, demo_f = demonstrations(cfg, make_protocol("sr-grant", seed=0), leader, follower, 128, 0)
    before = agreement(leader, demo_l)
    losses = fit(leader, demo_l, ImitationConfig(epochs=30, lr=3e-3, batch_size=256))
    fit(follower, demo_f, ImitationConfig(epochs=15, lr=3e-3, batch_size=256))
    assert losses[-1] < losses[0]
    assert agreement(leader, demo_l) > max(before + 0.2, 0.75)
    assert agreement(follower, demo_f) > 0.95
    learned = evaluate_players(leader, follower, cfg, episodes=256, seed=9, greedy=True)["throughput"]
    teacher = run_protocol(cfg, make_protocol("sr-grant", seed=1), 256, 9)["delivered"].double().mean() / cfg.horizon
    never_delete = 4 / cfg.horizon  # what PPO from scratch collapses to: one dPDU per UE per episode
    assert learned > max(0.9 * float(teacher), 2 * never_delete)


def test_warm_start_config_is_validated():
    with pytest.raises(ConfigError, match="policy.warm_start"):
        PolicyConfig(warm_start="telepathy")
    with pytest.raises(ConfigError, match="policy.imitation.steps"):
        train_config_from_dict({"policy": {"imitation": {"steps": 3}}})


def test_trainer_warm_start_logs_and_checkpoints(tmp_path):
    env = EnvConfig(churn=ChurnConfig(kind="fixed", n=2), horizon=6)
    cfg = TrainConfig(env=env, policy=PolicyConfig(kind="mlp", mlp=MLPConfig(2, 16), warm_start="sr-grant",
                                                   imitation=ImitationConfig(episodes=8, epochs=1)),
                      run=RunConfig(iterations=1, n_envs=4, threads=1, eval_ns=(2,), eval_episodes=2))
    Trainer(cfg, tmp_path).run(progress=False)
    log = json.loads((tmp_path / "warm_start.json").read_text())
    assert log["teacher"] == "sr-grant" and 0.0 <= log["leader_agreement"] <= 1.0
    assert (tmp_path / "final" / "leader.safetensors").exists()
    assert dataclasses.asdict(cfg.policy)["imitation"]["episodes"] == 8


# --------------------------------------------------------------------------- strong, cheap imitation


def test_observed_pointer_equals_hidden_pointer_after_a_grant():
    cfg = EnvConfig(churn=ChurnConfig(kind="per_episode", n_min=2, n_max=6), horizon=24)
    env = BatchedEnv(cfg, 64, seed=4)
    hidden, observed = SrGrant(), ObservedSrGrant()
    hidden.reset(env, 0)
    observed.reset(env, 0)
    checked = 0
    while not env.done:
        obs = env.begin_tti()
        dcm, seen = hidden.leader(obs), observed.leader(obs)
        granted = (obs.active & (obs.prev_dcm > 1)).any(dim=1)
        assert torch.equal(observed.ptr[granted], hidden.ptr[granted])
        assert torch.equal(seen[granted], dcm[granted])
        checked += int(granted.sum())
        env.end_tti(*hidden.followers(env.deliver(dcm)))
    assert checked > 100


def test_observed_teacher_is_a_function_of_the_leader_observation():
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=2), horizon=24)
    leader = MLPPlayer("leader", cfg, MLPConfig(2, 8))
    for teacher, ambiguous in ((ObservedSrGrant(), False), (SrGrant(), True)):
        demo, _ = demonstrations(cfg, teacher, leader, MLPPlayer("follower", cfg, MLPConfig(2, 8)), 64, 1)
        uniq = deduplicate(demo)
        assert bool(((uniq.counts > 0).sum(1) > 1).any()) == ambiguous


def test_deduplicated_demonstrations_have_the_same_loss_and_agreement():
    torch.manual_seed(0)
    cfg = EnvConfig(churn=ChurnConfig(kind="per_episode", n_min=2, n_max=4), horizon=8)
    leader, follower = MLPPlayer("leader", cfg, MLPConfig(4, 16)), MLPPlayer("follower", cfg, MLPConfig(4, 16))
    demo_l, demo_f = demonstrations(cfg, make_protocol("sr-grant"), leader, follower, 32, 2)
    for player, demo in ((leader, demo_l), (follower, demo_f)):
        uniq = deduplicate(demo)
        assert len(uniq) < len(demo) and uniq.counts.sum() == len(demo)
        with torch.no_grad():
            full = imitation_loss(player, demo, torch.arange(len(demo)))
            dedup = imitation_loss(player, uniq, torch.arange(len(uniq)))
        assert torch.allclose(full, dedup, rtol=1e-5)
        assert agreement(player, demo) == pytest.approx(agreement(player, uniq))


def test_cosine_schedule_and_per_player_epochs():
    assert cosine_lr(0, 10, 1e-3, 1e-5) == pytest.approx(1e-3)
    assert cosine_lr(9, 10, 1e-3, 1e-5) == pytest.approx(1e-5)
    assert cosine_lr(5, 10, 1e-3, None) == 1e-3
    cfg = ImitationConfig(epochs=7, follower_epochs=2)
    assert cfg.epochs_of("leader") == 7 and cfg.epochs_of("follower") == 2
    assert ImitationConfig(epochs=3).epochs_of("follower") == 3
    with pytest.raises(ConfigError, match="imitation.lr_final"):
        ImitationConfig(lr=1e-3, lr_final=1e-2)
    with pytest.raises(ConfigError, match="imitation.follower_epochs"):
        ImitationConfig(follower_epochs=0)
    with pytest.raises(ConfigError, match="imitation.weighting"):
        ImitationConfig(weighting="loudest")


def test_uniform_weighting_counts_each_distinct_input_once():
    torch.manual_seed(0)
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=2), horizon=8)
    leader = MLPPlayer("leader", cfg, MLPConfig(2, 8))
    demo, _ = demonstrations(cfg, ObservedSrGrant(), leader, MLPPlayer("follower", cfg, MLPConfig(2, 8)), 16, 0)
    uniq = deduplicate(demo)
    idx = torch.arange(len(uniq))
    with torch.no_grad():
        logp = masked_log_probs(leader.scores(uniq.inputs), uniq.mask).gather(1, uniq.action[:, None]).squeeze(1)
        assert torch.allclose(imitation_loss(leader, uniq, idx, "uniform"), -logp.mean())
        assert not torch.allclose(imitation_loss(leader, uniq, idx, "count"), -logp.mean())


def test_eval_modes_are_validated():
    with pytest.raises(ConfigError, match="run.eval_modes"):
        RunConfig(eval_modes=("sampled", "lucky"))


def test_imitated_players_are_saved_evaluated_and_loadable(tmp_path):
    env = EnvConfig(churn=ChurnConfig(kind="per_episode", n_min=2, n_max=3), horizon=6)
    imit = ImitationConfig(episodes=8, epochs=2, follower_epochs=1, dedup=True, observed_pointer=True,
                           heldout_episodes=2, lr_final=1e-4)
    cfg = TrainConfig(env=env, policy=PolicyConfig(kind="mlp", mlp=MLPConfig(3, 16), warm_start="sr-grant",
                                                   imitation=imit),
                      run=RunConfig(iterations=1, n_envs=4, threads=1, eval_ns=(2, 3), eval_episodes=2,
                                    eval_modes=("sampled", "greedy")))
    Trainer(cfg, tmp_path).run(progress=False)
    log = json.loads((tmp_path / "warm_start.json").read_text())
    assert len(log["leader_loss"]) == 2 and len(log["follower_loss"]) == 1
    assert set(log["heldout_agreement"]) == {"2", "3"}
    rows = [json.loads(x) for x in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert {(r["iteration"], r["n_ue"], r["mode"]) for r in rows} == {
        (it, n, m) for it in (-1, 0) for n in (2, 3) for m in ("sampled", "greedy")}
    assert all(r["genie_fraction"] > 0 and r["wall_s"] > 0 for r in rows)
    leader, follower, loaded = load_players(tmp_path / "imitated")
    first = [r for r in rows if r["iteration"] == -1 and r["n_ue"] == 2 and r["mode"] == "greedy"][0]
    again = evaluate_players(leader, follower, dataclasses.replace(env, churn=ChurnConfig(kind="fixed", n=2),
                                                                   p_arrival=cfg.run.eval_p_arrival),
                             episodes=2, seed=cfg.run.eval_seed, greedy=True)
    assert again["throughput"] == first["throughput"]


def test_sequence_objective_is_validated_and_needs_language_players():
    with pytest.raises(ConfigError, match="imitation.objective"):
        ImitationConfig(objective="vibes")
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=2), horizon=4)
    leader, follower = MLPPlayer("leader", cfg, MLPConfig(2, 8)), MLPPlayer("follower", cfg, MLPConfig(2, 8))
    demo_l, _ = demonstrations(cfg, make_protocol("sr-grant", seed=0), leader, follower, 2, 0)
    with pytest.raises(ConfigError, match="imitation.objective='sequence' is invalid for a MLPPlayer"):
        fit(leader, demo_l, ImitationConfig(epochs=1, objective="sequence"))


def test_sequence_objective_raises_the_likelihood_of_the_teachers_text():
    """LLM-PL's objective: the LM's own probability of the teacher's action text (first word and end
    token included) goes up, which the candidate softmax alone does not ask for."""
    from mfsg.learn.language_players import make_language_players

    torch.manual_seed(0)
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=2), horizon=4)
    leader, follower = make_language_players(cfg, {"pretrained": False, "seed": 0})
    demo_l, _ = demonstrations(cfg, make_protocol("sr-grant", seed=0), leader, follower, 4, 0)

    def teacher_loglik():
        with torch.no_grad():
            return sequence_log_likelihood(leader, demo_l.inputs).gather(1, demo_l.action[:, None]).mean().item()

    before = teacher_loglik()
    losses = fit(leader, demo_l, ImitationConfig(epochs=5, lr=3e-3, batch_size=16, objective="sequence"))
    assert losses[-1] < losses[0]
    assert teacher_loglik() > before + 1.0


def test_language_engine_is_a_config_field():
    """``[policy.language] engine`` reaches the policy (same actions as the default engine); bad values name the field."""
    from mfsg.learn.language_players import make_language_players

    env = EnvConfig(churn=ChurnConfig(kind="fixed", n=3))
    opts = {"pretrained": False}
    runs = []
    for engine in ("fast", "numpy"):
        leader, follower = make_language_players(env, {**opts, "engine": engine, "score_cache": 0})
        assert leader.policy.cfg.engine == engine and leader.policy.cfg.score_cache == 0
        runs.append(evaluate_players(leader, follower, env, episodes=2, seed=3, greedy=True)["throughput"])
    assert runs[0] == runs[1]
    with pytest.raises(ConfigError, match=r"policy\.language\.engine='jit' is invalid: allowed one of hf, fast, numpy"):
        make_language_players(env, {**opts, "engine": "jit"})
    with pytest.raises(ConfigError, match=r"policy\.language\.score_cache=-1 is invalid"):
        make_language_players(env, {**opts, "score_cache": -1})


def test_language_positions_is_a_config_field(tmp_path):
    """``[policy.language] positions`` reaches the backbone; a pretrained checkpoint must match it."""
    from mfsg.language.backbones import BackboneConfig, build_backbone, save_backbone
    from mfsg.language.positions import PositionRule
    from mfsg.learn.language_players import make_language_players

    env = EnvConfig(churn=ChurnConfig(kind="fixed", n=3))
    leader, follower = make_language_players(env, {"pretrained": False, "positions": "ue_set"})
    assert PositionRule.of(leader.policy.model).scheme == PositionRule.of(follower.policy.model).scheme == "ue_set"
    assert evaluate_players(leader, follower, env, episodes=1, seed=3, greedy=True)["valid_action_rate"] == 1.0
    save_backbone(*build_backbone(BackboneConfig()), tmp_path / "lm")
    with pytest.raises(ConfigError, match=r"backbone\.positions='ue_set' is invalid for the checkpoint"):
        make_language_players(env, {"checkpoint": str(tmp_path / "lm"), "positions": "ue_set"})
    with pytest.raises(ConfigError, match=r"policy\.language\.positions='rope' is invalid: allowed one of absolute, ue_set"):
        make_language_players(env, {"pretrained": False, "positions": "rope"})


# --------------------------------------------------------------------------- DAgger


def test_student_driven_demonstrations_follow_the_student_and_carry_teacher_labels():
    """``drive="student"``: the episodes follow the players' greedy actions, the labels are the teacher's."""
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=3), horizon=10)
    torch.manual_seed(0)
    leader, follower = MLPPlayer("leader", cfg, MLPConfig(3, 16)), MLPPlayer("follower", cfg, MLPConfig(3, 16))
    with torch.no_grad():  # students that never send a DCM or data, and always request (UCM 1)
        for player, silent in ((leader, 0), (follower, int(actions.follower_index(cfg, torch.tensor(1), spec.IDLE)))):
            player.actor[-1].weight.zero_()
            player.actor[-1].bias.copy_(torch.nn.functional.one_hot(torch.tensor(silent), player.actor[-1].bias.numel()))
    teacher = ObservedSrGrant(seed=0)
    by_teacher, _ = demonstrations(cfg, teacher, leader, follower, 16, 5)
    by_student, _ = demonstrations(cfg, teacher, leader, follower, 16, 5, drive="student")
    assert len(by_teacher) == len(by_student) == 16 * 10 * 3
    labels = by_student.action
    assert (labels > 1).any()  # the teacher grants where the student did not
    # under the students no dPDU is ever sent, so none is decoded and the teacher never ACKs
    assert not (labels == 1).any() and (by_teacher.action == 1).any()
    with pytest.raises(ConfigError, match="drive"):
        demonstrations(cfg, teacher, leader, follower, 2, 0, drive="teacher-forcing")


def test_dagger_needs_a_teacher_that_labels_any_state():
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=2), horizon=4)
    leader, follower = MLPPlayer("leader", cfg, MLPConfig(2, 8)), MLPPlayer("follower", cfg, MLPConfig(2, 8))
    demo_l, demo_f = demonstrations(cfg, SrGrant(), leader, follower, 2, 0)
    with pytest.raises(ConfigError, match="imitation.observed_pointer"):
        dagger(cfg, SrGrant(), leader, follower, demo_l, demo_f, ImitationConfig(dagger_rounds=1))
    with pytest.raises(ConfigError, match="imitation.dagger_rounds"):
        ImitationConfig(dagger_rounds=-1)


def test_dagger_raises_agreement_on_the_players_own_states():
    """After brief cloning, DAgger's rounds raise agreement with the teacher on the states the players visit."""
    cfg = EnvConfig(churn=ChurnConfig(kind="fixed", n=4), horizon=12)
    torch.manual_seed(0)
    leader, follower = MLPPlayer("leader", cfg, MLPConfig(4, 64)), MLPPlayer("follower", cfg, MLPConfig(4, 64))
    teacher = ObservedSrGrant(seed=0)
    im = ImitationConfig(epochs=4, lr=3e-3, batch_size=256, dagger_rounds=3, dagger_episodes=64, dagger_epochs=4,
                         dagger_lr=3e-3)
    demo_l, demo_f = demonstrations(cfg, teacher, leader, follower, 64, 0)
    fit(follower, demo_f, im)
    fit(leader, demo_l, im)
    log = dagger(cfg, teacher, leader, follower, demo_l, demo_f, im)
    own_l, _ = demonstrations(cfg, teacher, leader, follower, 64, 99, drive="student")
    assert [r["round"] for r in log] == [0, 1, 2]
    assert agreement(leader, own_l) > log[0]["leader_agreement"] + 0.02


def test_trainer_runs_dagger_in_the_warm_start(tmp_path):
    env = EnvConfig(churn=ChurnConfig(kind="fixed", n=2), horizon=6)
    im = ImitationConfig(episodes=8, epochs=1, observed_pointer=True, dagger_rounds=2, dagger_episodes=4, dagger_epochs=1)
    cfg = TrainConfig(env=env, policy=PolicyConfig(kind="mlp", mlp=MLPConfig(2, 16), warm_start="sr-grant", imitation=im),
                      run=RunConfig(iterations=1, n_envs=4, threads=1, eval_ns=(2,), eval_episodes=2))
    Trainer(cfg, tmp_path).run(progress=False)
    log = json.loads((tmp_path / "warm_start.json").read_text())
    assert [r["round"] for r in log["dagger"]] == [0, 1] and log["dagger"][0]["decisions"] == 4 * 6 * 2
    assert log["seconds"]["dagger"] > 0
