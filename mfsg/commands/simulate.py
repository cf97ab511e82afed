"""``mfsg simulate``: run a rule-based protocol (model §6) and print the model §7 metrics.

The genie is run on the same seeds as well, for ``genie_fraction`` (see :mod:`mfsg.metrics`).
"""

from __future__ import annotations

import argparse
import json
import math

from mfsg.commands.errors import ConfigError, UsageError
from mfsg.config import ChurnConfig, EnvConfig, check_int, check_prob
from mfsg.metrics import KEYS, Estimate, format_metrics, summarize
from mfsg.protocols import PROTOCOLS, make_protocol, run_protocol

CHURN_CHOICES = ("fixed", "per_episode", "markov")
_DEFAULT = EnvConfig()
_DEFAULT_CHURN = ChurnConfig()


# The scenario options: each may be given unless --config gives the scenario (their defaults are applied in run()).
SCENARIO = {"n_ue": 6, "p_arrival": _DEFAULT.p_arrival, "n_rbg": _DEFAULT.n_rbg, "churn": "fixed",
            "n_min": _DEFAULT_CHURN.n_min, "n_max": None, "p_join": _DEFAULT_CHURN.p_join,
            "p_leave": _DEFAULT_CHURN.p_leave, "buffer": _DEFAULT.buffer, "tbler": _DEFAULT.tbler,
            "horizon": _DEFAULT.horizon}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--protocol", required=True, help=f"one of {', '.join(PROTOCOLS)}")
    a("--config", default=None, help="TOML file whose [env] table is the scenario (e.g. a training config); "
      "the scenario options below are then not allowed")
    a("--n-ue", type=int, default=6, help="UEs for --churn fixed; default N_max otherwise (default 6)")
    a("--p-arrival", type=float, default=_DEFAULT.p_arrival, help="arrival probability per UE per TTI")
    a("--n-rbg", type=int, default=_DEFAULT.n_rbg, help="RBGs per TTI (K)")
    a("--churn", default="fixed", help=f"one of {', '.join(CHURN_CHOICES)} (default fixed)")
    a("--n-min", type=int, default=_DEFAULT_CHURN.n_min, help="fewest UEs (per_episode, markov)")
    a("--n-max", type=int, default=None, help="most UEs (per_episode, markov; default --n-ue)")
    a("--p-join", type=float, default=_DEFAULT_CHURN.p_join, help="join probability per TTI (markov)")
    a("--p-leave", type=float, default=_DEFAULT_CHURN.p_leave, help="leave probability per UE per TTI (markov)")
    a("--buffer", type=int, default=_DEFAULT.buffer, help="FIFO capacity per UE (B)")
    a("--tbler", type=float, default=_DEFAULT.tbler, help="erasure probability of a collision-free transmission")
    a("--q", type=float, default=None, help="ALOHA transmit probability (default 1/N)")
    a("--episodes", type=int, default=1000, help="episodes (default 1000)")
    a("--seed", type=int, default=0, help="seed of the env and protocol generators")
    a("--horizon", type=int, default=_DEFAULT.horizon, help="TTIs per episode (T)")
    a("--json", action="store_true", help="print the metrics as JSON")


def _option_checks(args: argparse.Namespace) -> None:
    """Check every option by its command-line name (one-line error, exit 2)."""
    if args.protocol not in PROTOCOLS:
        raise UsageError(f"--protocol={args.protocol!r} is invalid: allowed one of {', '.join(PROTOCOLS)}")
    if args.churn not in CHURN_CHOICES:
        raise UsageError(f"--churn={args.churn!r} is invalid: allowed one of {', '.join(CHURN_CHOICES)}")
    check_int("--n-ue", args.n_ue, 1)
    check_prob("--p-arrival", args.p_arrival)
    check_int("--n-rbg", args.n_rbg, 1, 64)
    check_int("--n-min", args.n_min, 1)
    if args.n_max is not None:
        check_int("--n-max", args.n_max, args.n_min)
    check_prob("--p-join", args.p_join)
    check_prob("--p-leave", args.p_leave)
    check_int("--buffer", args.buffer, 1, 4096)
    check_prob("--tbler", args.tbler, open_high=True)
    if args.q is not None:
        check_prob("--q", args.q, open_low=True)
    check_int("--episodes", args.episodes, 1)
    check_int("--seed", args.seed, 0)
    check_int("--horizon", args.horizon, 1)


def _given(args: argparse.Namespace, parser_defaults: dict = SCENARIO) -> list[str]:
    """Scenario options given on the command line (their values differ from the parser's defaults)."""
    return [k for k, v in parser_defaults.items() if getattr(args, k) != v]


def config_scenario(path: str) -> EnvConfig:
    """The [env] table of a TOML file (a training config's base recipes applied) as the scenario."""
    from mfsg.config import from_dict
    from mfsg.learn.config import read_train_config_table

    table = read_train_config_table(path)
    if not isinstance(table.get("env"), dict):
        raise ConfigError(f"config={path!r} is invalid: it has no [env] table (the scenario)")
    return from_dict(table["env"])


def env_config(args: argparse.Namespace) -> EnvConfig:
    """The scenario the options (or the --config file) describe."""
    if args.config is not None:
        return config_scenario(args.config)
    n_max = args.n_max if args.n_max is not None else args.n_ue
    if args.churn != "fixed":
        check_int("--n-max", n_max, args.n_min)
    churn = ChurnConfig(kind=args.churn, n=args.n_ue, n_min=min(args.n_min, n_max), n_max=n_max,
                        p_join=args.p_join, p_leave=args.p_leave)
    return EnvConfig(n_rbg=args.n_rbg, buffer=args.buffer, horizon=args.horizon, p_arrival=args.p_arrival,
                     tbler=args.tbler, churn=churn)


def simulate(args: argparse.Namespace) -> dict[str, Estimate]:
    """Run the protocol and the genie on the same seeds; return the metrics."""
    cfg = env_config(args)
    run = run_protocol(cfg, make_protocol(args.protocol, seed=args.seed, q=args.q), args.episodes, args.seed)
    genie = run if args.protocol == "genie" else run_protocol(cfg, make_protocol("genie"), args.episodes, args.seed)
    return summarize(run, genie)


def _json_value(x: float) -> float | None:
    return None if math.isnan(x) else x


def run(args: argparse.Namespace) -> int:
    if args.config is not None and _given(args):
        flag = "--" + _given(args)[0].replace("_", "-")
        raise UsageError(f"{flag} is invalid with --config: allowed only without it (the scenario is the [env] "
                         f"table of {args.config!r})")
    _option_checks(args)
    metrics = simulate(args)
    if args.json:
        out = {k: _json_value(v.mean) for k, v in metrics.items()}
        out["ci95"] = {k: _json_value(v.ci95) for k, v in metrics.items()}
        out["config"] = {"protocol": args.protocol, "config": args.config, "n_ue": args.n_ue, "p_arrival": args.p_arrival,
                         "n_rbg": args.n_rbg, "churn": args.churn, "episodes": args.episodes,
                         "seed": args.seed, "horizon": args.horizon}
        assert set(KEYS) <= set(out)
        print(json.dumps(out, indent=2))
    else:
        scenario = (f"scenario of {args.config}" if args.config is not None else
                    f"N={args.n_ue} ({args.churn}), p_a={args.p_arrival}, K={args.n_rbg}, T={args.horizon}")
        header = f"{args.protocol}: {scenario}, {args.episodes} episodes, seed {args.seed}"
        print(header)
        print(format_metrics(metrics))
    return 0
