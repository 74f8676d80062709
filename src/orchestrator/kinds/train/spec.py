"""The `train` kind: PPO on causal LMs, one job per arm (e.g. baseline vs. PCGrad multi-task).

    kind: train
    model: Qwen/Qwen2.5-7B-Instruct            # path or HF id, loaded with from_pretrained
    domains:                                  # verl parquet files per domain
      math: {train: data/math_train.parquet, val: data/math_val.parquet, reward: math}
    trainer: {epochs: 30, test_freq: 3, save_freq: 5, keep_last: 10}
    early_stopping: {min_epochs: 10, patience: 3, min_delta: 0.001, metric: val/reward_mean}
    evaluation: {suite: reasoning, every_save: true}   # each checkpoint on a held-out suite when saved
                                              # (then early_stopping.metric may be eval/mean)
    arms:                                     # each arm overrides the shared config; any number
      baseline: {mtl: {enabled: false}}
      pcgrad: {mtl: {enabled: true, method: pcgrad}}
      cagrad: {mtl: {enabled: true, method: cagrad, options: {c: 0.4}}}

`mtl.method` is one of kinds/train/methods.py's METHODS (torchjd weightings of the per-domain
gradients' Gramian): pcgrad, upgrad, mgda, cagrad, nash_mtl, imtl_g, aligned_mtl, dualproj,
fairgrad, gradvac, mean, random; `mtl.options` are the weighting's arguments. Methods that need the
full gradients (graddrop, config, trimmed_mean) are refused: they cannot run on FSDP shards.

All arms are submitted together (all or nothing), each as its own checkpointable job: on
preemption or time limit submitit requeues it and it resumes from its latest complete checkpoint.
`prepare:` (tiny preset) adds a first stage that builds a tiny model and synthetic data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from orchestrator.core import checkpoints, paths
from orchestrator.core.checkpoints import EvaluatedTask
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.spec import NAME_RE, BaseSpec, deep_merge
from orchestrator.kinds.train.config import Domain, Prepare, TrainConfig
from orchestrator.kinds.train.data import SYNTHETIC
from orchestrator.kinds.train.entry import PrepareArgs, TrainArgs
from orchestrator.kinds.train.ray_cluster import ray_template_vars

TRAIN_KEYS = ("model", "domains", "algorithm", "trainer", "early_stopping", "rollout", "mtl", "wandb", "evaluation")


class TrainSpec(BaseSpec):
    kind: str = "train"
    model: str | None = None  # default with prepare: the tiny model it builds
    domains: dict[str, Domain] = Field(min_length=1)
    algorithm: dict[str, Any] = Field(default_factory=dict)
    trainer: dict[str, Any] = Field(default_factory=dict)
    early_stopping: dict[str, Any] = Field(default_factory=dict)
    rollout: dict[str, Any] = Field(default_factory=dict)
    mtl: dict[str, Any] = Field(default_factory=dict)
    wandb: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)  # held-out suite per saved checkpoint
    arms: dict[str, dict[str, Any]] = Field(min_length=1)
    prepare: Prepare | None = None

    @model_validator(mode="after")
    def _arms(self) -> TrainSpec:
        for arm, over in self.arms.items():
            if not re.match(NAME_RE, arm) or arm == paths.PREPARE_RUN:
                raise ValueError(f"arm name {arm!r}: letters, digits, '.', '_', '-' (and not 'prepare')")
            unknown = set(over) - set(TRAIN_KEYS)
            if unknown:
                raise ValueError(
                    f"arms.{arm}: unknown keys {sorted(unknown)}; an arm may override {', '.join(TRAIN_KEYS)}"
                )
            try:
                cfg = self.arm_config(arm)
            except ValueError as e:
                raise ValueError(f"arms.{arm}: {e}") from None
            self._check_gpus(arm, cfg)
            self._check_eval_metric(arm, cfg)
            self._check_paired_test(arm, cfg)
        if self.prepare is not None:
            unknown = set(self.domains) - set(SYNTHETIC)
            if unknown and any(self.domains[d].train is None for d in unknown):
                raise ValueError(
                    f"prepare: no synthetic generator for domains {sorted(unknown)}; known: {sorted(SYNTHETIC)}"
                )
        return self

    def _evaluated_tasks(self, arm: str, cfg: TrainConfig) -> list[EvaluatedTask]:
        """The tasks evaluation.every_save scores each checkpoint on, as the eval kind reads them."""
        return checkpoints.evaluator(cfg.evaluation.request(self.name, arm), f"arms.{arm}.evaluation").evaluated_tasks()

    def input_files(self) -> list[tuple[str, str]]:
        """The domains' parquet files (prepare's synthetic ones are written by the job itself)."""
        return [
            (f"domains.{name}.{split}", path)
            for name, d in self.domains.items()
            for split, path in (("train", d.train), ("val", d.val))
            if path is not None and "://" not in path
        ]

    def _check_eval_metric(self, arm: str, cfg: TrainConfig) -> None:
        """eval/<domain>/<metric> names a domain of the evaluated tasks (refused now, not mid-run)."""
        parts = cfg.early_stopping.metric.split("/")
        if parts[0] != "eval" or len(parts) != 3:
            return
        domains = sorted({t.domain for t in self._evaluated_tasks(arm, cfg)})
        if parts[1] not in domains:
            raise ValueError(
                f"arms.{arm}: early_stopping.metric {cfg.early_stopping.metric!r}: suite {cfg.evaluation.suite} "
                f"has no domain {parts[1]!r} among the evaluated tasks (domains: {', '.join(domains)})"
            )

    def _check_paired_test(self, arm: str, cfg: TrainConfig) -> None:
        """McNemar's test needs 0/1 per-example scores: one sample per example and a binary scorer
        for every evaluated task (refused now; a user scorer is checked on its scores, at decision
        time, kinds/train/heldout.py)."""
        if cfg.early_stopping.significance_test != "mcnemar" or not cfg.evaluation.every_save:
            return
        bad = [f"{t.name} ({t.not_binary})" for t in self._evaluated_tasks(arm, cfg) if t.not_binary]
        if bad:
            raise ValueError(
                f"arms.{arm}: early_stopping.significance_test mcnemar needs 0/1 per-example scores; suite "
                f"{cfg.evaluation.suite}: {', '.join(bad)}: use significance_test: bootstrap, or leave those "
                "tasks out (evaluation.tasks)"
            )

    def learner_gpus_per_node(self, cfg: TrainConfig) -> int:
        """One GPU per learner task when the job has GPUs and the trainer uses them."""
        r = self.resources
        return r.tasks_per_node if r.gpus_per_node > 0 and cfg.trainer.device != "cpu" else 0

    def _check_gpus(self, arm: str, cfg: TrainConfig) -> None:
        r, ro = self.resources, cfg.rollout
        learners = self.learner_gpus_per_node(cfg)
        if cfg.trainer.device == "cuda" and r.gpus_per_node == 0:
            raise ValueError(f"arms.{arm}: trainer.device is cuda but resources.gpus_per_node is 0")
        if cfg.trainer.cpu_offload and not learners:
            raise ValueError(
                f"arms.{arm}: trainer.cpu_offload moves GPU learners' state to the CPU; this job's learners "
                "have no GPU (resources.gpus_per_node 0 or trainer.device cpu): drop it"
            )
        if learners > r.gpus_per_node:
            raise ValueError(
                f"arms.{arm}: {learners} learners per node (resources.tasks_per_node) need one GPU each, "
                f"but resources.gpus_per_node is {r.gpus_per_node}: raise it, or lower tasks_per_node"
            )
        wanted, left = ro.workers * ro.num_gpus, (r.gpus_per_node - learners) * r.nodes
        if wanted > left:
            raise ValueError(
                f"arms.{arm}: rollout.workers × rollout.num_gpus = {wanted:g} GPUs for Ray's rollout actors, "
                f"but after one GPU per learner only {left} of the job's {r.gpus_per_node * r.nodes} are left: "
                "raise resources.gpus_per_node, or lower rollout.workers / rollout.num_gpus"
            )

    def prepare_dir(self) -> Path:
        return paths.prepare_dir(self.name)

    def arm_config(self, arm: str) -> TrainConfig:
        shared: dict[str, Any] = {k: getattr(self, k) for k in TRAIN_KEYS}
        shared["domains"] = {n: d.model_dump() for n, d in self.domains.items()}
        if self.prepare is not None:  # files the prepare stage writes
            shared["model"] = shared["model"] or str(paths.prepared_model(self.prepare_dir()))
            for n, d in shared["domains"].items():
                d["train"] = d["train"] or str(paths.prepared_data(self.prepare_dir(), n, "train"))
                d["val"] = d["val"] or str(paths.prepared_data(self.prepare_dir(), n, "val"))
        ev = deep_merge(shared["evaluation"], self.arms[arm].get("evaluation") or {})
        if ev.get("every_save"):  # the eval jobs get the spec's env; the demo suite reads prepare's held-out files
            if self.prepare is not None:
                ev.setdefault("data_root", str(paths.prepared_data(self.prepare_dir(), "-", "heldout").parent))
            shared["evaluation"] = {"env": self.env.model_dump(mode="json"), **ev}
        return TrainConfig.model_validate(deep_merge(shared, self.arms[arm]))

    def submit_notes(self) -> list[str]:
        notes = []
        for arm in self.arms:
            cfg = self.arm_config(arm)
            where = (
                f"W&B ({cfg.wandb.mode}, group {self.name}, run {arm}): {paths.wandb_dir()}"
                if cfg.wandb.enabled and cfg.wandb.mode != "disabled"
                else "W&B off"
            )
            notes.append(
                f"arm {arm}: metrics {paths.run_dir(self.name, arm) / paths.METRICS_FILE}; "
                f"checkpoints {paths.arm_checkpoints_dir(self.name, arm)}; {where}"
            )
            notes.append(f"arm {arm}: {self._layout(cfg)}")
            if cfg.evaluation.every_save:
                es = cfg.early_stopping
                notes.append(
                    f"arm {arm}: each checkpoint evaluated on suite {cfg.evaluation.suite} when saved "
                    f"(experiment {paths.eval_experiment(self.name)}); early stopping on {es.metric}"
                )
        return notes

    def _layout(self, cfg: TrainConfig) -> str:
        """Where the work runs: learners, their sharding and memory options, the rollout workers."""
        r, t, ro = self.resources, cfg.trainer, cfg.rollout
        learners, on_gpu = r.nodes * r.tasks_per_node, self.learner_gpus_per_node(cfg) > 0
        opts = [
            x
            for x, on in (
                ("FSDP2", learners > 1 or t.fsdp),
                ("bf16", t.mixed_precision == "bf16"),
                ("CPU offload", t.cpu_offload),
                ("gradient checkpointing", t.gradient_checkpointing),
            )
            if on
        ]
        where = f"{learners} learner(s) on {'a GPU each' if on_gpu else 'CPU'}" + (
            f" ({', '.join(opts)})" if opts else ""
        )
        if ro.workers == 0:
            return f"{where}; rollouts in learner 0 ({ro.backend})"
        return (
            f"{where}; {ro.workers} Ray rollout worker(s) ({ro.backend}, "
            f"{ro.num_gpus:g} GPU / {ro.num_cpus:g} CPU each)"
        )

    def plan(self) -> list[Stage]:
        stages = []
        after: tuple[str, ...] = ()
        if self.prepare is not None:
            args = PrepareArgs(domains=list(self.domains), **self.prepare.model_dump())
            stages.append(
                Stage(
                    name=paths.PREPARE_RUN,
                    resources=self.resources.model_copy(update={"gpus_per_node": 0, "cpus_per_task": 1}),
                    env=self.env,
                    units=(
                        Unit(
                            run=paths.PREPARE_RUN,
                            entry="orchestrator.kinds.train.entry:prepare",
                            args=args,
                            outputs=args.outputs(),
                        ),
                    ),
                )
            )
            after = (paths.PREPARE_RUN,)
        for arm in self.arms:
            cfg = self.arm_config(arm)
            template, template_vars = ("sbatch.sh.j2", {}) if cfg.rollout.workers == 0 else self._ray_template(cfg)
            stages.append(
                Stage(
                    name=arm,
                    resources=self.resources,
                    env=self.env,
                    after=after,
                    checkpointable=True,
                    template=template,
                    template_vars=template_vars,
                    units=(
                        Unit(
                            run=arm,
                            entry="orchestrator.kinds.train.entry:train_entry",
                            args=TrainArgs(arm=arm, config=cfg.model_dump(mode="json"), layout=self._layout(cfg)),
                            outputs=(paths.METRICS_FILE, paths.SUMMARY_FILE),
                        ),
                    ),
                )
            )
        return stages

    def _ray_template(self, cfg: TrainConfig) -> tuple[str, dict]:
        """Rollout actors run on a Ray cluster started inside the allocation (templates/ray.sh.j2),
        on the GPUs the learners leave free."""
        return "ray.sh.j2", ray_template_vars(self.resources, learner_gpus_per_node=self.learner_gpus_per_node(cfg))
