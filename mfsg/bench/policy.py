"""``mfsg bench policy``: speed and validity of the language policies (model §5).

Measures, per backbone family: batched scoring throughput (decisions/s) with and without prompt
reuse and deduplication, and full acting throughput (render, tokenize, score, sample) against
the naive per-candidate baseline; the cost of scoring all candidates relative to one prompt
forward pass; one-TTI decision latency (leader then followers, one episode) for N = 2..8 as p50
and p99; and the valid-action rate with PAG (candidate scoring, trie-constrained generation)
and without (free-form generation) over many decisions, with random and pretrained weights.
Decisions come from episodes of the batched environment driven by the players themselves
(:class:`mfsg.learn.language_players.LanguagePlayer`, acting as :func:`mfsg.learn.rollout.rollout`
does: encode, score the fixed action set, mask, sample). Scoring and latency are reported per
scorer engine (``hf``, ``fast``, ``numpy``; T5 has only ``hf``); the naive baseline is always the
Hugging Face per-candidate forward. Throughput and the candidate-cost ratios run with the score
memo off (``LanguagePolicyConfig.score_cache = 0``: repeated timing calls would otherwise be memo
hits). The ``numpy`` engine's rows are where it earns its place: the lowest one-TTI latency;
``[policy.language] engine = "numpy"`` selects it for a run. Latency rows use the default config (memo on,
column ``memo``), plus rows of the default engine with the memo off, and GPT-2 rows under the
``ue_set`` position rule and ``log_n`` attention scale of the default trained players (columns
``positions``, ``attention_scale``). For the ``numpy`` engine the
candidate-cost ratio's numerator and denominator are both that engine's (its scoring pass and
its prompt pass); FLOPs are counted on the torch path of the same packed algorithm (NumPy
operations are invisible to ``torch.utils.flop_counter``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mfsg.bench.common import format_table, repeat_timed
from mfsg.config import ChurnConfig, EnvConfig
from mfsg.env import BatchedEnv, spec
from mfsg.language import prompts
from mfsg.language.backbones import FAMILIES, BackboneConfig
from mfsg.language.policy import LanguagePolicyConfig
from mfsg.language.pretrain import default_checkpoint
from mfsg.language.scoring import ENGINES
from mfsg.learn import actions
from mfsg.learn import device as devices
from mfsg.learn.device import module_device, to_device
from mfsg.learn.language_players import LanguagePlayer, language_players
from mfsg.learn.players import masked_log_probs

COST_BATCHES = (1, 16, 256)
COST_ROUNDS = 5
TARGETS = {"score_vs_prompt_pass": 1.5, "rollout_speedup_vs_naive": 10.0, "p50_tti_ms_n8": 2.0, "pag_valid_rate": 1.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, for CI)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="backbone families, comma-separated")
    parser.add_argument("--engines", default=",".join(ENGINES), help="scorer engines, comma-separated")
    parser.add_argument("--envs", type=int, default=64, help="episodes per batch for throughput")
    parser.add_argument("--decisions", type=int, default=100_000, help="decisions per valid-action-rate row")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda, cuda:N or auto: where the players run (the environment stays on the CPU; "
                             "the numpy engine is measured on the CPU only)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="minimum timing per measurement")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="pretrained folder of the default backbone (default: experiments/checkpoints/lm-<family> if present)",
    )


def _env_cfg(n: int | None = None) -> EnvConfig:
    return EnvConfig() if n is None else EnvConfig(churn=ChurnConfig(kind="fixed", n=n))


def _players(env_cfg: EnvConfig, pcfg: LanguagePolicyConfig) -> tuple[LanguagePlayer, LanguagePlayer]:
    """Leader and follower of ``pcfg`` on the command's device (:func:`mfsg.learn.device.current`)."""
    dev = devices.current()
    leader, follower = language_players(env_cfg, pcfg)
    return leader.to(dev), follower.to(dev)


def _act(player: LanguagePlayer, obs_l: spec.LeaderObs, obs_f: spec.FollowerObs | None,
         gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """One player's actions for a TTI as [E, S] tensors, as a rollout takes them: encode the active
    slots' prompts, score the fixed action set, mask, sample (``obs_f`` None: the leader)."""
    cfg = player.env_cfg
    E, S = obs_l.active.shape
    e_idx, s_idx = obs_l.active.nonzero(as_tuple=True)
    x = player.encode(obs_l, obs_f, e_idx, s_idx)
    if obs_f is None:
        mask = actions.leader_mask(cfg, len(e_idx))
    else:
        mask = actions.follower_mask(cfg, obs_f.buffer[e_idx, s_idx])
    dev = module_device(player)  # one transfer each way per batched decision; sampling on the CPU
    logp = masked_log_probs(player.scores(to_device(x, dev)), mask.to(dev)).cpu()
    a = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(-1)
    parts = (a,) if obs_f is None else actions.follower_action(cfg, a)
    out = []
    for p in parts:
        full = torch.zeros(E, S, dtype=torch.long)
        full[e_idx, s_idx] = p
        out.append(full)
    return tuple(out)


@torch.no_grad()
def _follower_batch(leader: LanguagePlayer, follower: LanguagePlayer, E: int, warm: int = 6):
    """Observations of E episodes after ``warm`` TTIs of the players' own play."""
    env = BatchedEnv(leader.env_cfg, E, seed=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(warm):
        lobs = env.begin_tti()
        fobs = env.deliver(_act(leader, lobs, None, gen)[0])
        env.end_tti(*_act(follower, lobs, fobs, gen))
    lobs = env.begin_tti()
    return lobs, env.deliver(_act(leader, lobs, None, gen)[0])


def _engines(family: str, engines: list[str]) -> list[str]:
    """The engines that differ for ``family`` (the fast engine is GPT-2 only)."""
    return [e for e in engines if e == "hf" or family == "gpt2"]


def _throughput(family: str, engine: str, E: int, min_s: float) -> tuple[list[dict], dict]:
    rows = []
    leader, follower = _players(
        _env_cfg(), LanguagePolicyConfig(backbone=BackboneConfig(family=family), engine=engine, score_cache=0))
    lobs, fobs = _follower_batch(leader, follower, E)
    p = follower.policy
    r = prompts.follower_prompts(fobs, p.lim, follower.pcfg)
    dev = module_device(follower)
    ids, mask = (t.to(dev) for t in p.encode(r.texts))
    cls = torch.tensor(r.state_class, device=dev)
    gen = torch.Generator().manual_seed(0)
    M = len(r.texts)
    variants = {"reuse+dedup": (True, True), "reuse": (True, False), "dedup": (False, True), "naive": (False, False)}
    with torch.no_grad():
        for name, (reuse, dedup) in variants.items():
            p.scorer.reuse, p.scorer.dedup = reuse, dedup
            t = float(np.median(repeat_timed(lambda: p.log_pi(ids, mask, cls), min_seconds=min_s)))
            rows.append(
                {
                    "family": family,
                    "engine": engine,
                    "what": f"score {name}",
                    "decisions": M,
                    "unique": len(set(r.texts)),
                    "ms": 1e3 * t,
                    "decisions_per_s": M / t,
                }
            )
        # full acting (render + tokenize + score + sample), default vs naive
        act = {}
        for name, (reuse, dedup) in (("act default", (True, True)), ("act naive", (False, False))):
            p.scorer.reuse, p.scorer.dedup = reuse, dedup
            t = float(np.median(repeat_timed(lambda: _act(follower, lobs, fobs, gen), min_seconds=min_s)))
            act[name] = M / t
            rows.append(
                {
                    "family": family,
                    "engine": engine,
                    "what": name,
                    "decisions": M,
                    "unique": len(set(r.texts)),
                    "ms": 1e3 * t,
                    "decisions_per_s": M / t,
                }
            )
        p.scorer.reuse, p.scorer.dedup = True, True
        cost = {B: _candidate_cost(p, ids[:B], mask[:B], min_s / 2) for B in COST_BATCHES}
    summary = {
        "rollout_speedup_vs_naive": act["act default"] / act["act naive"],
        "score_vs_prompt_pass": {str(b): c["median"] for b, c in cost.items()},
        "score_vs_prompt_pass_min": {str(b): c["min"] for b, c in cost.items()},
        "score_vs_prompt_pass_flops": {str(b): c["flops"] for b, c in cost.items()},
        "table_vs_prompt_pass": {str(b): c["table"] for b, c in cost.items()},
        "candidates": p.table.n,
    }
    return rows, summary


def _flops(fn) -> int:
    """Matmul FLOPs of one call of ``fn`` (``torch.utils.flop_counter``)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _candidate_cost(p, ids, mask, min_s: float) -> dict:
    """Cost of scoring all candidates relative to one prompt forward pass, every row computed
    (deduplication off): the numerator is ``CandidateScorer.score`` (log P(a|s) of every candidate, LLM4MAC
    Eq. 9), the denominator ``CandidateScorer.prompt_logprobs``, the same engine's forward over the same
    batch of prompts alone (log P(first token | prompt)). Ratios of median and of minimum times,
    of matmul FLOPs, and (``table``) of the full [P, C, L, V] next-token table (trie decoding)."""
    p.scorer.dedup = False
    fns = {
        "score": lambda: p.scorer.score(ids, mask, p.cands),
        "table": lambda: p.scorer.logprobs(ids, mask, p.cands),
        "prompt": lambda: p.scorer.prompt_logprobs(ids, mask),
    }
    with torch.enable_grad():  # the torch path: NumPy operations are invisible to the FLOP counter
        flops = _flops(fns["score"]) / _flops(fns["prompt"])  # also the warm-up call (cached masks)
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(COST_ROUNDS):  # interleaved, so load changes on a shared machine hit all alike
        for k, fn in fns.items():
            times[k] += repeat_timed(fn, min_seconds=min_s / COST_ROUNDS)
    p.scorer.dedup = True
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "median": med["score"] / med["prompt"],
        "min": min(times["score"]) / min(times["prompt"]),
        "flops": flops,
        "table": med["table"] / med["prompt"],
    }


def _latency(family: str, engine: str, n_values, ttis: int, memo: bool = True,
             positions: str = BackboneConfig.positions,
             attention_scale: str = BackboneConfig.attention_scale) -> list[dict]:
    """One-TTI latency rows; ``memo`` False turns the score memo off (``score_cache = 0``);
    ``positions`` is the backbone's position-id rule (:mod:`mfsg.language.positions`),
    ``attention_scale`` its attention logit scale (:mod:`mfsg.language.attention_scale`)."""
    rows = []
    cache = {} if memo else {"score_cache": 0}
    for n in n_values:
        backbone = BackboneConfig(family=family, positions=positions, attention_scale=attention_scale)
        leader, follower = _players(_env_cfg(n), LanguagePolicyConfig(backbone=backbone, engine=engine, **cache))
        env = BatchedEnv(leader.env_cfg, 1, seed=n)
        gen = torch.Generator().manual_seed(n)
        times, cpu = [], []
        with torch.no_grad():
            while len(times) < ttis:
                if env.done:
                    env.reset()
                lobs = env.begin_tti()
                t0, c0 = time.perf_counter(), time.thread_time()
                fobs = env.deliver(_act(leader, lobs, None, gen)[0])
                b = _act(follower, lobs, fobs, gen)
                times.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
                env.end_tti(*b)
        ms = 1e3 * np.array(times[ttis // 10 :])  # drop warm-up
        cpu_ms = 1e3 * np.array(cpu[ttis // 10 :])
        rows.append(
            {
                "family": family,
                "engine": engine,
                "memo": memo,
                "positions": positions,
                "attention_scale": attention_scale,
                "N": n,
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "min_ms": float(ms.min()),
                # CPU time of this thread: what the TTI costs when the shared machine's other jobs
                # preempt it (wall p50 above 2x this one means it waited for a core)
                "p50_cpu_ms": float(np.percentile(cpu_ms, 50)),
            }
        )
    return rows


def _valid_rate(path: str | None, family: str, decoding: str, n_decisions: int, E: int) -> dict:
    """Valid-action rate over ``n_decisions`` decisions (leader + followers) of policy-driven episodes;
    invalid free-form outputs are counted and replaced by IDLE / DCM 0 to keep the episode going."""
    bb = BackboneConfig(family=family) if path is None else BackboneConfig(path=path)
    leader, follower = _players(_env_cfg(), LanguagePolicyConfig(backbone=bb, decoding=decoding))
    env = BatchedEnv(leader.env_cfg, E, seed=3)
    gen = torch.Generator().manual_seed(3)
    n = bad = 0
    t0 = time.perf_counter()

    def decide(player: LanguagePlayer, r: prompts.Rendered) -> tuple[list[torch.Tensor], int]:
        """[E, S] actions (invalid ones replaced by 0) and the count of invalid outputs."""
        ch = player.policy.decide(r, False, gen)
        e, s = torch.tensor(r.env, dtype=torch.long), torch.tensor(r.slot, dtype=torch.long)
        out = []
        for col in ch.actions.unbind(1):
            full = torch.zeros(env.E, env.S, dtype=torch.long)
            full[e, s] = torch.where(ch.valid, col, 0)
            out.append(full)
        return out, int((~ch.valid).sum())

    with torch.no_grad():
        while n < n_decisions:
            if env.done:
                env.reset()
            lobs = env.begin_tti()
            (dcm,), k = decide(leader, prompts.leader_prompts(lobs, leader.policy.lim, leader.pcfg))
            n += int(lobs.active.sum())
            bad += k
            fobs = env.deliver(dcm)
            (ucm, acc), k = decide(follower, prompts.follower_prompts(fobs, follower.policy.lim, follower.pcfg))
            n += int(fobs.active.sum())
            bad += k
            env.end_tti(ucm, acc)
    return {
        "weights": "random" if path is None else "pretrained",
        "family": family,
        "decoding": decoding,
        "pag": decoding != "free",
        "decisions": n,
        "invalid": bad,
        "valid_rate": 1 - bad / n,
        "seconds": time.perf_counter() - t0,
    }


def measure(args: argparse.Namespace) -> dict:
    with devices.using(args.device) as dev:
        return {**_measure(args, on_cpu=dev.type == "cpu"), "device": str(dev)}


def _measure(args: argparse.Namespace, on_cpu: bool) -> dict:
    torch.set_num_threads(args.threads)
    families = [f for f in args.families.split(",") if f]
    engines = [e for e in args.engines.split(",") if e and (on_cpu or e != "numpy")]  # NumPy runs on the CPU
    quick = args.quick
    E = 16 if quick else args.envs
    min_s = 0.3 if quick else args.min_seconds
    n_dec = 2_000 if quick else args.decisions
    ttis = 40 if quick else 300
    scoring, summary, latency = [], {}, []
    for fam in families:
        for eng in _engines(fam, engines):
            rows, s = _throughput(fam, eng, E, min_s)
            scoring += rows
            summary[f"{fam}/{eng}"] = s
            latency += _latency(fam, eng, range(2, 9), ttis)
            if eng == LanguagePolicyConfig.engine:
                latency += _latency(fam, eng, range(2, 9), ttis, memo=False)
            if fam == "gpt2":  # the backbone rules of the default trained players (experiments/configs/mfsg_default.toml)
                latency += _latency(fam, eng, range(2, 9), ttis, positions="ue_set", attention_scale="log_n")
    default = BackboneConfig.family
    found = Path(default_checkpoint(default), "config.json").is_file()
    ckpt = args.checkpoint or (str(default_checkpoint(default)) if found else None)
    validity = []
    for path in [None] + ([ckpt] if ckpt else []):
        for decoding in ("score", "trie", "free"):
            validity.append(_valid_rate(path, default, decoding, n_dec, 64 if not quick else 16))
    return {
        "target": "policy",
        "quick": quick,
        "envs": E,
        "targets": TARGETS,
        "scoring": scoring,
        "summary": summary,
        "latency": latency,
        "validity": validity,
        "checkpoint": ckpt,
    }


def format_result(result: dict) -> str:
    out = [
        f"Batched scoring and acting (follower decisions of one TTI; players on {result.get('device', 'cpu')})",
        format_table(result["scoring"], ["family", "engine", "what", "decisions", "unique", "ms", "decisions_per_s"]),
    ]
    for fam, s in result["summary"].items():
        ratios = ", ".join(
            f"B={b}: {v:.2f}x (min {s['score_vs_prompt_pass_min'][b]:.2f}x, FLOPs {s['score_vs_prompt_pass_flops'][b]:.2f}x)"
            for b, v in s["score_vs_prompt_pass"].items()
        )
        out.append(
            f"{fam}: all {s['candidates']} candidates vs one prompt pass: {ratios}; "
            f"acting speed-up vs naive per-candidate scoring: {s['rollout_speedup_vs_naive']:.1f}x"
        )
    out += [
        "",
        "One-TTI decision latency (leader then followers, one episode)",
        format_table(result["latency"],
                     ["family", "engine", "memo", "positions", "attention_scale", "N", "p50_ms", "p99_ms", "min_ms",
                      "p50_cpu_ms"]),
        "",
        "Valid-action rate (free = no PAG)",
        format_table(
            result["validity"],
            ["family", "weights", "decoding", "pag", "decisions", "invalid", "valid_rate", "seconds"],
        ),
        "",
        "Targets: " + ", ".join(f"{k} {v}" for k, v in result["targets"].items()),
    ]
    return "\n".join(out)
