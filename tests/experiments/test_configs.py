"""The committed training configs, results and checkpoints: each variant is its base with exactly the
intended fields changed, and experiments/README.md accounts for every file with the command that makes it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mfsg.experiments import EXPERIMENTS
from mfsg.learn.config import changed_fields, config_base, load_train_config, train_config_from_dict

EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"
CONFIGS, RESULTS, CHECKPOINTS = (EXPERIMENTS_DIR / d for d in ("configs", "results", "checkpoints"))
README = EXPERIMENTS_DIR / "README.md"
TRAIN_CONFIGS = sorted(p.stem for p in CONFIGS.glob("*.toml") if p.stem not in EXPERIMENTS)
SEEDS = {"policy.language.seed": 1, "policy.imitation.seed": 1, "run.seed": 1}

# variant -> (its base, the fields it changes and their values)
VARIANTS = {
    "mfsg_default_seed1": ("mfsg_default", SEEDS),
    "mfsg_no_sie": ("mfsg_default", {"policy.language.no_sie": True}),
    "mfsg_no_pretrain": ("mfsg_default", {"policy.language.pretrained": False}),
    "mfsg_tau1": ("mfsg_default", {"ppo.tau": 1.0}),
    "mfsg_standard_attention": ("mfsg_default", {"policy.language.attention_scale": "standard"}),
    "mfsg_standard_attention_seed1": ("mfsg_standard_attention", SEEDS),
    "mfsg_absolute_positions": ("mfsg_standard_attention", {"policy.language.positions": "absolute"}),
    "mappo_n6_warm": ("mappo_n6", {"policy.warm_start": "sr-grant", "policy.imitation.episodes": 512,
                                   "policy.imitation.epochs": 20, "policy.imitation.lr": 0.002,
                                   "run.iterations": 100, "run.eval_ns": [2, 3, 4, 5, 6, 7, 8]}),
    "mfsg_speculative_clone": ("mfsg_ppo", {"policy.warm_start": "sr-grant-speculative",
                                            "policy.imitation.episodes": 1024, "policy.imitation.epochs": 10,
                                            "policy.imitation.lr": 0.001, "policy.imitation.lr_final": 0.0001,
                                            "policy.imitation.heldout_episodes": 16,
                                            "policy.imitation.dagger_rounds": 2, "run.iterations": 1,
                                            "run.eval_every": 1}),
    "mfsg_speculative": ("mfsg_ppo", {"policy.warm_start": "",
                                      "policy.init_checkpoint": "experiments/checkpoints/mfsg-speculative-clone",
                                      "run.iterations": 40}),
    "mlp_ppo_tau1": ("mlp_ppo", {"ppo.tau": 1.0}),
    "mlp_ppo_tau16": ("mlp_ppo", {"ppo.tau": 16.0}),
}


def _readme_rows() -> dict[str, list[str]]:
    """The README's training-recipe table: config stem -> its cells."""
    rows = {}
    for line in README.read_text().splitlines():
        m = re.match(r"\| `([a-z0-9_]+)\.toml`", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in line.strip("|").split("|")]
    return rows


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_training_configs_load(name):
    cfg = load_train_config(CONFIGS / f"{name}.toml")
    assert cfg.policy.kind in ("language", "mlp")


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_a_variant_changes_exactly_its_intended_fields(name):
    base = config_base(CONFIGS / f"{name}.toml")
    if base is None:
        assert name not in VARIANTS, f"{name}.toml should name {VARIANTS[name][0]}.toml as its base"
        return
    assert name in VARIANTS, f"{name}.toml names a base: add what it is meant to change to VARIANTS"
    want_base, fields = VARIANTS[name]
    assert base == (CONFIGS / f"{want_base}.toml").resolve()
    diff = changed_fields(load_train_config(CONFIGS / f"{name}.toml"), load_train_config(base))
    assert {k: new for k, (_, new) in diff.items()} == fields


def test_readme_lists_every_config_result_and_checkpoint():
    text, rows = README.read_text(), _readme_rows()
    assert set(rows) >= set(TRAIN_CONFIGS) - {"ci_language", "ci_mlp"} and "`ci_mlp.toml`" in text
    for name in EXPERIMENTS:
        assert f"`{name}.toml`" in text
    for folder in sorted(p.name for p in RESULTS.iterdir() if p.is_dir()):
        assert folder in EXPERIMENTS or folder in TRAIN_CONFIGS, f"results/{folder}/ is named after no config"
        assert f"`{folder}/" in text, f"results/{folder}/ is not in experiments/README.md"
    for path in sorted(CONFIGS.glob("*/*.toml")):
        assert f"`{path.relative_to(CONFIGS).as_posix()}`" in text, f"{path} is not in experiments/README.md"
    for folder in sorted(p.name for p in CHECKPOINTS.iterdir() if p.is_dir()):
        assert f"`{folder}/`" in text, f"checkpoints/{folder}/ is not in experiments/README.md"
    assert not [p.name for p in (*RESULTS.iterdir(), *CHECKPOINTS.iterdir()) if p.is_file()]


def _stale(cfg_dict: dict, name: str) -> dict:
    return changed_fields(train_config_from_dict(cfg_dict), load_train_config(CONFIGS / f"{name}.toml"))


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_results_and_checkpoints_match_their_config_or_say_they_are_to_be_rerun(name):
    """A committed run made from another recipe than its config gives now is marked in the README."""
    row = " ".join(_readme_rows().get(name, []))
    files = []  # (stored config, fields it may differ in)
    for made in [RESULTS / name / "config.json", *sorted((RESULTS / name).glob("seed*/config.json"))]:
        if made.exists():  # a replicate of `mfsg train --seeds` (seed<k>/) has its own run.seed
            files.append((json.loads(made.read_text()), {"run.seed"} if made.parent.name.startswith("seed") else set()))
    for cell in re.findall(r"`([a-z0-9-]+)/`", row):
        state = CHECKPOINTS / cell / "state.json"
        if state.exists():
            files.append((json.loads(state.read_text())["config"], set()))
    for cfg, allowed in files:
        stale = set(_stale(cfg, name)) - allowed
        if stale:
            assert "to be rerun on the current default" in row, (name, stale)
