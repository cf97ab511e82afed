"""`mfsg experiment`: config validation, CLI errors, and small end-to-end runs into a tmp
folder with the result schema (CSV columns, result.json provenance, figures)."""

import csv
import json
import tomllib
from pathlib import Path

import pytest
import torch

from mfsg.cli import main
from mfsg.config import ConfigError
from mfsg.experiments import EXPERIMENTS
from mfsg.experiments.common import CONFIG_DIR, FIGURE_FORMATS, load_experiment_config
from mfsg.learn import checkpoint
from mfsg.learn.config import MLPConfig, PolicyConfig, RunConfig, TrainConfig, train_config_to_dict
from mfsg.learn.mappo import MLPPlayer

PROVENANCE = ("experiment", "mode", "command", "git", "started_utc", "wall_clock_s", "seeds", "config", "files")
E6_CHECKS = {"exact_vs_monte_carlo_N2", "follower_stationarity", "leader_stationarity", "g_F_vs_welfare_gradient",
             "follower_soc", "leader_soc", "hurwitz", "discrete_time", "tau_critical", "hurwitz_under_churn"}


def _config_module(name):
    import importlib

    return importlib.import_module(EXPERIMENTS[name][0])


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def _rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def mlp_checkpoint(tmp_path_factory) -> Path:
    """Untrained symbolic MAPPO players saved as a run's final/ folder (default scenario, N = 4)."""
    torch.manual_seed(0)
    cfg = TrainConfig(policy=PolicyConfig(kind="mlp", mlp=MLPConfig(n_model_slots=4, hidden=8)),
                      run=RunConfig(iterations=1))
    leader, follower = MLPPlayer("leader", cfg.env, cfg.policy.mlp), MLPPlayer("follower", cfg.env, cfg.policy.mlp)
    path = tmp_path_factory.mktemp("ckpt") / "final"
    checkpoint.save(path, modules={"leader": leader, "follower": follower}, optimizers={}, iteration=1,
                    extra={"config": train_config_to_dict(cfg)})
    return path


# ---------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_committed_configs_load_in_both_modes(name):
    cls = getattr(_config_module(name), f"{name.upper()}Config")
    full = load_experiment_config(cls, CONFIG_DIR / f"{name}.toml", False, name)
    quick = load_experiment_config(cls, CONFIG_DIR / f"{name}.toml", True, name)
    assert full != quick


@pytest.mark.parametrize(("name", "text", "match"), [
    ("e1", "p_arrival = [0.1, 1.5]", r"e1.p_arrival\[1\]=1.5 is invalid"),
    ("e1", "methods = ['genie', 'oracle']", "e1.methods=.* allowed a non-empty list of distinct names"),
    ("e1", "bogus = 1", "e1.bogus is not a known field"),
    ("e1", "greedy = 1", "e1.greedy=1 is invalid: allowed true or false"),
    ("e1", "[quick]\nbogus = 1", "e1.quick.bogus is not a known field"),
    ("e1", "[checkpoints]\nsomething = 'x'", "e1.checkpoints.something is not a known checkpoint"),
    ("e2", "genie_episodes = 0", "e2.genie_episodes=0 is invalid"),
    ("e2", "[runs]\nmfsg = ''", "e2.runs is invalid"),
    ("e2", "greedy = 'yes'", "e2.greedy"),
    ("e3", "seen_n = [2, 7]\nunseen_n = [7]", "e3.unseen_n=.* allowed N not in seen_n"),
    ("e3", "[variants]\ngenie = 'x'", "e3.variants.genie is invalid: allowed a label that is not a method name"),
    ("e3", "[variants]\nold = ''", "e3.variants.old='' is invalid: allowed a checkpoint path"),
    ("e3", "[variants.old]\nconfig = 'no/such.toml'\ncheckpoint = 'x'",
     "e3.variants.old.config='no/such.toml' is invalid: allowed the path of a training config"),
    ("e3", "[variants.old]\nconfig = 'experiments/configs/mfsg_tau1.toml'\ncheckpoint = 'x'\nseed = 1",
     "e3.variants.old.seed is not a known field: allowed checkpoint, config"),
    ("e5", "[configs]\ntau1 = 'no/such.toml'\n[checkpoints]\nmfsg = 'x'",
     "e5.configs.tau1='no/such.toml' is invalid: allowed the path of a training config"),
    ("e5", "[configs]\nfull = 'x.toml'\n[checkpoints]\nmfsg = 'x'", "e5.configs.full is not a known checkpoint"),
    ("e4", "methods = ['genie']", "e4.methods="),
    ("e4", "fallback_dcm = -1", "freeform.fallback_dcm=-1 is invalid"),
    ("e5", "[checkpoints]\nmfsg = ''", "e5.checkpoints.mfsg is invalid"),
    ("e6", "[checkpoints]\nmappo = ''", "e6.checkpoints is invalid: allowed at least one checkpoint path"),
    ("e6", "n = []\n[checkpoints]\nmappo = 'x'", r"e6.n=.* is invalid: allowed a non-empty list"),
    ("e6", "buffer = 0\n[checkpoints]\nmappo = 'x'", "e6.buffer=0 is invalid"),
])
def test_bad_config_values_name_the_field(tmp_path, name, text, match):
    with pytest.raises(ConfigError, match=match):
        load_experiment_config(getattr(_config_module(name), f"{name.upper()}Config"), _write(tmp_path, name, text), True, name)


def test_quick_table_overrides_nested_tables_key_by_key(tmp_path):
    text = "[checkpoints]\nmfsg = 'a'\nmappo = 'b'\n[quick]\nn_ue = [3]\n[quick.checkpoints]\nmfsg = ''\n"
    cls = _config_module("e1").E1Config
    quick = load_experiment_config(cls, _write(tmp_path, "e1", text), True, "e1")
    full = load_experiment_config(cls, tmp_path / "e1.toml", False, "e1")
    assert quick.checkpoints == {"mfsg": "", "mappo": "b"} and quick.n_ue == (3,)
    assert full.checkpoints == {"mfsg": "a", "mappo": "b"} and full.n_ue == cls().n_ue


# ---------------------------------------------------------------------------- CLI errors
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_experiment_name_is_usage_error(capsys):
    assert main(["experiment", "e9"]) == 2
    err = _one_line_error(capsys)
    assert "NAME='e9' is invalid" in err and "e1, e2, e3, e4, e5, e6, all" in err


def test_missing_checkpoint_names_field_and_path(tmp_path, capsys):
    cfg = _write(tmp_path, "e3", "methods = ['genie', 'mfsg']\n[checkpoints]\nmfsg = 'no/such/run'\n")
    assert main(["experiment", "e3", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = _one_line_error(capsys)
    assert "e3.checkpoints.mfsg='no/such/run' is invalid" in err
    assert main(["experiment", "e3", "--checkpoint", "mfsg"]) == 2
    assert "--checkpoint='mfsg' is invalid" in _one_line_error(capsys)
    cfg = _write(tmp_path, "e3", "methods = ['genie']\n[variants]\nold = 'no/such/run'\n")
    assert main(["experiment", "e3", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "e3.variants.old='no/such/run' is invalid: no checkpoint there" in _one_line_error(capsys)


# ---------------------------------------------------------------------------- end to end
def test_e1_baselines_quick_run_schema_and_determinism(tmp_path, capsys):
    text = ("p_arrival = [0.3, 0.6]\nn_ue = [2, 3]\nmethods = ['genie', 'sr-grant', 'aloha']\n"
            "baseline_episodes = 4\nseed = 3\nplot_n = 3\nplot_p = 0.6\n")
    cfg = _write(tmp_path, "e1", text)
    assert main(["experiment", "e1", "--quick", "--config", str(cfg), "--out", str(tmp_path / "a")]) == 0
    assert "e1 (quick)" in capsys.readouterr().out
    assert main(["experiment", "e1", "--quick", "--config", str(cfg), "--out", str(tmp_path / "b"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads((tmp_path / "b" / "result.json").read_text())
    assert set(PROVENANCE) <= set(doc) and doc["mode"] == "quick" and doc["seeds"] == {"seed": 3}
    assert doc["command"].startswith("mfsg ") and doc["ours"] is None  # no learned MFSG players in this run
    rows = _rows(tmp_path / "a" / "e1.csv")
    assert len(rows) == 3 * 2 * 2
    assert {"method", "n_ue", "p_arrival", "throughput", "genie_fraction", "jain", "valid_action_rate",
            "team_return"} <= set(rows[0])
    assert all(float(r["genie_fraction"]) == 1.0 for r in rows if r["method"] == "genie")
    assert rows == _rows(tmp_path / "b" / "e1.csv")  # seeded: identical tables
    for stem in ("vs_p_arrival", "vs_n_ue"):
        for ext in FIGURE_FORMATS:
            assert (tmp_path / "a" / f"{stem}.{ext}").stat().st_size > 1000


def test_e2_quick_reads_committed_runs(tmp_path):
    assert main(["experiment", "e2", "--quick", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "e2.csv")
    assert {"run", "iteration", "n_ue", "normalized_utility", "genie_throughput"} <= set(rows[0])
    assert all(0 <= float(r["normalized_utility"]) <= 1.5 for r in rows)
    doc = json.loads((tmp_path / "result.json").read_text())
    committed = tomllib.loads((CONFIG_DIR / "e2.toml").read_text())["runs"]
    assert set(doc["runs"]) | set(doc["missing"]) == set(committed) and {"mfsg", "mappo"} <= set(doc["runs"])
    for run in doc["runs"].values():  # committed results are named after their config
        assert run["status"] == "current" or "to be rerun on the current default" in run["status"]
    # one action mode per run: greedy where the run logged it, else sampled
    assert doc["runs"]["mfsg"]["actions"] == "greedy" and doc["runs"]["mappo"]["actions"] == "sampled"
    keys = [(r["run"], r["iteration"], r["n_ue"]) for r in rows]
    assert len(keys) == len(set(keys)) and {r["actions"] for r in rows if r["run"] == "mfsg"} == {"greedy"}
    assert {"normalized_utility.svg", "training_curves.svg"} <= set(doc["files"])


def test_e2_lists_a_run_without_results_and_reads_the_others(tmp_path):
    cfg = _write(tmp_path, "e2", "genie_episodes = 4\n[runs]\nmappo = 'experiments/results/mappo_n6'\n"
                 "later = 'experiments/results/not_trained_yet'\n")
    assert main(["experiment", "e2", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 0
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert set(doc["runs"]) == {"mappo"} and doc["runs"]["mappo"]["status"] == "current"
    assert doc["missing"] == {"later": "no results at experiments/results/not_trained_yet yet"}


def test_e3_e4_with_a_learned_checkpoint(tmp_path, mlp_checkpoint):
    e3 = _write(tmp_path, "e3", "seen_n = [2]\nunseen_n = [5]\nmarkov_n_max = 5\nmethods = ['genie', 'mappo']\n"
                f"baseline_episodes = 4\nlearned_episodes = 4\n[variants]\n'same mappo' = '{mlp_checkpoint}'\n")
    assert main(["experiment", "e3", "--config", str(e3), "--out", str(tmp_path / "e3"),
                 "--checkpoint", f"mappo={mlp_checkpoint}"]) == 0
    rows = _rows(tmp_path / "e3" / "e3.csv")
    assert [(r["method"], r["kind"]) for r in rows][::3] == [("genie", "seen"), ("genie", "unseen"), ("genie", "markov")]
    twins = [(r, v) for r, v in zip(rows[1::3], rows[2::3], strict=True)]
    assert all(r["method"] == "mappo" and v["method"] == "same mappo" for r, v in twins)
    assert all(r["throughput"] == v["throughput"] and r["genie_fraction"] == v["genie_fraction"] for r, v in twins)
    doc = json.loads((tmp_path / "e3" / "result.json").read_text())
    assert set(doc["by_method"]["mappo"]) >= {"seen", "unseen", "markov", "change_unseen_vs_seen"}
    e4 = _write(tmp_path, "e4", "n_ue = [2]\nmethods = ['mappo', 'mfsg']\nepisodes = 2\n[checkpoints]\nmfsg = ''\n")
    assert main(["experiment", "e4", "--config", str(e4), "--out", str(tmp_path / "e4"),
                 "--checkpoint", f"mappo={mlp_checkpoint}"]) == 0
    rows = _rows(tmp_path / "e4" / "e4.csv")
    assert [r["method"] for r in rows] == ["mappo"] and float(rows[0]["valid_action_rate"]) == 1.0
    assert float(rows[0]["ms_per_decision"]) > 0
    assert json.loads((tmp_path / "e4" / "result.json").read_text())["skipped_methods"] == ["mfsg"]


@pytest.mark.slow
def test_e6_on_the_exact_instance(tmp_path, mlp_checkpoint):
    """E6 on symbolic players: the exact game of the smallest instance, every check with a verdict, the
    spectra written, and the robustness row at the moved P_N."""
    text = "buffer = 1\nhorizon = 1\nn = [2]\nchurn_n = 1\nmc_episodes = 200\nk = 2\n[checkpoints]\nmappo = 'x'\n"
    cfg = _write(tmp_path, "e6", text)
    assert main(["experiment", "e6", "--config", str(cfg), "--out", str(tmp_path / "o"),
                 "--checkpoint", f"mappo={mlp_checkpoint}"]) in (0, 1, 3)
    checks = _rows(tmp_path / "o" / "e6_checks.csv")
    assert {r["check"] for r in checks} == E6_CHECKS
    assert all(r["verdict"] in ("pass", "fail", "inconclusive") for r in checks)
    assert all(r["verdict"] != "pass" or r["value"] not in ("", "nan") for r in checks)  # no pass without a value
    mc = next(r for r in checks if r["check"] == "exact_vs_monte_carlo_N2")
    assert mc["verdict"] == "pass", mc  # the exact utilities are the simulator's expectation
    assert any(r["game"].endswith("@N=1") for r in checks if r["check"] == "hurwitz_under_churn")
    eig = _rows(tmp_path / "o" / "e6_eigenvalues.csv")
    assert {e["operator"] for e in eig} >= {"J_tau"} and {e["churn"] for e in eig} >= {"base"}
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    facts = doc["checkpoints"]["mappo"]["facts"]
    assert facts["dim_x"] > 0 and facts["dim_y"] > 0 and "K=2, B=1, T=1" in facts["instance"]
    assert "jtau_spectrum.svg" in doc["files"]


# the config of the mlp_checkpoint fixture, and a variant of it
MLP_RECIPE = "[policy]\nkind = 'mlp'\n[policy.mlp]\nn_model_slots = 4\nhidden = 8\n[run]\niterations = 1\n"


def test_variants_made_from_another_recipe_are_not_evaluated(tmp_path, mlp_checkpoint):
    """E3 and E5 evaluate a variant's checkpoint only if its config (and, for E5, the full players' base
    recipe) gives what it was trained with; otherwise they say why, and still run."""
    recipe = _write(tmp_path, "recipe", MLP_RECIPE)
    variant = _write(tmp_path, "variant", "base = 'recipe.toml'\n[ppo]\ntau = 1.0\n")
    missing = tmp_path / "not-trained"
    e3 = _write(tmp_path, "e3", "seen_n = [2]\nunseen_n = [3]\nmarkov_n_max = 3\nmethods = ['genie']\n"
                "baseline_episodes = 2\nlearned_episodes = 2\n"
                f"[variants.same]\nconfig = '{recipe}'\ncheckpoint = '{mlp_checkpoint}'\n"
                f"[variants.stale]\nconfig = '{variant}'\ncheckpoint = '{mlp_checkpoint}'\n"
                f"[variants.untrained]\nconfig = '{variant}'\ncheckpoint = '{missing}'\n")
    assert main(["experiment", "e3", "--config", str(e3), "--out", str(tmp_path / "e3")]) == 0
    doc = json.loads((tmp_path / "e3" / "result.json").read_text())
    assert doc["methods"] == ["genie", "same"] and set(doc["not_evaluated"]) == {"stale", "untrained"}
    assert "earlier recipe" in doc["not_evaluated"]["stale"] and "ppo.tau" in doc["not_evaluated"]["stale"]
    assert "not trained yet" in doc["not_evaluated"]["untrained"]
    e5 = _write(tmp_path, "e5", "n_ue = [2]\nablations = ['full', 'tau1', 'no-sie']\nepisodes = 2\n"
                f"[configs]\ntau1 = '{variant}'\nno_sie = '{variant}'\n"
                f"[checkpoints]\nmfsg = '{mlp_checkpoint}'\ntau1 = '{mlp_checkpoint}'\nno_sie = '{missing}'\n")
    assert main(["experiment", "e5", "--config", str(e5), "--out", str(tmp_path / "e5")]) == 0
    doc = json.loads((tmp_path / "e5" / "result.json").read_text())
    assert doc["ablations"] == ["full"] and set(doc["unavailable"]) == {"tau1", "no-sie"}
    assert "to be rerun on the current default" in doc["unavailable"]["tau1"]
    assert "not trained yet" in doc["unavailable"]["no-sie"]
    assert doc["changes"]["tau1"] == {"ppo.tau": [4.0, 1.0]}


@pytest.mark.slow
def test_e5_trains_a_missing_ablation_from_its_config(tmp_path, mlp_checkpoint):
    _write(tmp_path, "recipe", MLP_RECIPE)
    variant = _write(tmp_path, "tau1", "base = 'recipe.toml'\n[ppo]\ntau = 1.0\n"
                     "[run]\nn_envs = 2\neval_ns = [2]\neval_episodes = 2\nthreads = 1\n")
    text = (f"n_ue = [2]\nablations = ['full', 'tau1']\nepisodes = 2\ntrain_missing = true\n"
            f"[configs]\ntau1 = '{variant}'\n[checkpoints]\nmfsg = 'x'\n")
    cfg = _write(tmp_path, "e5", text)
    assert main(["experiment", "e5", "--config", str(cfg), "--out", str(tmp_path / "o"),
                 "--checkpoint", f"mfsg={mlp_checkpoint}"]) == 0
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert doc["ablations"] == ["full", "tau1"] and "tau1" in doc["trained_here"] and not doc["unavailable"]
    state = json.loads((tmp_path / "o" / "runs" / "tau1" / "final" / "state.json").read_text())
    assert state["config"]["ppo"]["tau"] == 1.0 and state["config"]["run"]["n_envs"] == 2
    assert set(doc["throughput_drop_vs_full"]) == {"tau1"}


def test_e2_full_mode_trains_then_reads_the_run(tmp_path):
    train = _write(tmp_path, "train", "[policy]\nkind = 'mlp'\n[policy.mlp]\nn_model_slots = 4\nhidden = 8\n"
                   "[run]\niterations = 2\nn_envs = 2\neval_every = 1\neval_ns = [2, 3]\neval_episodes = 2\n"
                   "threads = 1\n")
    cfg = _write(tmp_path, "e2", f"genie_episodes = 4\ntrain = true\ntrain_config = '{train}'\n")
    assert main(["experiment", "e2", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 0
    rows = _rows(tmp_path / "o" / "e2.csv")
    # iteration -1: the starting players, before any PPO update
    assert {(r["run"], r["iteration"], r["n_ue"]) for r in rows} == {("trained", str(i), str(n)) for i in (-1, 0, 1)
                                                                     for n in (2, 3)}
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert doc["runs"]["trained"]["iterations"] == 2


def test_provenance_is_dirty_for_code_changes_not_for_result_files(tmp_path, monkeypatch):
    """``git.dirty`` in result.json: a changed tracked input counts, a rewritten committed result does not
    (a series of experiments rewrites experiments/results/ as it goes)."""
    import subprocess

    from mfsg.experiments import common

    repo = tmp_path / "repo"
    (repo / "experiments" / "results").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "experiments" / "results" / "e1.csv").write_text("a\n1\n")
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(common, "REPO", repo)
    monkeypatch.setattr(common, "RESULTS_DIR", repo / "experiments" / "results")
    assert common.git_commit()["dirty"] is False and len(common.git_commit()["commit"]) == 40
    (repo / "experiments" / "results" / "e1.csv").write_text("a\n2\n")
    assert common.git_commit()["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")
    assert common.git_commit()["dirty"] is True
