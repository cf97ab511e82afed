"""Training configs: a file may name its base recipe and give only the fields it changes."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfsg.config import ConfigError
from mfsg.learn.config import changed_fields, config_base, load_train_config, read_train_config_table, train_config_from_dict

BASE = """
[env]
n_rbg = 2
p_arrival = 0.48
[env.churn]
kind = "per_episode"
n_min = 2
n_max = 6

[policy]
kind = "mlp"
[policy.mlp]
hidden = 16

[ppo]
tau = 4.0
epochs = 2

[run]
iterations = 3
eval_ns = [2, 3]
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_variant_is_its_base_with_its_fields_replaced(tmp_path):
    base = _write(tmp_path, "recipe.toml", BASE)
    variant = _write(tmp_path, "variant.toml", 'base = "recipe.toml"\n[ppo]\ntau = 1.0\n[env.churn]\nn_max = 4\n')
    cfg, ref = load_train_config(variant), load_train_config(base)
    assert changed_fields(cfg, ref) == {"ppo.tau": (4.0, 1.0), "env.churn.n_max": (6, 4)}
    assert cfg.ppo.epochs == 2 and cfg.env.churn.n_min == 2 and cfg.policy.mlp.hidden == 16  # kept from the base
    assert config_base(variant) == base.resolve() and config_base(base) is None


def test_bases_chain_and_resolve_relative_to_each_file(tmp_path):
    _write(tmp_path, "a/recipe.toml", BASE)
    _write(tmp_path, "b/middle.toml", 'base = "../a/recipe.toml"\n[run]\niterations = 5\neval_ns = [4]\n')
    leaf = _write(tmp_path, "b/c/leaf.toml", 'base = "../middle.toml"\n[run]\niterations = 7\n')
    cfg = load_train_config(leaf)
    assert (cfg.run.iterations, cfg.run.eval_ns, cfg.ppo.tau) == (7, (4,), 4.0)  # lists are replaced, not merged
    assert "base" not in read_train_config_table(leaf)


def test_the_variant_equals_the_full_copy(tmp_path):
    _write(tmp_path, "recipe.toml", BASE)
    variant = _write(tmp_path, "variant.toml", 'base = "recipe.toml"\n[policy.mlp]\nhidden = 32\n')
    copy = _write(tmp_path, "copy.toml", BASE.replace("hidden = 16", "hidden = 32"))
    assert load_train_config(variant) == load_train_config(copy)


@pytest.mark.parametrize(("files", "match"), [
    ({"v.toml": 'base = "nowhere.toml"\n'}, r"base='nowhere.toml' in .*v\.toml is invalid: no such file .*nowhere"),
    ({"v.toml": "base = 3\n"}, r"base=3 in .*v\.toml is invalid: allowed the path of a training config"),
    ({"v.toml": 'base = "w.toml"\n', "w.toml": 'base = "v.toml"\n'}, r"in .*w\.toml is invalid: a cycle of bases "
                                                                      r"\(.*v\.toml -> .*w\.toml -> .*v\.toml\)"),
    ({"v.toml": 'base = "v.toml"\n'}, r"base='v.toml' in .*v\.toml is invalid: a cycle of bases"),
    ({"v.toml": 'base = "w.toml"\n', "w.toml": "[ppo\n"}, r"config='.*w\.toml' is invalid"),
    ({"v.toml": 'base = "w.toml"\n[ppo]\nbogus = 1\n', "w.toml": BASE}, r"ppo\.bogus is not a known field"),
])
def test_bad_bases_name_the_file(tmp_path, files, match):
    for name, text in files.items():
        _write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=match):
        load_train_config(tmp_path / "v.toml")


def test_a_missing_config_names_itself(tmp_path):
    with pytest.raises(ConfigError, match=r"config='.*absent\.toml' is invalid: no such file"):
        load_train_config(tmp_path / "absent.toml")


@given(st.floats(1.0, 100.0), st.integers(1, 50), st.sampled_from(["", "sr-grant"]))
def test_changed_fields_lists_exactly_the_changed_fields(tau, iterations, warm_start):
    ref = train_config_from_dict(tomllib.loads(BASE))
    cfg = train_config_from_dict({**tomllib.loads(BASE), "ppo": {"tau": tau, "epochs": 2},
                                  "run": {"iterations": iterations, "eval_ns": [2, 3]},
                                  "policy": {"kind": "mlp", "mlp": {"hidden": 16}, "warm_start": warm_start}})
    expected = {k: v for k, v in {"ppo.tau": (4.0, tau), "run.iterations": (3, iterations),
                                  "policy.warm_start": ("", warm_start)}.items() if v[0] != v[1]}
    assert changed_fields(cfg, ref) == expected
    assert changed_fields(ref, ref) == {}


def test_a_language_option_left_out_is_its_default():
    plain = train_config_from_dict({"policy": {"language": {}}})
    spelled = train_config_from_dict({"policy": {"language": {"attention_scale": "standard", "no_sie": False}}})
    assert changed_fields(spelled, plain) == {}
    changed = train_config_from_dict({"policy": {"language": {"attention_scale": "log_n"}}})
    assert changed_fields(changed, plain) == {"policy.language.attention_scale": ("standard", "log_n")}
