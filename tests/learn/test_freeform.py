"""Free-form (no-PAG) evaluation of language players (model §5/§6): invalid outputs are counted and
replaced by the documented fallback, never repaired; PAG decoding stays valid."""

import json

import pytest
import torch

from mfsg.cli import main
from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.env import BatchedEnv
from mfsg.learn.freeform import FreeformConfig, evaluate_freeform, free_decoding, freeform_rollout
from mfsg.learn.language_players import make_language_players
from mfsg.learn.mappo import MLPPlayer
from mfsg.learn.train import evaluate_players

N_UE = 2
ENV = EnvConfig(horizon=2, churn=ChurnConfig(kind="fixed", n=N_UE))


@pytest.fixture(scope="module")
def random_players():
    torch.manual_seed(0)
    return make_language_players(ENV, {"pretrained": False, "seed": 3})


def test_random_weights_free_form_rate_below_one_and_counted(random_players):
    leader, follower = random_players
    m = evaluate_freeform(leader, follower, ENV, episodes=4, seed=1)
    decisions = 2 * 4 * N_UE * ENV.horizon  # leader + follower, E episodes, N UEs, T TTIs
    assert m["valid_action_rate"] < 1.0
    assert m["invalid_outputs"] > 0
    expected = 1 - m["invalid_outputs"] * 4 / decisions
    assert m["valid_action_rate"] == pytest.approx(expected)
    assert min(m["leader_valid_rate"], m["follower_valid_rate"]) <= m["valid_action_rate"] <= max(
        m["leader_valid_rate"], m["follower_valid_rate"])


def test_pag_stays_valid(random_players):
    leader, follower = random_players
    assert evaluate_players(leader, follower, ENV, episodes=4, seed=1)["valid_action_rate"] == 1.0


def test_invalid_outputs_execute_the_fallback(random_players, monkeypatch):
    """Every output invalid: the channel sees only the fallback (DCM 1, UCM 1 with IDLE)."""
    leader, follower = random_players
    import mfsg.learn.freeform as ff

    def all_invalid(player, rendered, greedy, gen):
        n = 1 if player.role == "leader" else 2
        M = len(rendered.env)
        return torch.tensor(rendered.env), torch.tensor(rendered.slot), torch.full((M, n), -1)

    monkeypatch.setattr(ff, "_decide", all_invalid)
    env = BatchedEnv(ENV, 2, seed=0)
    counts = freeform_rollout(env, leader, follower, seed=0, cfg=FreeformConfig(fallback_dcm=1, fallback_ucm=1))
    assert counts.valid_rate() == 0.0 and counts.decisions == 2 * 2 * N_UE * ENV.horizon
    c = env.c
    assert int(c.tx.sum()) == 0 and int(c.deleted.sum()) == 0  # IDLE only
    assert int(c.dcm_nonzero.sum()) == int(c.ucm_nonzero.sum()) == 2 * N_UE * ENV.horizon


def test_free_decoding_is_restored_and_seeded(random_players):
    leader, follower = random_players
    before = leader.policy.cfg
    with free_decoding(leader):
        assert leader.policy.cfg.decoding == "free"
    assert leader.policy.cfg is before
    a = evaluate_freeform(leader, follower, ENV, episodes=2, seed=5)
    b = evaluate_freeform(leader, follower, ENV, episodes=2, seed=5)
    for k in ("valid_action_rate", "throughput", "signaling_rate", "invalid_outputs"):
        assert a[k] == b[k]


def test_fallback_config_is_validated(random_players):
    with pytest.raises(ConfigError, match="freeform.fallback_dcm"):
        FreeformConfig(fallback_dcm=-1)
    leader, follower = random_players
    with pytest.raises(ConfigError, match=r"freeform.fallback_ucm=2 is invalid"):
        evaluate_freeform(leader, follower, ENV, episodes=1, seed=0, cfg=FreeformConfig(fallback_ucm=2))
    mlp = MLPPlayer("leader", ENV), MLPPlayer("follower", ENV)
    with pytest.raises(ConfigError, match="language players"):
        evaluate_freeform(*mlp, ENV, episodes=1, seed=0)


def test_evaluate_command_rejects_unknown_decoding(capsys):
    assert main(["evaluate", "--checkpoint", "nowhere", "--n-ue", "2", "--p-arrival", "0.5",
                 "--decoding", "beam"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--decoding='beam' is invalid" in err and len(err.splitlines()) == 1


def test_evaluate_command_free_decoding_on_a_language_run(tmp_path, random_players, capsys):
    """A saved run of random-weight language players: `mfsg evaluate --decoding free` reports the real rate."""
    from mfsg.learn import checkpoint
    from mfsg.learn.config import PolicyConfig, RunConfig, TrainConfig, train_config_to_dict

    leader, follower = random_players
    cfg = TrainConfig(env=ENV, policy=PolicyConfig(kind="language", language={"pretrained": False, "seed": 3}),
                      run=RunConfig(iterations=1))
    checkpoint.save(tmp_path / "final", modules={"leader": leader, "follower": follower}, optimizers={},
                    iteration=0, extra={"config": train_config_to_dict(cfg)})
    args = ["evaluate", "--checkpoint", str(tmp_path / "final"), "--n-ue", "2", "--p-arrival", "0.5",
            "--episodes", "2", "--json"]
    assert main([*args, "--decoding", "free"]) == 0
    free = json.loads(capsys.readouterr().out)
    assert free["valid_action_rate"] < 1.0 and free["invalid_outputs"] > 0
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["valid_action_rate"] == 1.0
    assert main([*args, "--decoding", "free", "--fallback-dcm", "9"]) == 2
    assert "--fallback-dcm=9 is invalid" in capsys.readouterr().err
