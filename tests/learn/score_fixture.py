"""Candidate scores of committed checkpoints on fixed prompts: the fixture of
``test_checkpoint_scores.py``. Run ``python tests/learn/score_fixture.py`` to rewrite
``checkpoint_scores.json`` (only when a checkpoint is replaced on purpose: the test exists to
show that changes to the scoring code keep the scores)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from mfsg.env import BatchedEnv
from mfsg.language import prompts
from mfsg.learn import checkpoint
from mfsg.learn.config import TrainConfig, train_config_from_dict
from mfsg.learn.language_players import make_language_players
from mfsg.learn.train import fixed_n_env
from mfsg.protocols import make_protocol

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("checkpoint_scores.json")
CHECKPOINTS = {  # name -> (folder, weight files whose hash keys the fixture)
    "mfsg-default": ("experiments/checkpoints/mfsg-default", ("leader.safetensors", "follower.safetensors")),
    "lm-gpt2-ue_set-log_n": ("experiments/checkpoints/lm-gpt2-ue_set-log_n", ("model.safetensors",)),
}
LM_OPTIONS = {"positions": "ue_set", "attention_scale": "log_n"}  # the rules lm-gpt2-ue_set-log_n was pretrained with
NS = (2, 8)
EPISODES, TTIS, SEED = 4, 6, 11  # sr-grant drives the episodes; prompts of every TTI are kept
MAX_PROMPTS = 24  # distinct prompts kept per (role, N)
ENGINE = "fast"  # the scorer engine that wrote the fixture (the default)


def weights_hash(name: str) -> str:
    folder, files = CHECKPOINTS[name]
    h = hashlib.sha256()
    for f in files:
        h.update((ROOT / folder / f).read_bytes())
    return h.hexdigest()


def players(name: str, n: int, engine: str = ENGINE):
    """(leader, follower, env config at N) of a checkpoint, scored by ``engine``."""
    folder = str(ROOT / CHECKPOINTS[name][0])
    if name == "mfsg-default":
        state = checkpoint.read_state(folder)["config"]
        state["policy"]["language"] = {**state["policy"]["language"], "engine": engine}
        cfg = train_config_from_dict(state)
        env = fixed_n_env(cfg.env, n, cfg.env.p_arrival)
        leader, follower = make_language_players(env, cfg.policy.language)
        checkpoint.load(folder, modules={"leader": leader, "follower": follower})
        return leader, follower, env
    env = fixed_n_env(TrainConfig().env, n, TrainConfig().env.p_arrival)
    leader, follower = make_language_players(env, {"checkpoint": folder, "engine": engine, **LM_OPTIONS})
    return leader, follower, env


def fixed_prompts(env_cfg, pcfg: prompts.PromptConfig) -> dict[str, tuple[list[str], list[int]]]:
    """Distinct (text, state class) of the BS and UE decisions of sr-grant-driven episodes."""
    from mfsg.language import grammar

    env = BatchedEnv(env_cfg, EPISODES, seed=SEED)
    proto = make_protocol("sr-grant", seed=SEED)
    proto.reset(env, SEED)
    lim = grammar.Limits.from_env(env_cfg)
    seen: dict[str, dict[str, int]] = {"leader": {}, "follower": {}}
    for _ in range(TTIS):
        lobs = env.begin_tti()
        r = prompts.leader_prompts(lobs, lim, pcfg)
        for t, c in zip(r.texts, r.state_class, strict=True):
            seen["leader"].setdefault(t, int(c))
        dcm = proto.leader(lobs)
        fobs = env.deliver(dcm)
        r = prompts.follower_prompts(fobs, lim, pcfg)
        for t, c in zip(r.texts, r.state_class, strict=True):
            seen["follower"].setdefault(t, int(c))
        env.end_tti(*proto.followers(fobs))
    return {role: (list(d)[:MAX_PROMPTS], list(d.values())[:MAX_PROMPTS]) for role, d in seen.items()}


def build() -> dict:
    out = {}
    for name in CHECKPOINTS:
        entry = {"sha256": weights_hash(name), "cases": []}
        for n in NS:
            leader, follower, env_cfg = players(name, n)
            for role, player in (("leader", leader), ("follower", follower)):
                texts, classes = fixed_prompts(env_cfg, player.pcfg)[role]
                inputs = player.inputs_of(texts, classes)
                with torch.no_grad():
                    log_pi = player.scores(inputs)
                    seq = player.sequence_scores(inputs)
                entry["cases"].append({"n": n, "role": role, "texts": texts, "state_class": classes,
                                       "log_pi": log_pi.tolist(), "sequence_scores": seq.tolist()})
        out[name] = entry
    return out


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(build(), separators=(",", ":")) + "\n")
    print(f"written {FIXTURE}")
