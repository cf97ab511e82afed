"""``mfsg protocol --checkpoint DIR | --protocol sr-grant|sr-grant-speculative|genie|aloha --n-ue N --p-arrival P [--episodes E]
[--seed S] [--greedy] [--n-boot B] [--json] [--out DIR]``: what a protocol's messages mean (model §2, §6, §7).

On E episodes with N fixed UEs it reports, per DCM symbol, the BS's situation when it sends it and the
UE's action that follows (by buffer empty / non-empty); per UCM symbol, the UE's buffer and actions
and the BS's next DCM; the mutual information (bits, Miller–Madow corrected, bootstrap interval over
episodes) of each message stream with the hidden state; the signaling cost per delivered dPDU and per
TTI; and the protocol card with where it differs from SR/grant's (SR/grant run on the same env draws).
``--out DIR`` writes ``report.json``, ``report.txt`` and the figures (SVG).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from mfsg.config import ChurnConfig, EnvConfig, check_int, check_prob
from mfsg.protocols import PROTOCOLS

REFERENCE = "sr-grant"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--checkpoint", default=None, help="trained players: a run's final/ or checkpoint/ folder")
    a("--protocol", default=None, help=f"a rule-based protocol instead: one of {', '.join(PROTOCOLS)}")
    a("--n-ue", type=int, required=True, help="number of UEs (fixed for the whole episode)")
    a("--p-arrival", type=float, required=True, help="arrival probability per UE per TTI")
    a("--episodes", type=int, default=200, help="episodes (default 200)")
    a("--seed", type=int, default=0, help="seed of the env draws and of the actions (default 0)")
    a("--greedy", action="store_true", help="trained players act by argmax instead of sampling")
    a("--n-boot", type=int, default=1000, help="bootstrap replicates of the MI intervals (default 1000)")
    a("--json", action="store_true", help="print the report as JSON")
    a("--out", default=None, help="folder for report.json, report.txt and the figures")


def _usage_error():
    from mfsg.commands.errors import UsageError

    return UsageError


def _checks(args: argparse.Namespace) -> None:
    """Every option by its command-line name (one-line error, exit 2)."""
    UsageError = _usage_error()
    if (args.checkpoint is None) == (args.protocol is None):
        raise UsageError("--checkpoint / --protocol: give exactly one of them (--protocol allowed: "
                         f"{', '.join(PROTOCOLS)})")
    if args.protocol is not None and args.protocol not in PROTOCOLS:
        raise UsageError(f"--protocol={args.protocol!r} is invalid: allowed one of {', '.join(PROTOCOLS)}")
    if args.checkpoint is not None and not (Path(args.checkpoint) / "state.json").is_file():
        raise UsageError(f"--checkpoint={args.checkpoint!r} is invalid: allowed a folder of saved players "
                         "(with state.json), e.g. experiments/checkpoints/mfsg-default")
    check_int("--n-ue", args.n_ue, 1)
    check_prob("--p-arrival", args.p_arrival)
    check_int("--episodes", args.episodes, 1)
    check_int("--seed", args.seed, 0)
    check_int("--n-boot", args.n_boot, 2)


def _transcripts(args: argparse.Namespace):
    """(transcript, env config) of the protocol or players the options name."""
    from mfsg.interpret.transcripts import record_players, record_protocol

    if args.protocol is not None:
        env_cfg = EnvConfig(p_arrival=args.p_arrival, churn=ChurnConfig(kind="fixed", n=args.n_ue))
        return record_protocol(env_cfg, args.protocol, args.episodes, args.seed), env_cfg
    from mfsg.learn.train import fixed_n_env, load_players

    leader, follower, cfg = load_players(args.checkpoint)
    slots = cfg.env.n_slots
    if args.n_ue > slots:
        raise _usage_error()(f"--n-ue={args.n_ue} is invalid for --checkpoint={args.checkpoint!r}: "
                             f"allowed 1..{slots} (its UE slots)")
    env_cfg = fixed_n_env(cfg.env, args.n_ue, args.p_arrival)
    name = Path(args.checkpoint).resolve().name
    tr = record_players(leader, follower, env_cfg, args.episodes, args.seed, greedy=args.greedy,
                        no_comm=cfg.run.no_comm, name=name)
    return tr, env_cfg


def _json_safe(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def run(args: argparse.Namespace) -> int:
    _checks(args)
    from mfsg.interpret.card import protocol_card
    from mfsg.interpret.information import InformationConfig
    from mfsg.interpret.report import format_report, interpret
    from mfsg.interpret.transcripts import record_protocol

    tr, env_cfg = _transcripts(args)
    reference = None
    if tr.name != REFERENCE:
        ref_tr = record_protocol(env_cfg, REFERENCE, args.episodes, args.seed)
        reference = (ref_tr, protocol_card(ref_tr))
    rep = interpret(tr, reference, info_cfg=InformationConfig(n_boot=args.n_boot, seed=args.seed))
    rep["config"] = {"checkpoint": args.checkpoint, "protocol": args.protocol, "n_ue": args.n_ue,
                     "p_arrival": args.p_arrival, "episodes": args.episodes, "seed": args.seed,
                     "greedy": args.greedy, "n_rbg": env_cfg.n_rbg, "horizon": env_cfg.horizon}
    header = (f"{tr.name}: N = {args.n_ue} fixed, p_a = {args.p_arrival}, K = {env_cfg.n_rbg}, "
              f"T = {env_cfg.horizon}, {args.episodes} episodes, seed {args.seed}"
              + (", greedy" if args.greedy and args.checkpoint else ""))
    text = header + "\n" + format_report(rep)
    safe = _json_safe(rep)
    if args.out is not None:
        from mfsg.interpret.figures import write_figures

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(safe, indent=2) + "\n")
        (out / "report.txt").write_text(text + "\n")
        write_figures(tr, rep, out)
    print(json.dumps(safe, indent=2) if args.json else text)
    return 0
