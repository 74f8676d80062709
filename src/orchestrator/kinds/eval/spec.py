"""The `eval` kind: a training experiment's checkpoints × a suite's tasks.

    kind: eval
    experiment: mtl-comparison      # the training experiment (checkpoints/<experiment>/<arm>/)
    suite: reasoning                # a suite name or YAML path (docs/suites.md)
    checkpoints: all                # all (eval-evolution) | final (latest and best of each arm)
    tasks: [math, humaneval]        # task or domain names; empty = the whole suite

The eval experiment is named `<experiment>-eval` (its own registry rows, so `status`, `wait`
and `logs` follow it), while results go beside the training logs:
logs/<experiment>/eval/<arm>/<checkpoint>/<task>.json. Units whose result already exists are
left out. Units are grouped into one stage (one sbatch call, an array) per resource shape; units
of an arm still training wait for its unit (afterok), so they land in a stage of their own.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from orchestrator.core import checkpoints, paths
from orchestrator.core.checkpoints import DEFAULT_BEST_METRIC, CheckpointGone, EvaluatedTask, Evaluator
from orchestrator.core.errors import UserError
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.spec import NAME_RE, Resources, deep_merge
from orchestrator.generation import backends
from orchestrator.kinds.eval.discover import Arm, discover
from orchestrator.kinds.eval.job import ENTRY, EvalArgs
from orchestrator.kinds.eval.suites import load_suite
from orchestrator.scoring.registry import SCORERS


@dataclass(frozen=True)
class Evaluation:
    """One planning pass: what discovery found, the stages, and what was noted or left out."""

    arms: dict[str, Arm]
    stages: list[Stage]
    notes: list[str]
    skipped: list[str]  # "<arm>/<checkpoint>/<task>" whose result exists


class EvalSpec(Evaluator):
    kind: str = "eval"
    name: str = Field("", pattern=r"^$|" + NAME_RE)  # default: <experiment>-eval
    experiment: str = Field(pattern=NAME_RE)
    suite: str = "reasoning"
    tasks: list[str] = Field(default_factory=list)
    arms: list[str] = Field(default_factory=list)
    checkpoints: Literal["all", "final"] = "final"
    only: list[str] = Field(default_factory=list)  # these checkpoint names alone (the trainer's evaluate-on-save)
    data_root: str | None = None
    backend: str = backends.DEFAULT  # a registered local backend (the checkpoint is a local model)
    tensor_parallel_size: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    limit: int | None = Field(None, ge=1)  # examples per task (quick looks)
    best_metric: str = DEFAULT_BEST_METRIC  # meta.json metric that picks the best checkpoint
    _backend = field_validator("backend")(backends.check_local_backend)
    _planned: Evaluation | None = PrivateAttr(default=None)  # the plan submit made
    _pins: list[tuple[str, str, str]] = PrivateAttr(default_factory=list)  # (arm, checkpoint, run) pinned here

    def model_post_init(self, __context: Any) -> None:
        if not self.name:
            object.__setattr__(self, "name", paths.eval_experiment(self.experiment))

    # ---------------------------------------------------------------- planning

    def plan(self) -> list[Stage]:
        self._planned = self.evaluation()
        return self._planned.stages

    def check_submit(self) -> None:
        """Pin every checkpoint the plan evaluates, so the trainer's retention keeps it until its
        evaluation has finished (core/checkpoints.py). CheckpointGone (nothing pinned) when
        retention deleted one since it was planned."""
        ev = self._planned or self.evaluation()
        gone = []
        for stage in ev.stages:
            for u in stage.units:
                a = u.args
                if not isinstance(a, EvalArgs) or a.checkpoint in ("final", "pending"):
                    continue  # resolved after training: latest and best are never deleted
                result = paths.eval_result(self.experiment, a.arm, a.checkpoint, a.task)
                done = checkpoints.pin(self.experiment, a.arm, a.checkpoint, self.name, u.run, result)
                if done == "new":
                    self._pins.append((a.arm, a.checkpoint, u.run))
                elif done == "gone":
                    gone.append(f"{a.arm}/{a.checkpoint}")
        if gone:
            self.release_pins()
            raise CheckpointGone(
                f"{self.experiment}: retention deleted {', '.join(sorted(set(gone)))} while the evaluation was planned"
            )

    def release_pins(self) -> None:
        """Undo this submit's pins (it failed: nothing of it runs)."""
        for arm, ckpt, run in self._pins:
            checkpoints.unpin(self.experiment, arm, ckpt, self.name, run)
        self._pins.clear()

    def evaluated_tasks(self) -> list[EvaluatedTask]:
        """The suite's tasks this evaluation scores each checkpoint on (for the kind that asks for
        it, through core: train's evaluate-on-save and its spec checks)."""
        out = []
        for t in load_suite(self.suite, self.data_root).select(self.tasks):
            why = None
            if t.generation.samples > 1:
                why = f"{t.generation.samples} samples: its per-example score is a fraction"
            elif t.scorer in SCORERS and not SCORERS[t.scorer].binary:
                why = f"scorer {t.scorer} is not 0/1"
            out.append(EvaluatedTask(t.name, t.domain_name, why))
        return out

    def evaluation(self) -> Evaluation:
        """Discovery and the plan, computed afresh from the spec and the files it reads."""
        suite = load_suite(self.suite, self.data_root)
        tasks = suite.select(self.tasks)
        missing = suite.missing_data(tasks)
        if missing:
            raise UserError(
                f"suite {suite.name}: data files not found under the data root {suite.data_root} "
                f"(set --data-root, the suite's data_root or ORCH_EVAL_DATA; formats in docs/suites.md):\n  "
                + "\n  ".join(missing)
            )
        arms = discover(self.experiment, self.arms or None, self.best_metric)
        config = {
            "suite": suite.name,
            "backend": self.backend,
            "tensor_parallel_size": self.tensor_parallel_size,
            "limit": self.limit,
            "eval_experiment": self.name,
        }
        common = {
            "train_experiment": self.experiment,
            "suite": suite.source,
            "data_root": str(suite.data_root),
            "backend": self.backend,
            "batch_size": self.batch_size,
            "tensor_parallel_size": self.tensor_parallel_size,
            "limit": self.limit,
            "best_metric": self.best_metric,
            "config": config,
        }
        skipped: list[str] = []
        notes: list[str] = []
        groups: dict[tuple[str, str], list[Unit]] = {}
        shapes: dict[str, Resources] = {}
        for arm in arms.values():
            notes += [f"{arm.name}: {n}" for n in arm.notes]
            names, note = self._checkpoint_names(arm)
            notes += [note] if note else []
            wait = f"{self.experiment}/{arm.name}" if arm.training else ""
            for ckpt in names:
                for task in tasks:
                    deferred = ckpt in ("final", "pending")
                    result = paths.eval_result(self.experiment, arm.name, ckpt, task.name)
                    if not deferred and result.exists():
                        skipped.append(f"{arm.name}/{ckpt}/{task.name}")
                        continue
                    resources = self._resources(task.resources)
                    key = resources.model_dump_json()
                    shapes[key] = resources
                    # A checkpoint that exists needs nothing; a deferred one waits for training.
                    dep = wait if deferred else ""
                    run = paths.eval_run(arm.name, ckpt, task.name)
                    out = () if deferred else (os.path.relpath(result, paths.run_dir(self.name, run)),)
                    args = EvalArgs(**common, arm=arm.name, checkpoint=ckpt, task=task.name)
                    groups.setdefault((key, dep), []).append(Unit(run=run, entry=ENTRY, args=args, outputs=out))
        stages = []
        for (key, dep), units in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            r = shapes[key]
            digest = hashlib.sha1(f"{key}|{dep}".encode()).hexdigest()[:6]
            stages.append(
                Stage(
                    name=f"eval-{r.cpus_per_task}c{r.gpus_per_node * r.nodes}g-{digest}",
                    resources=r,
                    env=self.env,
                    units=tuple(units),
                    after_runs=(dep,) if dep else (),
                    array_parallelism=self.array_parallelism,
                    checkpointable=True,  # a unit resumes from its predictions file (job.py)
                )
            )
        return Evaluation(arms, stages, notes, skipped)

    def _checkpoint_names(self, arm: Arm) -> tuple[list[str], str]:
        """The checkpoints of an arm to evaluate (deferred ones: "pending", "final"), and a note."""
        if self.only:  # complete ones only: the trainer names a checkpoint it has just saved
            return [c.name for c in arm.checkpoints if c.name in self.only], ""
        if self.checkpoints == "all":
            names = [c.name for c in arm.checkpoints]
            if not arm.training:
                return names, ""
            # more checkpoints are coming: evaluate those retention keeps once training ends
            # (or those saved meanwhile with another eval-evolution call: they are pinned then)
            return names + ["pending"], (
                f"{arm.name}: still training (job {arm.training}); its checkpoints written from "
                "now on and kept by retention are evaluated after it ends (run eval-evolution again "
                "to evaluate each one saved meanwhile)"
            )
        if arm.training:  # the latest and best are known only when training has ended
            return [
                "final"
            ], f"{arm.name}: still training (job {arm.training}); latest and best evaluated after it ends"
        return list(dict.fromkeys(c.name for c in (arm.latest, arm.best) if c is not None)), ""

    def _resources(self, overrides: dict) -> Resources:
        merged = deep_merge(self.resources.model_dump(), overrides)
        if self.tensor_parallel_size > 1 and self.tensor_parallel_size > merged.get("gpus_per_node", 0):
            merged["gpus_per_node"] = self.tensor_parallel_size  # one process drives TP GPUs of one node
        return Resources.model_validate(merged)

    def submit_notes(self) -> list[str]:
        return [f"results in {paths.eval_dir(self.experiment)}"]

    def plan_summary(self, evaluation: Evaluation | None = None) -> str:
        """What discovery found and what was left out, for --dry-run and submit output (pass the
        `evaluation()` already made to avoid a second discovery)."""
        ev = evaluation or self.evaluation()
        lines = [f"checkpoints of {self.experiment} (looked in {paths.experiment_checkpoints_dir(self.experiment)}):"]
        for arm in ev.arms.values():
            names = ", ".join(c.name for c in arm.checkpoints) or "none yet"
            extra = [
                f"latest {arm.latest.name}" if arm.latest else "",
                f"best {arm.best.name}" if arm.best else "",
                f"training as job {arm.training}" if arm.training else "",
            ]
            lines.append(f"  {arm.name}: {names}" + "".join(f"; {e}" for e in extra if e))
        for n in ev.notes:
            lines.append(f"  note: {n}")
        if ev.skipped:
            lines.append(
                f"  {len(ev.skipped)} unit(s) skipped, result exists: "
                + ", ".join(ev.skipped[:10])
                + (" ..." if len(ev.skipped) > 10 else "")
            )
        return "\n".join(lines)
