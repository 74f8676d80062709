"""The `train` kind: PPO on causal LMs, one job per arm (e.g. baseline vs. PCGrad multi-task).

    kind: train
    model: Qwen/Qwen2.5-7B-Instruct            # path or HF id, loaded with from_pretrained
    domains:                                  # verl parquet files per domain
      math: {train: data/math_train.parquet, val: data/math_val.parquet, reward: math}
    trainer: {epochs: 30, test_freq: 3, save_freq: 5, keep_last: 10}
    early_stopping: {min_epochs: 10, patience: 3, min_delta: 0.001, metric: val/reward_mean}
    arms:                                     # each arm overrides the shared config
      baseline: {mtl: {enabled: false}}
      pcgrad: {mtl: {enabled: true, method: pcgrad}}

Both arms are submitted together (all or nothing), each as its own checkpointable job: on
preemption or time limit submitit requeues it and it resumes from its latest complete checkpoint.
`prepare:` (tiny preset) adds a first stage that builds a tiny model and synthetic data.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.core import paths
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.spec import NAME_RE, BaseSpec, Strict, deep_merge


class Domain(Strict):
    train: str | None = None  # default with prepare: the synthetic files
    val: str | None = None
    reward: str = "exact"  # math | exact | package.module:function
    max_train: int | None = Field(None, ge=1)
    max_val: int | None = Field(None, ge=1)

    @field_validator("reward")
    @classmethod
    def _reward(cls, v: str) -> str:
        from orchestrator.scoring.rewards import check_reward_ref

        return check_reward_ref(v)


class Algorithm(Strict):
    advantage: Literal["gae", "grpo"] = "gae"  # PPO with a critic, or group-relative (no critic)
    group_size: int = Field(1, ge=1)  # responses sampled per prompt
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    clip_ratio: float = Field(0.2, gt=0)
    value_clip: float = Field(0.2, gt=0)
    kl_coef: float = Field(0.001, ge=0)  # penalty against the frozen reference model
    whiten_advantages: bool = True

    @model_validator(mode="after")
    def _group(self) -> Algorithm:
        if self.advantage == "grpo" and self.group_size < 2:
            raise ValueError("advantage grpo needs group_size >= 2 (responses per prompt)")
        return self


class Trainer(Strict):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)  # prompts per step
    mini_batches: int = Field(1, ge=1)  # optimizer steps per PPO epoch
    ppo_epochs: int = Field(1, ge=1)
    lr: float = Field(1e-6, gt=0)
    critic_lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_response_tokens: int = Field(512, ge=1)
    temperature: float = Field(1.0, gt=0)
    val_before_train: bool = True
    test_freq: int = Field(3, ge=1)  # validate every N epochs (and after the last)
    save_freq: int = Field(5, ge=1)  # checkpoint every N epochs (and at the end, and on a new best)
    keep_last: int = Field(10, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1)  # torch CPU threads (1 for bit-exact CPU runs)
    # Memory (large models). Each shards the models with FSDP2, even for a single learner.
    mixed_precision: Literal["no", "bf16"] = "no"  # bf16 compute; fp32 master weights, grads, Adam
    cpu_offload: bool = False  # shards, grads and Adam on the CPU (GPU learners only)
    gradient_checkpointing: bool = False  # recompute activations in backward (policy and critic)

    @property
    def fsdp(self) -> bool:
        return self.mixed_precision != "no" or self.cpu_offload


class EarlyStoppingConfig(Strict):
    enabled: bool = True
    metric: str = "val/reward_mean"  # any logged validation metric
    mode: Literal["max", "min"] = "max"
    min_epochs: int = Field(10, ge=0)
    patience: int = Field(3, ge=0)
    min_delta: float = Field(0.001, ge=0)


class Rollout(Strict):
    workers: int = Field(1, ge=0)  # Ray actors; 0 = sample in the learner process
    backend: Literal["hf", "vllm"] = "hf"  # transformers (CPU/GPU), or vLLM (GPU, extra orchestrator[vllm])
    num_cpus: float = Field(1, gt=0)
    num_gpus: float = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    micro_batch: int = Field(256, ge=1)  # sequences a worker generates at once (memory bound)
    dtype: Literal["float32", "bfloat16"] = "float32"  # the workers' policy copy
    # vLLM only
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _vllm(self) -> Rollout:
        if self.backend == "vllm" and self.workers > 0 and self.num_gpus < self.tensor_parallel_size:
            raise ValueError(
                f"rollout.backend vllm runs on GPUs: each of the {self.workers} worker(s) needs "
                f"rollout.num_gpus >= tensor_parallel_size ({self.tensor_parallel_size}), got {self.num_gpus:g}"
            )
        return self


class MTL(Strict):
    enabled: bool = False
    method: Literal["pcgrad"] = "pcgrad"


class WandB(Strict):
    enabled: bool = True
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "orchestrator"


class TrainConfig(Strict):
    """Everything one arm's trainer needs (the shared config with the arm's overrides)."""

    model: str
    domains: dict[str, Domain] = Field(min_length=1)
    algorithm: Algorithm = Field(default_factory=Algorithm)
    trainer: Trainer = Field(default_factory=Trainer)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    rollout: Rollout = Field(default_factory=Rollout)
    mtl: MTL = Field(default_factory=MTL)
    wandb: WandB = Field(default_factory=WandB)

    @model_validator(mode="after")
    def _files(self) -> TrainConfig:
        for name, d in self.domains.items():
            if d.train is None or d.val is None:
                raise ValueError(f"domains.{name}: give train and val parquet files (or use prepare: synthetic data)")
        metric = self.early_stopping.metric
        val = ["val/reward_mean", *(f"val/{d}/reward" for d in self.domains)]
        if metric not in val and not metric.startswith(("train/", "grad/")):
            raise ValueError(
                f"early_stopping.metric {metric!r} is not logged; use one of {', '.join(val)} "
                "(or a train/... or grad/... metric)"
            )
        return self


class Prepare(Strict):
    """Tiny preset: build a tiny random model and synthetic verl parquet data in a first stage."""

    tiny_model: dict[str, int] = Field(default_factory=dict)  # kwargs of orchestrator.generation.tiny.build_model
    n_train: int = Field(64, ge=1)
    n_val: int = Field(32, ge=1)
    seed: int = 0


TRAIN_KEYS = ("model", "domains", "algorithm", "trainer", "early_stopping", "rollout", "mtl", "wandb")


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
    arms: dict[str, dict[str, Any]] = Field(min_length=1)
    prepare: Prepare | None = None

    @model_validator(mode="after")
    def _arms(self) -> TrainSpec:
        import re

        for arm, over in self.arms.items():
            if not re.match(NAME_RE, arm) or arm == "prepare":
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
        if self.prepare is not None:
            from orchestrator.kinds.train.data import SYNTHETIC

            unknown = set(self.domains) - set(SYNTHETIC)
            if unknown and any(self.domains[d].train is None for d in unknown):
                raise ValueError(
                    f"prepare: no synthetic generator for domains {sorted(unknown)}; known: {sorted(SYNTHETIC)}"
                )
        return self

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
        if ro.backend == "vllm" and ro.workers == 0 and not learners:
            raise ValueError(
                f"arms.{arm}: rollout.backend vllm with rollout.workers 0 samples on the learner's GPU, "
                "and this job's learner has none: give it GPUs, or rollout workers with rollout.num_gpus"
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

    def prepare_dir(self) -> str:
        return str(paths.run_dir(self.name, "prepare"))

    def arm_config(self, arm: str) -> TrainConfig:
        shared: dict[str, Any] = {k: getattr(self, k) for k in TRAIN_KEYS}
        shared["domains"] = {n: d.model_dump() for n, d in self.domains.items()}
        if self.prepare is not None:  # files the prepare stage writes
            shared["model"] = shared["model"] or f"{self.prepare_dir()}/model"
            for n, d in shared["domains"].items():
                d["train"] = d["train"] or f"{self.prepare_dir()}/data/{n}_train.parquet"
                d["val"] = d["val"] or f"{self.prepare_dir()}/data/{n}_val.parquet"
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
                f"arm {arm}: metrics {paths.run_dir(self.name, arm)}/metrics.jsonl; "
                f"checkpoints {paths.arm_checkpoints_dir(self.name, arm)}; {where}"
            )
            notes.append(f"arm {arm}: {self._layout(cfg)}")
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
            stages.append(
                Stage(
                    name="prepare",
                    resources=self.resources.model_copy(update={"gpus_per_node": 0, "cpus_per_task": 1}),
                    env=self.env,
                    units=(
                        Unit(
                            run="prepare",
                            entry="orchestrator.kinds.train.recipe:prepare",
                            args={"domains": list(self.domains), **self.prepare.model_dump()},
                            outputs=(
                                "model/config.json",
                                *(f"data/{d}_{s}.parquet" for d in self.domains for s in ("train", "val")),
                            ),
                        ),
                    ),
                )
            )
            after = ("prepare",)
        for arm in self.arms:
            cfg = self.arm_config(arm)
            template, template_vars = ("sbatch.sh.j2", {}) if cfg.rollout.workers == 0 else _ray_template(self, cfg)
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
                            entry="orchestrator.kinds.train.recipe:train_entry",
                            args={"arm": arm, "config": cfg.model_dump(mode="json")},
                            outputs=("metrics.jsonl", "summary.json"),
                        ),
                    ),
                )
            )
        return stages


def _ray_template(spec: TrainSpec, cfg: TrainConfig) -> tuple[str, dict]:
    """Rollout actors run on a Ray cluster started inside the allocation (templates/ray.sh.j2),
    on the GPUs the learners leave free."""
    from orchestrator.kinds.train.ray_cluster import ray_template_vars

    return "ray.sh.j2", ray_template_vars(spec.resources, learner_gpus_per_node=spec.learner_gpus_per_node(cfg))
