"""What a training arm leaves besides its checkpoints: logs/<exp>/<arm>/metrics.jsonl (one line
per epoch), summary.json (the run's account) and the W&B run; formats in docs/architecture.md.

Pure functions over plain values (no trainer object): the epoch's metrics from its steps, the
checkpoint's meta.json (`core.records.CheckpointMeta`) and the summary, plus the file writes, all
through core.files. `MetricsLine` and `TrainSummary` are the files' models (writers and readers).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import Field

from orchestrator.core import files, paths
from orchestrator.core.records import CheckpointMeta, ResultFile
from orchestrator.kinds.train.config import TrainConfig


class MetricsLine(ResultFile):
    """One line of metrics.jsonl: an epoch's `train/...`, `val/...` and `grad/...` values (as extra
    keys; val keys only on validation epochs, epoch 0 = validation before training)."""

    epoch: int
    step: int = 0
    time_s: float | None = None


class TrainSummary(ResultFile):
    """An arm's summary.json (docs/architecture.md); evaluate-as-you-train adds `best_heldout`,
    `best_reward` and `evaluation`, kept as extra keys."""

    config: dict[str, Any] = Field(default_factory=dict)
    experiment: str = ""
    arm: str
    final: dict[str, Any] = Field(default_factory=dict)
    best: dict[str, Any] | None = None  # {"epoch", "metric", "value"}
    stopped_early: bool = False
    stop_epoch: int | None = None
    stop_reason: str | None = None
    wall_time_s: float | None = None
    device_hours: float | None = None


def mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


def epoch_metrics(steps: list[dict], domains: list[str], has_critic: bool) -> dict:
    """One epoch's train/... and grad/... metrics from its steps' stats (PPOTrainer.train_step)."""
    samples = [x for st in steps for x in st["samples"]]
    pol = [p for st in steps for p in st["policy"]]
    m: dict = {
        "train/reward_mean": mean([s.score for s in samples]),
        "train/policy_loss": mean([p["policy_loss"] for p in pol]),
        "train/clipfrac": mean([p["clipfrac"] for p in pol]),
        "train/grad_norm": mean([p["grad_norm"] for p in pol]),
        "train/kl": mean([st["kl"] for st in steps]),
        "train/response_length": mean([len(s.response_ids) for s in samples]),
        "train/update_s": mean([st["update_s"] for st in steps]),
    }
    for d in domains:
        m[f"train/{d}/reward"] = mean([s.score for s in samples if s.domain == d])
    if has_critic:
        m["train/value_loss"] = mean([c for st in steps for c in st["critic"]])
    conflicts = [p["conflict"] for p in pol if "conflict" in p]
    if conflicts:
        for pair in conflicts[0]["pairs"]:
            m[f"grad/cosine/{pair}"] = mean([c["pairs"][pair] for c in conflicts if pair in c["pairs"]])
        m["grad/conflict_fraction"] = mean([c["conflict_fraction"] for c in conflicts])
    weights = [p["weights"] for p in pol if "weights" in p]  # a multi-task arm's task weights
    for d in domains:
        if any(d in w for w in weights):
            m[f"mtl/weight/{d}"] = mean([w[d] for w in weights if d in w])
    return m


def progress_line(arm: str, epoch: int, step: int, m: dict) -> str:
    """The line the job prints after each epoch."""
    shown = " ".join(
        f"{k}={v:.3f}" for k, v in m.items() if k.startswith(("val/", "train/reward")) and not math.isnan(v)
    )
    return f"[{arm}] epoch {epoch} step {step} {shown}"


class ArmRecords:
    """The arm's metrics.jsonl and summary.json (written by rank 0 only), and its W&B run."""

    def __init__(self, cfg: TrainConfig, experiment: str, arm: str, run_dir: str | Path) -> None:
        self.cfg, self.experiment, self.arm = cfg, experiment, arm
        self.metrics_file = Path(run_dir) / paths.METRICS_FILE
        self.summary_file = Path(run_dir) / paths.SUMMARY_FILE
        self.wandb = None

    def drop_after(self, epoch: int) -> None:
        """Lines an interrupted attempt wrote after its last checkpoint (all of them, without one)
        belong to epochs this run does again: drop them so none is duplicated (a torn last line
        is no record: core.files.read_jsonl)."""
        if not self.metrics_file.exists():
            return
        content = files.read_jsonl(self.metrics_file)
        kept = [r for r in content.records if r["epoch"] <= epoch] if epoch > 0 else []
        if len(kept) != len(content.records) or content.torn:
            files.write_atomic(self.metrics_file, "".join(files.dumps(r, indent=None) + "\n" for r in kept))

    @staticmethod
    def line(epoch: int, step: int, metrics: dict, time_s: float) -> dict:
        """One metrics.jsonl line (epoch 0: the validation before training)."""
        return MetricsLine.model_validate({"epoch": epoch, "step": step, **metrics, "time_s": time_s}).dump()

    def log(self, line: dict) -> None:
        files.append_jsonl(self.metrics_file, [MetricsLine.model_validate(line).dump()])
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in line.items() if isinstance(v, (int, float))}, step=line["epoch"])

    def start_wandb(self) -> None:
        w = self.cfg.wandb
        if not w.enabled or w.mode == "disabled":
            return
        import wandb

        directory = paths.wandb_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.wandb = wandb.init(
            project=w.project,
            group=self.experiment,
            name=self.arm,
            id=f"{self.experiment}-{self.arm}",
            dir=str(directory),
            mode=w.mode,
            resume="allow",
            job_type="train",
            config=self.cfg.model_dump(mode="json"),
        )

    def finish_wandb(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None

    def checkpoint_meta(self, epoch: int, step: int, metrics: dict) -> dict[str, Any]:
        """A checkpoint's meta.json: what evaluation reads without loading the weights."""
        return CheckpointMeta(
            experiment=self.experiment,
            arm=self.arm,
            epoch=epoch,
            step=step,
            metrics=metrics,
            config=self.cfg.model_dump(mode="json"),
        ).dump()

    def summary(self, **account: Any) -> dict[str, Any]:
        """summary.json's content: schema version, config, experiment, arm, then `account`
        (final, best, stopped_early, stop_epoch, stop_reason, wall_time_s, devices, ...)."""
        return {
            "schema_version": files.SCHEMA_VERSION,
            "config": self.cfg.model_dump(mode="json"),
            "experiment": self.experiment,
            "arm": self.arm,
            **account,
        }

    def write_summary(self, summary: dict) -> None:
        TrainSummary.model_validate(summary).write(self.summary_file)
