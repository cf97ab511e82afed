"""Language-model pretraining of the small backbones on protocol transcripts (model §5, §6 "no
pretraining" ablation = random init).

Transcripts come from running :class:`~mfsg.env.BatchedEnv` with rule-based protocols — the
human-crafted SR/grant protocol (:mod:`mfsg.protocols.sr_grant`, when present) and random valid
protocols (uniform over each state's valid PAG candidates) — rendered with the same SIE prompts
the policies read (:mod:`mfsg.language.prompts`) and the same action strings (PAG). One
transcript line is ``prompt → action``: T5 learns the action given the prompt (seq2seq);
GPT-2 models the whole line (causal LM). The reported LM loss is the mean per-token negative
log-likelihood of the action tokens (with eos), on held-out transcripts, for both families.

``python -m mfsg.language.pretrain --out DIR --steps N`` writes a ``save_pretrained`` folder
(model + tokenizer + ``pretrain.json`` with the measured figures).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from mfsg.config import ConfigError, EnvConfig, check_int, check_prob
from mfsg.env import BatchedEnv, spec
from mfsg.language import grammar, prompts
from mfsg.language.attention_scale import SCALES
from mfsg.language.backbones import FAMILIES, BackboneConfig, build_backbone, is_seq2seq, save_backbone
from mfsg.language.positions import SCHEMES, PositionRule
from mfsg.language.scoring import pad_lists
from mfsg.seeds import derive

DEFAULT_CHECKPOINT_DIR = Path("experiments/checkpoints")


def default_checkpoint(family: str = "gpt2", positions: str = "absolute", attention_scale: str = "standard") -> Path:
    """Where the default pretrained backbone of ``family`` with the position rule ``positions``
    (:mod:`mfsg.language.positions`) and the attention scale ``attention_scale``
    (:mod:`mfsg.language.attention_scale`) lives (relative to the repository)."""
    suffix = "" if positions == "absolute" else f"-{positions}"
    suffix += "" if attention_scale == "standard" else f"-{attention_scale}"
    return DEFAULT_CHECKPOINT_DIR / f"lm-{family}{suffix}"


@dataclass(frozen=True)
class PretrainConfig:
    """``p_random``: share of episodes run by a random valid protocol (the rest SR/grant when it
    exists); ``n_envs`` episodes are simulated per data round; ``heldout`` share of lines is kept
    out of training for the reported loss."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    prompts: prompts.PromptConfig = field(default_factory=prompts.PromptConfig)
    steps: int = 2000
    batch: int = 64
    lr: float = 2e-3
    n_envs: int = 64
    rounds: int = 4
    p_random: float = 0.5
    heldout: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("pretrain.steps", self.steps, 0)
        check_int("pretrain.batch", self.batch, 1)
        if not (isinstance(self.lr, float) and self.lr > 0):
            raise ConfigError(f"pretrain.lr={self.lr!r} is invalid: allowed a float > 0")
        check_int("pretrain.n_envs", self.n_envs, 1)
        check_int("pretrain.rounds", self.rounds, 1)
        check_prob("pretrain.p_random", self.p_random)
        check_prob("pretrain.heldout", self.heldout, open_high=True)
        check_int("pretrain.seed", self.seed, 0)


# ------------------------------------------------------------------ protocols
class RandomProtocol:
    """Uniformly random valid actions: any DCM; UE: any UCM, IDLE or (with a dPDU) TX on any RBG or DELETE."""

    def __init__(self, cfg: EnvConfig, seed: int):
        self.cfg, self.gen = cfg, torch.Generator().manual_seed(seed)

    def reset(self, env: BatchedEnv, seed: int | None = None) -> None:
        if seed is not None:
            self.gen.manual_seed(seed)

    def leader(self, obs: spec.LeaderObs) -> torch.Tensor:
        return torch.randint(self.cfg.dcm_vocab, obs.active.shape, generator=self.gen) * obs.active

    def followers(self, obs: spec.FollowerObs) -> tuple[torch.Tensor, torch.Tensor]:
        shape = obs.active.shape
        ucm = torch.randint(self.cfg.ucm_vocab, shape, generator=self.gen)
        access = torch.randint(self.cfg.n_access, shape, generator=self.gen)
        access = torch.where(obs.buffer > 0, access, spec.IDLE)
        return ucm * obs.active, access * obs.active


def sr_grant_protocol(seed: int):
    """The SR/grant baseline (:mod:`mfsg.protocols.sr_grant`), or None if that package is absent."""
    try:
        from mfsg.protocols.factory import make_protocol
    except ImportError:
        return None
    return make_protocol("sr-grant", seed=seed)


# ------------------------------------------------------------------ transcripts
def transcripts(protocol, cfg: EnvConfig, pcfg: prompts.PromptConfig, n_envs: int, seed: int) -> list[tuple[str, str]]:
    """(prompt, action string) of every decision of ``n_envs`` episodes run by ``protocol``."""
    env = BatchedEnv(cfg, n_envs, seed=seed)
    protocol.reset(env, seed)
    lim = grammar.Limits.from_env(cfg)
    lines: list[tuple[str, str]] = []
    while not env.done:
        lobs = env.begin_tti()
        dcm = protocol.leader(lobs)
        r = prompts.leader_prompts(lobs, lim, pcfg)
        lines += [(t, grammar.format_bs(int(dcm[e, s]))) for t, e, s in zip(r.texts, r.env, r.slot, strict=True)]
        fobs = env.deliver(dcm)
        ucm, access = protocol.followers(fobs)
        r = prompts.follower_prompts(fobs, lim, pcfg)
        lines += [
            (t, grammar.format_ue(int(ucm[e, s]), int(access[e, s]), cfg.n_rbg))
            for t, e, s in zip(r.texts, r.env, r.slot, strict=True)
        ]
        env.end_tti(ucm, access)
    return lines


def collect(cfg: PretrainConfig) -> tuple[list[tuple[str, str]], list[str]]:
    """Transcript lines of all rounds and the names of the protocols used."""
    n_rand = round(cfg.n_envs * cfg.p_random)
    sources = []
    lines: list[tuple[str, str]] = []
    for k in range(cfg.rounds):
        seed = derive(cfg.seed, "round", k)
        sr = sr_grant_protocol(seed) if n_rand < cfg.n_envs else None
        if sr is None:
            lines += transcripts(RandomProtocol(cfg.env, seed), cfg.env, cfg.prompts, cfg.n_envs, seed)
            sources.append("random")
            continue
        lines += transcripts(sr, cfg.env, cfg.prompts, cfg.n_envs - n_rand, seed)
        sources.append("sr_grant")
        if n_rand:
            rand_seed = derive(cfg.seed, "round-random", k)
            lines += transcripts(RandomProtocol(cfg.env, rand_seed), cfg.env, cfg.prompts, n_rand, rand_seed)
            sources.append("random")
    return lines, sorted(set(sources))


# ------------------------------------------------------------------ LM loss
def _batch(tok, lines: list[tuple[str, str]], seq2seq: bool):
    p_ids = tok([p for p, _ in lines], add_special_tokens=False).input_ids
    a_ids = [ids + [tok.eos_token_id] for ids in tok([a for _, a in lines], add_special_tokens=False).input_ids]
    if seq2seq:
        ids, lp = pad_lists(p_ids, tok.pad_token_id)
        labels, la = pad_lists(a_ids, tok.pad_token_id)
        mask = torch.arange(ids.shape[1]) < lp[:, None]
        labels = labels.masked_fill(torch.arange(labels.shape[1]) >= la[:, None], -100)
        return dict(input_ids=ids, attention_mask=mask, labels=labels), labels != -100
    seqs = [p + a for p, a in zip(p_ids, a_ids, strict=True)]
    ids, ls = pad_lists(seqs, tok.pad_token_id)
    mask = torch.arange(ids.shape[1]) < ls[:, None]
    act = torch.zeros_like(mask)
    for i, (p, a) in enumerate(zip(p_ids, a_ids, strict=True)):
        act[i, len(p) : len(p) + len(a)] = True
    return dict(input_ids=ids, attention_mask=mask), act


def lm_losses(model, tok, lines) -> tuple[torch.Tensor, torch.Tensor]:
    """(training loss, action-token NLL) of a batch of lines; differentiable."""
    seq2seq = is_seq2seq(model)
    inputs, act = _batch(tok, lines, seq2seq)
    if seq2seq:
        out = model(**inputs, use_cache=False)
        return out.loss, out.loss
    pos = PositionRule.of(model)(inputs["input_ids"], inputs["attention_mask"])
    logits = model(**inputs, position_ids=pos, use_cache=False).logits[:, :-1]
    target = inputs["input_ids"][:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    m = inputs["attention_mask"][:, 1:].float()
    a = act[:, 1:].float()
    return (nll * m).sum() / m.sum(), (nll * a).sum() / a.sum()


def pretrain(cfg: PretrainConfig, out: str | Path | None = None) -> dict:
    """Pretrain ``cfg.backbone`` from random init; save to ``out`` if given; return the figures."""
    t0 = time.perf_counter()
    lines, sources = collect(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(lines), generator=gen).tolist()
    n_held = max(1, int(len(lines) * cfg.heldout))
    held = [lines[i] for i in perm[:n_held]]
    train = [lines[i] for i in perm[n_held:]]
    t_data = time.perf_counter() - t0
    model, tok = build_backbone(cfg.backbone)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)

    def heldout_nll() -> float:
        with torch.no_grad():
            vals = [
                lm_losses(model, tok, held[i : i + 256])[1].item() * len(held[i : i + 256])
                for i in range(0, len(held), 256)
            ]
        return sum(vals) / len(held)

    before = heldout_nll()
    model.train()
    t1 = time.perf_counter()
    curve = []
    for step in range(cfg.steps):
        idx = torch.randint(len(train), (cfg.batch,), generator=gen).tolist()
        loss, act_nll = lm_losses(model, tok, [train[i] for i in idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, cfg.steps // 20) == 0 or step == cfg.steps - 1:
            curve.append((step, round(act_nll.item(), 4)))
    t_train = time.perf_counter() - t1
    model.eval()
    result = {
        "family": cfg.backbone.family,
        "positions": cfg.backbone.positions,
        "attention_scale": cfg.backbone.attention_scale,
        "steps": cfg.steps,
        "batch": cfg.batch,
        "lines": len(lines),
        "protocols": sources,
        "heldout_action_nll_before": before,
        "heldout_action_nll_after": heldout_nll(),
        "train_curve": curve,
        "seconds_data": t_data,
        "seconds_train": t_train,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
    }
    if out is not None:
        save_backbone(model, tok, out)
        (Path(out) / "pretrain.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mfsg.language.pretrain", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="checkpoint folder to write (save_pretrained + tokenizer)")
    ap.add_argument("--steps", type=int, default=PretrainConfig.steps)
    ap.add_argument("--family", choices=FAMILIES, default=BackboneConfig.family)
    ap.add_argument("--batch", type=int, default=PretrainConfig.batch)
    ap.add_argument("--n-envs", type=int, default=PretrainConfig.n_envs)
    ap.add_argument("--rounds", type=int, default=PretrainConfig.rounds)
    ap.add_argument("--p-random", type=float, default=PretrainConfig.p_random)
    ap.add_argument("--positions", choices=SCHEMES, default=BackboneConfig.positions,
                    help="position-id rule (mfsg.language.positions; ue_set: GPT-2 only)")
    ap.add_argument("--attention-scale", choices=SCALES, default=BackboneConfig.attention_scale,
                    help="attention logit scale (mfsg.language.attention_scale; log_n: GPT-2 only)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        cfg = PretrainConfig(
            backbone=BackboneConfig(family=args.family, seed=args.seed, positions=args.positions,
                                    attention_scale=args.attention_scale),
            steps=args.steps,
            batch=args.batch,
            n_envs=args.n_envs,
            rounds=args.rounds,
            p_random=args.p_random,
            seed=args.seed,
        )
    except ConfigError as err:
        print(f"pretrain: error: {err}")
        return 2
    res = pretrain(cfg, args.out)
    print(
        f"{res['family']}: {res['lines']} transcript lines from {', '.join(res['protocols'])}; "
        f"held-out action NLL {res['heldout_action_nll_before']:.4f} -> {res['heldout_action_nll_after']:.4f} "
        f"in {res['steps']} steps, {res['seconds_train']:.1f} s train + {res['seconds_data']:.1f} s data; "
        f"written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
