"""Config validation and TOML round trips (model §1, §3, §4)."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from strategies import wide_env_configs

from mfsg.config import ChurnConfig, ConfigError, EnvConfig, UtilityConfig, dump_toml, from_dict, load_toml

NAN, INF = math.nan, math.inf

# (field as named in the message, constructor of the bad config, bad values)
BAD = [
    ("n_rbg", lambda v: EnvConfig(n_rbg=v), [0, 65, -1, 1.5, True, "2", None]),
    ("buffer", lambda v: EnvConfig(buffer=v), [0, 4097, 2.0, False]),
    ("horizon", lambda v: EnvConfig(horizon=v), [0, -3, 3.0]),
    ("p_arrival", lambda v: EnvConfig(p_arrival=v), [-0.1, 1.5, NAN, INF, True, "0.5", None]),
    ("p_arrival", lambda v: EnvConfig(p_arrival=v, churn=ChurnConfig(kind="fixed", n=2)), [(0.5,), [0.1, 0.2, 0.3]]),
    ("p_arrival[1]", lambda v: EnvConfig(p_arrival=(0.5, v), churn=ChurnConfig(kind="fixed", n=2)), [1.01, -1, NAN]),
    ("tbler", lambda v: EnvConfig(tbler=v), [1.0, -0.1, NAN, 2]),
    ("ucm_vocab", lambda v: EnvConfig(ucm_vocab=v), [0, 1.0]),
    ("dcm_vocab", lambda v: EnvConfig(dcm_vocab=v), [0, -2, 4.0]),
    ("churn", lambda v: EnvConfig(churn=v), ["markov", {"kind": "fixed"}]),
    ("utility", lambda v: EnvConfig(utility=v), [None, {"gamma": 0.9}]),
    ("churn.kind", lambda v: ChurnConfig(kind=v), ["poisson", "", None]),
    ("churn.n", lambda v: ChurnConfig(n=v), [0, 2.5]),
    ("churn.n_min", lambda v: ChurnConfig(n_min=v), [0, -1]),
    ("churn.n_max", lambda v: ChurnConfig(n_min=3, n_max=v), [2, 0, 4.0]),
    ("churn.p_join", lambda v: ChurnConfig(p_join=v), [-0.01, 1.01, NAN]),
    ("churn.p_leave", lambda v: ChurnConfig(p_leave=v), [-0.01, 1.01, INF]),
    ("churn.slots", lambda v: ChurnConfig(kind="per_episode", n_max=6, slots=v), [5, 0, 7.0, "8"]),
    ("churn.placement", lambda v: ChurnConfig(placement=v), ["middle", "", None]),
    ("churn.schedule", lambda v: ChurnConfig(kind="trace", schedule=v), [(), [], (1, 2), "0"]),
    ("churn.schedule[0]", lambda v: ChurnConfig(kind="trace", schedule=v), [((0, 0),), ((-1,),), (("a",),)]),
    ("churn.schedule[1]", lambda v: ChurnConfig(kind="trace", schedule=v), [((0,), (1, 1.5))]),
    ("churn.schedule", lambda v: EnvConfig(horizon=3, churn=ChurnConfig(kind="trace", schedule=v)), [((0,), (1,))]),
    ("utility.reward_scale", lambda v: UtilityConfig(reward_scale=v), [-1.0, NAN, INF]),
    ("utility.kappa_buf", lambda v: UtilityConfig(kappa_buf=v), [-0.1, "0.1"]),
    ("utility.c_tx", lambda v: UtilityConfig(c_tx=v), [-0.1, -INF]),
    ("utility.beta_fair", lambda v: UtilityConfig(beta_fair=v), [-2.0, True]),
    ("utility.gamma", lambda v: UtilityConfig(gamma=v), [0, 0.0, 1.1, -0.5, NAN]),
]
CASES = [(name, build, v) for name, build, values in BAD for v in values]


@pytest.mark.parametrize(("name", "build", "value"), CASES, ids=[f"{n}={v!r}" for n, _, v in CASES])
def test_bad_value_names_the_field(name, build, value):
    with pytest.raises(ConfigError) as info:
        build(value)
    msg = str(info.value)
    assert msg.startswith(f"{name}="), msg
    assert " is invalid: allowed " in msg and "\n" not in msg, msg


def test_every_field_is_checked():
    named = {name.split("[")[0] for name, _, _ in BAD}
    fields = {f.name for f in dataclasses.fields(EnvConfig)}
    fields |= {f"churn.{f.name}" for f in dataclasses.fields(ChurnConfig)}
    fields |= {f"utility.{f.name}" for f in dataclasses.fields(UtilityConfig)}
    assert fields <= named, f"fields without a bad-value test: {sorted(fields - named)}"


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_defaults_follow_the_spec():
    cfg = EnvConfig()
    assert (cfg.n_rbg, cfg.buffer, cfg.horizon, cfg.p_arrival, cfg.tbler) == (2, 15, 24, 0.48, 1e-3)
    assert cfg.dcm_vocab == cfg.n_rbg + 2 and cfg.n_access == cfg.n_rbg + 2
    assert cfg.arrival_probs() == (0.48,) * cfg.n_slots


# -- TOML ------------------------------------------------------------------------------------


def _roundtrip(text: str):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cfg.toml"
        path.write_text(text)
        return load_toml(path)


@given(wide_env_configs())
def test_toml_round_trip(cfg):
    text = dump_toml(cfg)
    back = _roundtrip(text)["env"]
    assert back == cfg
    assert dump_toml(back) == text


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("[env]\nn_rbgs = 3\n", "n_rbgs"),
        ("[env.churn]\nkind = 'markov'\nrate = 0.1\n", "churn.rate"),
        ("[env.utility]\nalpha = 1.0\n", "utility.alpha"),
    ],
)
def test_unknown_toml_keys_are_rejected(text, name):
    with pytest.raises(ConfigError) as info:
        _roundtrip(text)
    assert str(info.value).startswith(f"{name} is not a known field: allowed "), str(info.value)


@pytest.mark.parametrize(("data", "name"), [({"churn": 3}, "churn"), ({"utility": [1.0]}, "utility")])
def test_non_table_sections_are_rejected(data, name):
    with pytest.raises(ConfigError, match=rf"^{name}=.* is invalid: allowed a table"):
        from_dict(data)


def test_bad_toml_value_names_the_field():
    with pytest.raises(ConfigError, match=r"^churn\.p_leave=1\.5 is invalid"):
        _roundtrip("[env.churn]\nkind = 'markov'\np_leave = 1.5\n")


def test_other_tables_pass_through():
    data = _roundtrip("[train]\nlr = 0.001\n\n[env]\nhorizon = 5\n")
    assert data["train"] == {"lr": 0.001} and data["env"] == EnvConfig(horizon=5)
