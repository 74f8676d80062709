"""The PPO trainer recipe: setup / train / validate / save_checkpoint / cleanup, top to bottom.

One arm of an experiment = one `PPOTrainer`. Each step: the rollout workers sample responses
for a batch of prompts with the current policy and score them; the learner computes old,
reference and value estimates, advantages (GAE with a critic, or GRPO group advantages), then
PPO updates. The policy loss is taken per domain: the baseline arm steps on the sum of the
per-domain gradients, a multi-task arm (mtl.enabled) on their combination by `mtl.method`
(a torchjd weighting of their Gramian: aggregation.py). Metrics go to logs/<exp>/<arm>/metrics.jsonl (one line per epoch), the run's
account to summary.json (records.py), checkpoints to checkpoints/<exp>/<arm>/epoch_<N>/
(checkpoint.py). Entry points: entry.py; samples and their tensors: samples.py.

Several learners (a job with nodes × tasks_per_node > 1 tasks) shard the models with FSDP2 and
split every minibatch between them (distributed.py); rank 0 alone drives the rollouts,
validation, logs and checkpoints, and broadcasts what the others need. Each rank's loss is
weighted by its share of the minibatch's tokens, so the reduced gradient is the one a single
learner would compute, and the multi-task Gramian is taken over the whole gradient.

A run resumes from its latest complete checkpoint (submitit requeue, scontrol requeue):
sampling seeds, minibatch order and data order are pure functions of (seed, step/epoch), and RNG
states are restored, so on CPU a resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

from orchestrator.core import checkpoints
from orchestrator.kinds.train import checkpoint, distributed, trainer_state
from orchestrator.kinds.train.aggregation import Aggregator, conflict_stats, gramian
from orchestrator.kinds.train.config import TrainConfig
from orchestrator.kinds.train.data import Example, epoch_order, load_verl_parquet
from orchestrator.kinds.train.early_stop import EarlyStopping
from orchestrator.kinds.train.eval_on_save import EvalOnSave
from orchestrator.kinds.train.ppo import (
    gae,
    group_advantages,
    kl_per_token,
    masked_mean,
    masked_whiten,
    policy_loss,
    token_logprobs,
    token_rewards,
    value_loss,
)
from orchestrator.kinds.train.records import ArmRecords, epoch_metrics, mean, progress_line
from orchestrator.kinds.train.rollout import Rollouts
from orchestrator.kinds.train.samples import Request, collate


class PPOTrainer:
    def __init__(self, cfg: TrainConfig, experiment: str, arm: str, run_dir: str | Path) -> None:
        self.cfg, self.experiment, self.arm, self.run_dir = cfg, experiment, arm, Path(run_dir)
        self.records = ArmRecords(cfg, experiment, arm, run_dir)

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        cfg, t = self.cfg, self.cfg.trainer
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = "cuda" if t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available()) else "cpu"
        if self.device == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.world = distributed.init(self.device, single=t.fsdp)
        self.main = self.world.main
        if self.world.distributed:
            print(
                f"learner {self.world.rank} of {self.world.size} on {os.environ.get('SLURMD_NODENAME') or 'this host'}",
                flush=True,
            )
        self.domains = list(cfg.domains)
        self.train_data: list[Example] = []
        self.val_data: dict[str, list[Example]] = {}
        for name, d in cfg.domains.items():
            self.train_data += load_verl_parquet(d.train, name, d.max_train)
            self.val_data[name] = load_verl_parquet(d.val, name, d.max_val)

        resume_dir = distributed.broadcast_object(checkpoints.latest(self.experiment, self.arm), self.world)
        self.resumed_from = resume_dir
        torch.manual_seed(t.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        self.policy = self._place(AutoModelForCausalLM.from_pretrained(resume_dir or cfg.model, dtype=torch.float32))
        # the frozen reference needs no fp32 master copy: with bf16 compute it is held in bf16
        ref_dtype = torch.bfloat16 if t.mixed_precision == "bf16" else torch.float32
        self.ref = self._place(AutoModelForCausalLM.from_pretrained(cfg.model, dtype=ref_dtype), trained=False).eval()
        self.ref.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.critic = self.critic_optimizer = None
        if cfg.algorithm.advantage == "gae":
            self.critic = self._place(
                AutoModelForTokenClassification.from_pretrained(cfg.model, num_labels=1, dtype=torch.float32)
            )
            self.critic_optimizer = torch.optim.AdamW(
                self.critic.parameters(), lr=t.critic_lr, weight_decay=t.weight_decay
            )
        self.aggregator = (
            Aggregator(cfg.mtl.method, len(self.domains), t.seed, cfg.mtl.options) if cfg.mtl.enabled else None
        )
        es = cfg.early_stopping
        # with a held-out metric (eval/...) validation only tracks the reward-best checkpoint
        self.heldout = EvalOnSave.create(cfg, self.experiment, self.arm, self.main)
        self.reward_stops = not es.metric.startswith("eval/")
        metric, patience = (es.metric, es.patience) if self.reward_stops else ("val/reward_mean", 10**9)
        self.early_stopping = EarlyStopping(metric, es.mode, patience, es.min_delta, es.min_epochs)
        self.epoch, self.step, self.wall_time_s, self.last_val, self.last_metrics = 0, 0, 0.0, {}, {}
        self.resumed_state: dict = {}
        if resume_dir is not None:
            self._load_trainer_state(resume_dir)
        self.rollouts = None
        if self.main:
            self.records.drop_after(self.epoch)
            if self.heldout is not None:
                self.heldout.load(self.resumed_state.get("heldout"))
            self._prune()  # also clears half-written leftovers
            self.rollouts = Rollouts.for_config(cfg, self._rollout_device())
            self.records.start_wandb()
        self._push_weights()

    def _place(self, model, trained: bool = True):
        """On this learner's device; with several learners (or mixed precision, CPU offload),
        sharded across them with FSDP2."""
        t = self.cfg.trainer
        if trained and t.gradient_checkpointing:  # transformers checkpoints only in train mode
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
        if not (self.world.distributed or t.fsdp):
            return model.to(self.device)
        if not t.cpu_offload:  # offloaded shards stay on the CPU
            model = model.to(self.device)
        return distributed.shard(model, torch.bfloat16 if t.mixed_precision == "bf16" else None, t.cpu_offload)

    def _push_weights(self) -> None:
        state = distributed.full_state_dict(self.policy)  # a collective: every rank
        if self.main:
            self.rollouts.push_weights(state, self.step)

    def _rollout_device(self) -> str:
        """Ray actors given GPUs sample on them; sampling in this process uses the learner's device."""
        r = self.cfg.rollout
        return "cuda" if r.num_gpus > 0 or (r.workers == 0 and self.device == "cuda") else "cpu"

    def _load_trainer_state(self, directory: Path) -> None:
        trainer_state.restore(self, directory)
        if self.main:
            print(f"resumed {self.arm} from {directory} (epoch {self.epoch}, step {self.step})", flush=True)

    # ------------------------------------------------------------------ tensors

    # Splitting work between learners: rank r takes rows r, r + W, ... of a minibatch, and weights
    # its losses by its share of the minibatch's tokens (times W: FSDP averages over ranks), so
    # the reduced gradient is the single-learner one. A rank with no rows still runs a pass (one
    # row, weight 0): every rank must join every FSDP collective.

    def _mine(self, idx: torch.Tensor) -> torch.Tensor:
        return idx[self.world.rank :: self.world.size]

    def _share(self, b: dict, idx: torch.Tensor, mine: torch.Tensor) -> float:
        """This rank's share of idx's response tokens."""
        if not self.world.distributed:
            return 1.0
        total = float(b["mask"][idx].sum())
        return float(b["mask"][mine].sum()) / total if total > 0 and len(mine) else 0.0

    def _forward(self, model, b: dict, idx: torch.Tensor) -> torch.Tensor:
        """Output at each response position [n, T, ...] for the rows idx."""
        ids = torch.cat([b["prompt"][idx], b["resp"][idx]], 1)
        attn = torch.cat([b["prompt_mask"][idx], b["mask"][idx]], 1).long()
        pos = (attn.cumsum(-1) - 1).clamp_min(0)
        L = b["prompt"].shape[1]
        return model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, L - 1 : -1]

    def _logprobs(self, model, b: dict, idx: torch.Tensor) -> torch.Tensor:
        return token_logprobs(self._forward(model, b, idx), b["resp"][idx])

    # ------------------------------------------------------------------ one step

    def _advantages(self, b: dict) -> None:
        a, n = self.cfg.algorithm, b["resp"].shape[0]
        mine = self._mine(torch.arange(n, device=self.device))
        with torch.no_grad():  # each learner its rows, then all of them on every learner
            b["old_logp"] = distributed.gather_rows(self._logprobs(self.policy, b, mine), n, self.world)
            b["ref_logp"] = distributed.gather_rows(self._logprobs(self.ref, b, mine), n, self.world)
            b["kl"] = kl_per_token(b["old_logp"], b["ref_logp"], "k1")
            if a.advantage == "gae":
                b["values"] = distributed.gather_rows(
                    self._forward(self.critic, b, mine)[..., 0].float(), n, self.world
                )
                rewards = token_rewards(b["scores"], b["kl"], b["mask"], a.kl_coef)
                adv, b["returns"] = gae(rewards, b["values"], b["mask"], a.gamma, a.lam)
            else:
                adv = group_advantages(b["scores"], b["group"])[:, None] * b["mask"]
            b["adv"] = masked_whiten(adv, b["mask"]) if a.whiten_advantages and a.advantage == "gae" else adv

    def _policy_loss(self, b: dict, idx: torch.Tensor, logp: torch.Tensor) -> tuple[torch.Tensor, dict]:
        a = self.cfg.algorithm
        mask = b["mask"][idx]
        loss, stats = policy_loss(logp, b["old_logp"][idx], b["adv"][idx], mask, a.clip_ratio)
        if a.advantage == "grpo" and a.kl_coef > 0:  # GRPO: KL as a loss term (k3), not a reward
            loss = loss + a.kl_coef * masked_mean(kl_per_token(logp, b["ref_logp"][idx], "k3"), mask)
        return loss, stats

    def _by_domain(self, b: dict, idx: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        dom = b["domain"][idx]
        return [(d, idx[dom == k]) for k, d in enumerate(self.domains) if bool((dom == k).any())]

    def _params(self, model) -> list[torch.Tensor]:
        return [p for p in model.parameters() if p.requires_grad]

    def domain_grads(self, b: dict, idx: torch.Tensor) -> tuple[list[str], torch.Tensor, dict]:
        """Per-domain policy-loss gradients, flat [T, P] (one forward/backward per domain); with
        several learners, this rank's shard [T, P_local] of the reduced gradients."""
        params = self._params(self.policy)
        names, rows, stats = [], [], {}
        mine_all = self._mine(idx)
        for d, sel in self._by_domain(b, idx):
            mine = sel[torch.isin(sel, mine_all)]
            share = self._share(b, sel, mine)
            mine = mine if len(mine) else sel[:1]
            self.optimizer.zero_grad(set_to_none=True)
            loss, st = self._policy_loss(b, mine, self._logprobs(self.policy, b, mine))
            (loss * (share * self.world.size) if self.world.distributed else loss).backward()
            rows.append(distributed.flat_grad(params))
            names.append(d)
            stats[d] = (loss.detach() * share, st["clipfrac"] * share)
        return names, torch.stack(rows), stats

    def _clip(self, model, params: list[torch.Tensor]) -> float:
        """Clip the whole gradient's norm to trainer.max_grad_norm; returns the norm before."""
        if distributed.is_sharded(model):
            return distributed.clip_grad_norm(params, self.cfg.trainer.max_grad_norm)
        return float(torch.nn.utils.clip_grad_norm_(params, self.cfg.trainer.max_grad_norm))

    def _reduced(self, *xs: torch.Tensor) -> list[float]:
        """Sums over learners of per-rank scalars (each already weighted by the rank's share)."""
        t = distributed.all_reduce_sum(torch.stack([x.detach().float().reshape(()) for x in xs]), self.world)
        return t.tolist()

    def _policy_step(self, b: dict, idx: torch.Tensor, diagnose: bool) -> dict:
        params = self._params(self.policy)
        out: dict = {}
        if self.aggregator is not None:  # mtl.method over the per-domain gradients (one [T, T] all-reduce)
            names, grads, stats = self.domain_grads(b, idx)
            g = gramian(grads, distributed=self.world.distributed)
            direction, w = self.aggregator.combine(grads, g)
            distributed.set_flat_grad(params, direction)
            loss = sum(s[0] for s in stats.values())
            clipfrac = torch.stack([s[1] for s in stats.values()]).mean()
            out["conflict"] = conflict_stats(g, names=names)
            out["weights"] = dict(zip(names, w.tolist()))
        else:  # baseline: the sum of the per-domain losses, one forward/backward
            if diagnose:  # conflict diagnostics cost extra passes: once per epoch here
                names, grads, _ = self.domain_grads(b, idx)
                out["conflict"] = conflict_stats(gramian(grads, distributed=self.world.distributed), names=names)
            self.optimizer.zero_grad(set_to_none=True)
            mine_all = self._mine(idx)
            rows = mine_all if len(mine_all) else idx[:1]
            logp = self._logprobs(self.policy, b, rows)
            losses, weights, clips = [], [], []
            for _, sel in self._by_domain(b, idx):
                mine = sel[torch.isin(sel, mine_all)]
                share = self._share(b, sel, mine)
                if not len(mine):
                    continue
                pos = (rows.unsqueeze(1) == mine.unsqueeze(0)).nonzero()[:, 0]  # rows of mine within rows
                part, st = self._policy_loss(b, mine, logp[pos])
                losses.append(part)
                weights.append(share)
                clips.append(st["clipfrac"] * share)
            if not self.world.distributed:
                loss = torch.stack(losses).sum()
                loss.backward()
            else:
                loss = sum((part * w for part, w in zip(losses, weights)), logp.sum() * 0.0)
                (loss * self.world.size).backward()
            loss = loss.detach()
            # mean over the minibatch's domains of their clip fractions (summed over learners below)
            clipfrac = torch.stack(clips).sum() / len(self._by_domain(b, idx)) if clips else loss * 0.0
        out["grad_norm"] = self._clip(self.policy, params)
        self.optimizer.step()
        out["policy_loss"], out["clipfrac"] = self._reduced(loss, clipfrac)
        return out

    def _critic_step(self, b: dict, idx: torch.Tensor) -> float:
        self.critic_optimizer.zero_grad(set_to_none=True)
        mine = self._mine(idx)
        share = self._share(b, idx, mine)
        mine = mine if len(mine) else idx[:1]
        values = self._forward(self.critic, b, mine)[..., 0].float()
        loss = value_loss(values, b["values"][mine], b["returns"][mine], b["mask"][mine], self.cfg.algorithm.value_clip)
        (loss * (share * self.world.size) if self.world.distributed else loss).backward()
        self._clip(self.critic, self._params(self.critic))
        self.critic_optimizer.step()
        return self._reduced(loss * share)[0]

    def train_step(self, examples: list[Example], diagnose: bool) -> dict:
        """Rollout, advantages, PPO updates, weight push. Returns this step's stats."""
        t, g = self.cfg.trainer, self.cfg.algorithm.group_size
        requests = [Request(e.domain, e.messages, e.ground_truth, i) for i, e in enumerate(examples) for _ in range(g)]
        samples = self.rollouts.generate(requests, seed=t.seed * 1_000_003 + self.step * 101) if self.main else None
        samples = distributed.broadcast_object(samples, self.world)
        b = collate(samples, self.domains, self.tokenizer.pad_token_id, self.device)
        self._advantages(b)
        started = time.perf_counter()
        order = torch.Generator().manual_seed(t.seed * 7919 + self.step)
        stats: dict = {"policy": [], "critic": []}
        for ppo_epoch in range(t.ppo_epochs):
            perm = torch.randperm(len(samples), generator=order).to(self.device)
            for j, mb in enumerate(perm.chunk(t.mini_batches)):
                stats["policy"].append(self._policy_step(b, mb, diagnose and ppo_epoch == 0 and j == 0))
                if self.critic is not None:
                    stats["critic"].append(self._critic_step(b, mb))
        stats["update_s"] = time.perf_counter() - started
        self.step += 1
        self._push_weights()
        stats["samples"] = samples
        stats["kl"] = float(masked_mean(b["kl"], b["mask"]))
        return stats

    # ------------------------------------------------------------------ epochs

    def train_epoch(self, epoch: int) -> dict:
        t = self.cfg.trainer
        order = epoch_order(len(self.train_data), t.seed, epoch)
        steps = [
            self.train_step([self.train_data[i] for i in order[s : s + t.batch_size]], diagnose=(s == 0))
            for s in range(0, len(order), t.batch_size)
        ]
        return epoch_metrics(steps, self.domains, self.critic is not None)

    def validate(self) -> dict:
        """Greedy responses on every domain's validation set: mean reward per domain and overall
        (sampled by rank 0's rollouts, the same numbers on every learner)."""
        m = {}
        if not self.main:
            return distributed.broadcast_object(None, self.world)
        for d, examples in self.val_data.items():
            samples = self.rollouts.generate(
                [Request(e.domain, e.messages, e.ground_truth, i) for i, e in enumerate(examples)], seed=0, greedy=True
            )
            m[f"val/{d}/reward"] = mean([s.score for s in samples])
        m["val/reward_mean"] = mean([m[f"val/{d}/reward"] for d in self.val_data])
        return distributed.broadcast_object(m, self.world)

    def log(self, line: dict) -> None:
        if self.main:
            self.records.log(line)

    def train(self) -> dict:
        t, es_cfg = self.cfg.trainer, self.cfg.early_stopping
        started = time.time()
        base_wall = self.wall_time_s
        stop_reason = self.early_stopping.reason if self.early_stopping.stopped_epoch and self.reward_stops else None
        if self.heldout is not None and self.heldout.monitors:  # a resumed arm that had stopped on it
            stop_reason = self.heldout.state.stop_reason
        if self.cfg.evaluation.every_save:  # rank 0 alone holds the held-out state
            stop_reason = distributed.broadcast_object(stop_reason, self.world)
        if self.epoch == 0 and t.val_before_train and self.resumed_from is None:
            val = self.validate()
            self.last_val = val
            self.log(self.records.line(0, 0, val, 0.0))
        while stop_reason is None and self.epoch < t.epochs:
            epoch, epoch_start = self.epoch + 1, time.time()
            m = self.train_epoch(epoch)
            improved = False
            if epoch % t.test_freq == 0 or epoch == t.epochs:
                val = self.validate()
                m.update(val)
                self.last_val = val
                decision = self.early_stopping.update(epoch, m)
                improved = decision.improved
                if es_cfg.enabled and decision.stop and self.reward_stops:
                    stop_reason = decision.reason
            if self.heldout is not None:  # held-out results of earlier checkpoints, as they arrive
                stop_reason = stop_reason or self.heldout.poll(epoch)
            if epoch % t.test_freq == 0 or epoch == t.epochs or self.cfg.evaluation.every_save:
                stop_reason = distributed.broadcast_object(stop_reason, self.world)  # all learners stop together
            self.epoch = epoch
            line = self.records.line(epoch, self.step, m, time.time() - epoch_start)
            self.log(line)
            self.last_metrics = line
            self.wall_time_s = base_wall + time.time() - started
            if epoch % t.save_freq == 0 or epoch == t.epochs or stop_reason or improved:
                if self.heldout is not None:
                    self.heldout.saved(epoch)  # pending in the checkpoint's own state
                self.save_checkpoint(epoch, m, best=improved and self.reward_stops)
                if self.heldout is not None:
                    self.heldout.submit(epoch)  # the eval array; never waited for
            if self.main:
                print(progress_line(self.arm, epoch, self.step, m), flush=True)
        self.wall_time_s = base_wall + time.time() - started
        if self.heldout is not None:
            self.heldout.finish(self.epoch)  # not in wall_time_s: the arm's own time
        return self.write_summary(stop_reason)

    def save_checkpoint(self, epoch: int, metrics: dict, best: bool) -> Path | None:
        """Every learner takes part (the whole state is gathered from the shards); rank 0 writes."""
        weights = distributed.full_state_dict(self.policy) if self.world.distributed else None
        state = trainer_state.gather(self, epoch)  # collectives: every rank
        if not self.main:
            return None
        meta = self.records.checkpoint_meta(epoch, self.step, metrics)
        path = checkpoint.save(
            self.experiment, self.arm, epoch, self.policy, self.tokenizer, state, meta, best=best, state_dict=weights
        )
        self._prune()
        return path

    def _prune(self) -> None:
        keep = self.heldout.undecided() if self.heldout is not None else ()  # awaiting a held-out decision
        checkpoints.prune(self.experiment, self.arm, self.cfg.trainer.keep_last, keep)

    def write_summary(self, stop_reason: str | None) -> dict:
        es = self.early_stopping  # with held-out evaluation: both choices, held-out best and reward best
        extra = self.heldout.summary(self.epoch, es) if self.heldout is not None else {}
        r = self.cfg.rollout  # one device per learner, plus the rollout actors' GPUs
        devices = self.world.size + (r.workers * r.num_gpus if self.device == "cuda" else 0)
        summary = self.records.summary(
            final={**self.last_val, **self.last_metrics},
            best=extra.get("best_heldout")
            if not self.reward_stops
            else {"epoch": es.best_epoch, "metric": es.metric, "value": es.best_value},
            stopped_early=stop_reason is not None,
            stop_epoch=self.epoch,
            stop_reason=stop_reason or f"reached trainer.epochs = {self.cfg.trainer.epochs}",
            wall_time_s=self.wall_time_s,
            device=self.device,
            devices=devices,
            learners=self.world.size,
            device_hours=self.wall_time_s / 3600 * devices,
            resumed_from=str(self.resumed_from) if self.resumed_from else None,
            **extra,
        )
        if self.main:
            self.records.write_summary(summary)
        return summary

    def cleanup(self, ok: bool = True) -> None:
        if getattr(self, "rollouts", None) is not None:
            self.rollouts.close()
        self.records.finish_wandb()
        distributed.shutdown(wait_for_others=ok)  # a failed rank must not wait for the others
