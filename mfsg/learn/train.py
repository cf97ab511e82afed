"""The training run behind ``mfsg train``: iterate rollout → Stackelberg PPO update, log, evaluate, checkpoint.

Output folder: ``config.json``, ``metrics.jsonl`` (one line per iteration), ``eval.jsonl``
(periodic evaluation at fixed N and p_a), ``checkpoint/`` (latest, for ``--resume``) and
``final/`` (the trained players, for ``mfsg evaluate``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from mfsg.config import ChurnConfig, ConfigError, EnvConfig
from mfsg.env import BatchedEnv
from mfsg.learn import checkpoint
from mfsg.learn import device as devices
from mfsg.learn.config import TrainConfig, train_config_from_dict, train_config_to_dict
from mfsg.learn.imitation import agreement, dagger, demonstrations, fit, make_teacher
from mfsg.learn.mappo import MLPPlayer
from mfsg.learn.players import Player
from mfsg.learn.ppo import StackelbergPPO
from mfsg.learn.rollout import Rollout, rollout
from mfsg.metrics import episode_metrics, genie_throughput
from mfsg.seeds import derive

REPOSITORY = Path(__file__).resolve().parents[2]



def resolve(path: str, field: str) -> Path:
    """A path of a config: absolute, or relative to the repository root (then the working directory)."""
    p = Path(path)
    for cand in (p,) if p.is_absolute() else (REPOSITORY / p, p):
        if cand.exists():
            return cand
    raise ConfigError(f"{field}={path!r} is invalid: no such folder")


def load_matching(path: Path, modules: dict) -> list[str]:
    """Copy every tensor of the checkpoint ``path`` whose name and shape match into ``modules``; returns the
    names left at their initial values (e.g. a critic head of another shape, which the value warm-up fits)."""
    from safetensors.torch import load_file

    skipped = []
    for name, module in modules.items():
        saved = load_file(str(path / f"{name}.safetensors"))
        own = module.state_dict()
        match = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
        module.load_state_dict(match, strict=False)
        loaded = {own[k].data_ptr() for k in match}  # tied weights (GPT-2's embeddings) are saved once
        skipped += [f"{name}.{k}" for k, v in own.items() if k not in match and v.data_ptr() not in loaded]
    policy = [k for k in skipped if ".critic" not in k]
    if policy:
        raise ConfigError(f"policy.init_checkpoint={str(path)!r} is invalid: its players differ from the ones this "
                          f"config builds ({policy[0]} has no tensor of that name and shape)")
    return skipped


def make_players(cfg: TrainConfig) -> tuple[Player, Player]:
    """Build the leader and the unified follower for ``cfg.policy`` (seeded by ``cfg.run.seed``)."""
    torch.manual_seed(cfg.run.seed)
    if cfg.policy.kind == "mlp":
        per_ue = cfg.ppo.leader_credit == "per_ue"
        return (MLPPlayer("leader", cfg.env, cfg.policy.mlp, value_per_ue=per_ue),
                MLPPlayer("follower", cfg.env, cfg.policy.mlp))
    from mfsg.learn.language_players import make_language_players

    return make_language_players(cfg.env, cfg.policy.language, leader_value_per_ue=cfg.ppo.leader_credit == "per_ue")


def iteration_seed(cfg: TrainConfig, it: int, use: str = "rollout") -> int:
    """The seed of iteration ``it``'s ``use`` (``rollout``: env and action draws; ``update``: minibatches)."""
    return derive(cfg.run.seed, use, it)


def fixed_n_env(env_cfg: EnvConfig, n: int, p_arrival: float) -> EnvConfig:
    """The evaluation scenario: exactly N UEs, scalar p_a, everything else as trained."""
    return dataclasses.replace(env_cfg, churn=ChurnConfig(kind="fixed", n=n), p_arrival=p_arrival)


def evaluate_players(leader: Player, follower: Player, env_cfg: EnvConfig, *, episodes: int, seed: int,
                     no_comm: bool = False, greedy: bool = False) -> dict:
    """model §7 metrics of the players on ``episodes`` episodes of ``env_cfg``."""
    env = BatchedEnv(env_cfg, episodes, seed=seed)
    t0 = time.perf_counter()
    ro = rollout(env, leader, follower, seed=seed, greedy=greedy, no_comm=no_comm)
    elapsed = time.perf_counter() - t0
    out = episode_metrics(env)
    n_decisions = len(ro.leader.action) + len(ro.follower.action)
    out["decision_latency_ms"] = 1e3 * elapsed / max(1, env_cfg.horizon)  # all decisions of one TTI, batched
    out["decisions_per_s"] = n_decisions / elapsed
    valid = torch.cat([d.mask.gather(1, d.action[:, None]).squeeze(1) for d in (ro.leader, ro.follower)])
    out["valid_action_rate"] = valid.float().mean().item()
    return out


def read_log(path: Path) -> list[tuple[str, dict]]:
    """(line, row) of every line of a run's JSONL log (``metrics.jsonl``, ``eval.jsonl``); a line that is not a
    JSON object with an integer ``iteration`` raises ConfigError naming the file and the line."""
    out = []
    for i, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not (isinstance(row, dict) and isinstance(row.get("iteration"), int)):
            raise ConfigError(f"{str(path)!r} line {i} is not a JSON object with an integer 'iteration' "
                              "(the log is damaged)")
        out.append((line.decode(), row))
    return out


class Trainer:
    """Owns the players, the PPO state and the output folder of one run."""

    def __init__(self, cfg: TrainConfig, out: str | Path):
        self.cfg, self.out = cfg, Path(out)
        torch.set_num_threads(cfg.run.threads)
        self.leader, self.follower = make_players(cfg)
        if cfg.policy.init_checkpoint:
            self.init_skipped = load_matching(resolve(cfg.policy.init_checkpoint, "policy.init_checkpoint"),
                                              self.modules())
        self.device = devices.resolve(cfg.run.device, "run.device")
        self.leader.to(self.device)
        self.follower.to(self.device)
        self.ppo = StackelbergPPO(self.leader, self.follower, cfg.ppo, cfg.env.utility.gamma)
        self.env = BatchedEnv(cfg.env, cfg.run.n_envs, seed=cfg.run.seed)
        self.start, self.resumed = 0, False
        self.wall_before, self.t_start = 0.0, time.perf_counter()

    # ------------------------------------------------------------------ files
    def modules(self) -> dict:
        return {"leader": self.leader, "follower": self.follower}

    def optimizers(self) -> dict:
        return {"leader": self.ppo.opt_leader, "follower": self.ppo.opt_follower}

    def save(self, name: str, iteration: int) -> None:
        checkpoint.save(self.out / name, modules=self.modules(), optimizers=self.optimizers(), iteration=iteration,
                        extra={"config": train_config_to_dict(self.cfg), "wall_s": self.wall()})

    def resume(self) -> None:
        ckpt = self.out / "checkpoint"
        state = checkpoint.load(ckpt, modules=self.modules(), optimizers=self.optimizers())
        self.start, self.resumed = state["iteration"], True
        self.wall_before = state.get("wall_s", 0.0)
        for name in ("metrics.jsonl", "eval.jsonl"):  # drop lines of iterations that will run again
            path = self.out / name
            if path.exists():
                keep = [ln for ln, row in read_log(path) if row["iteration"] < self.start]
                path.write_text("".join(ln + "\n" for ln in keep))

    def log(self, name: str, row: dict) -> None:
        with open(self.out / name, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    # ------------------------------------------------------------------ loop
    def evaluate(self, it: int) -> list[dict]:
        """Metrics at every ``run.eval_ns`` in every ``run.eval_modes`` (sampled / greedy), with the genie
        fraction on the same seeds and the run's wall clock so far (``wall_s``)."""
        rows = []
        r = self.cfg.run
        seed = r.eval_seed
        for n in r.eval_ns:
            env_cfg = fixed_n_env(self.cfg.env, n, r.eval_p_arrival)
            genie = genie_throughput(env_cfg, r.eval_episodes, seed)
            for mode in r.eval_modes:
                m = evaluate_players(self.leader, self.follower, env_cfg, episodes=r.eval_episodes, seed=seed,
                                     no_comm=r.no_comm, greedy=mode == "greedy")
                m["genie_fraction"] = m["throughput"] / max(genie, 1e-12)
                rows.append({"iteration": it, "n_ue": n, "p_arrival": r.eval_p_arrival, "mode": mode, **m,
                             "wall_s": self.wall()})
                self.log("eval.jsonl", rows[-1])
        return rows

    def wall(self) -> float:
        """Seconds of training so far, across resumes."""
        return self.wall_before + time.perf_counter() - self.t_start

    def heldout_agreement(self) -> dict:
        """Greedy agreement with the teacher on held-out episodes at every ``run.eval_ns`` (model §6 LLM-PL)."""
        pol, r = self.cfg.policy, self.cfg.run
        out = {}
        for n in r.eval_ns:
            env_cfg = fixed_n_env(self.cfg.env, n, r.eval_p_arrival)
            seed = derive(pol.imitation.seed, "heldout", n)  # apart from the training demonstrations
            demo_l, demo_f = demonstrations(env_cfg, make_teacher(pol.warm_start, pol.imitation), self.leader,
                                            self.follower, pol.imitation.heldout_episodes, seed)
            out[str(n)] = {"leader": agreement(self.leader, demo_l), "follower": agreement(self.follower, demo_f)}
        return out

    def warm_start(self) -> dict:
        """Imitation of ``policy.warm_start`` by both players before PPO (model §6; logged to warm_start.json,
        the imitated players saved as ``imitated/`` and evaluated as iteration −1 of eval.jsonl)."""
        pol = self.cfg.policy
        t0 = time.perf_counter()
        teacher = make_teacher(pol.warm_start, pol.imitation)
        demo_l, demo_f = demonstrations(self.cfg.env, teacher, self.leader, self.follower, pol.imitation.episodes,
                                        pol.imitation.seed)
        out = {"teacher": pol.warm_start, "observed_pointer": pol.imitation.observed_pointer,
               "decisions": {"leader": len(demo_l), "follower": len(demo_f)}}
        t1 = time.perf_counter()
        out["follower_loss"] = fit(self.follower, demo_f, pol.imitation)
        t2 = time.perf_counter()
        out["leader_loss"] = fit(self.leader, demo_l, pol.imitation)
        t3 = time.perf_counter()
        out["seconds"] = {"demonstrations": t1 - t0, "follower": t2 - t1, "leader": t3 - t2}
        if pol.imitation.dagger_rounds:
            out["dagger"] = dagger(self.cfg.env, teacher, self.leader, self.follower, demo_l, demo_f, pol.imitation)
            out["seconds"]["dagger"] = time.perf_counter() - t3
        out["leader_agreement"] = agreement(self.leader, demo_l)
        out["follower_agreement"] = agreement(self.follower, demo_f)
        if pol.imitation.heldout_episodes:
            out["heldout_agreement"] = self.heldout_agreement()
        out["seconds"]["total"] = time.perf_counter() - t0
        (self.out / "warm_start.json").write_text(json.dumps(out, indent=1))
        self.save("imitated", 0)
        self.evaluate(-1)
        return out

    def reference_players(self) -> tuple[Player, Player]:
        """The players the ``ppo.anchor_coef`` term anchors to: the warm-started ones (``imitated/``) or,
        without a warm start, the initial ones (``initial/``), read back so a resumed run finds them again."""
        with torch.random.fork_rng(devices=[]):
            leader, follower = make_players(self.cfg)
        start = "imitated" if self.cfg.policy.warm_start else "initial"
        checkpoint.load(self.out / start, modules={"leader": leader, "follower": follower})
        return leader.to(self.device), follower.to(self.device)

    def rollout(self, it: int) -> Rollout:
        """Iteration ``it``'s episodes with the players as they are (sampled actions)."""
        return rollout(self.env, self.leader, self.follower, seed=iteration_seed(self.cfg, it),
                       no_comm=self.cfg.run.no_comm)

    def run(self, progress: bool = True) -> dict:
        cfg, r = self.cfg, self.cfg.run
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(train_config_to_dict(cfg), indent=1))
        self.t_start = time.perf_counter()
        if not self.resumed:  # the starting players are evaluated as iteration -1 whatever the recipe
            if cfg.policy.init_checkpoint:
                (self.out / "init.json").write_text(json.dumps(
                    {"init_checkpoint": cfg.policy.init_checkpoint, "left_at_initial_values": self.init_skipped}, indent=1))
            if cfg.policy.warm_start:
                self.warm_start()
            else:
                self.save("initial", 0)
                self.evaluate(-1)
            self.save("checkpoint", 0)
        if cfg.ppo.anchor_coef:
            self.ppo.set_reference(*self.reference_players())
        bar = tqdm(range(self.start, r.iterations), initial=self.start, total=r.iterations, disable=not progress,
                   desc="train", unit="it")
        for it in bar:
            t0 = time.perf_counter()
            with devices.autocast(self.device, r.precision):
                ro = self.rollout(it)
            m = episode_metrics(self.env)
            t1 = time.perf_counter()
            gen = torch.Generator().manual_seed(iteration_seed(cfg, it, "update"))
            with devices.autocast(self.device, r.precision):
                stats = self.ppo.update(ro, gen, policy=it >= cfg.ppo.value_warmup)
            row = {"iteration": it, "throughput": m["throughput"], "jain": m["jain"],
                   "leader_return": ro.leader_reward.sum(1).mean().item(),
                   "follower_return": (ro.follower_reward.sum(2).sum(1) / ro.active.any(2).sum(1)).mean().item(),
                   "rollout_s": t1 - t0, "update_s": time.perf_counter() - t1, **stats}
            self.log("metrics.jsonl", row)
            bar.set_postfix(thr=f"{m['throughput']:.3f}", jain=f"{m['jain']:.3f}")
            if (it + 1) % r.eval_every == 0 or it + 1 == r.iterations:
                self.evaluate(it)
            if (it + 1) % r.checkpoint_every == 0 or it + 1 == r.iterations:
                self.save("checkpoint", it + 1)
        self.save("final", r.iterations)
        return {"iterations": r.iterations, "wall_s": self.wall(), "out": str(self.out)}


def load_players(path: str | Path, device: str = "cpu") -> tuple[Player, Player, TrainConfig]:
    """Players saved by a run (``final/`` or ``checkpoint/``), with the run's config, on ``device`` (whatever
    device the run trained on: :mod:`mfsg.learn.device`)."""
    dev = devices.resolve(device)
    cfg = train_config_from_dict(checkpoint.read_state(path)["config"])
    leader, follower = make_players(cfg)
    checkpoint.load(path, modules={"leader": leader, "follower": follower})
    return leader.to(dev), follower.to(dev), cfg
