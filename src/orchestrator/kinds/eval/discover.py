"""Finding a training experiment's checkpoints: the checkpoint layout plus the registry.

    checkpoints/<experiment>/<arm>/epoch_<N>/   complete when its meta.json is there (written
                                                after the weights); anything else in the arm's
                                                directory (".epoch_3.tmp", "epoch_3.partial", ...)
                                                is a checkpoint being written and is ignored
    checkpoints/<experiment>/<arm>/latest       names the newest complete one (written last)

The registry says which arms exist before their first checkpoint and which are still training
(their unfinished units), so evaluation can wait for them. Finding no checkpoint at all is an
error naming where we looked, never an empty plan.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.errors import UserError

EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    arm: str
    name: str  # "epoch_3": the directory name, also the result path's <checkpoint>
    epoch: int
    path: Path
    step: int | None
    metrics: dict


@dataclass
class Arm:
    name: str
    checkpoints: list[Checkpoint] = field(default_factory=list)  # by epoch
    latest: Checkpoint | None = None
    best: Checkpoint | None = None
    training: str | None = None  # scheduler key of its unfinished training unit, if any
    notes: list[str] = field(default_factory=list)


def read_checkpoint(arm: str, path: Path) -> Checkpoint | None:
    """A complete checkpoint directory, or None (not an epoch dir, or still being written)."""
    m = EPOCH_DIR.match(path.name)
    meta_file = path / paths.CHECKPOINT_META
    if not m or not path.is_dir() or not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return None
    return Checkpoint(
        arm=arm,
        name=path.name,
        epoch=int(meta.get("epoch", m.group(1))),
        path=path,
        step=meta.get("step"),
        metrics=dict(meta.get("metrics") or {}),
    )


def _best(arm: Arm, experiment: str, metric: str) -> Checkpoint | None:
    """The training summary's best epoch when it has a checkpoint, else the best `metric` in
    the checkpoints' meta.json (direction from metrics.METRICS, higher is better otherwise)."""
    by_epoch = {c.epoch: c for c in arm.checkpoints}
    try:
        summary = json.loads((paths.run_dir(experiment, arm.name) / paths.SUMMARY_FILE).read_text())
        epoch = (summary.get("best") or {}).get("epoch")
        if epoch in by_epoch:
            return by_epoch[epoch]
    except (OSError, ValueError, AttributeError):
        pass
    scored = [c for c in arm.checkpoints if isinstance(c.metrics.get(metric), (int, float))]
    if not scored:
        return None
    from orchestrator.scoring.metrics import METRICS

    higher = METRICS[metric.rsplit("/", 1)[-1]].higher_is_better if metric.rsplit("/", 1)[-1] in METRICS else True
    return (max if higher else min)(scored, key=lambda c: (c.metrics[metric], -c.epoch if higher else c.epoch))


def active_training_units(experiment: str) -> dict[str, str]:
    """run → scheduler key of the experiment's units still pending or running (refreshed)."""
    if not paths.registry_file().exists():
        return {}
    from orchestrator.core.monitor import refresh
    from orchestrator.core.registry import ACTIVE_STATES, Registry

    registry = Registry()
    try:
        return {t.run: t.key for t in refresh(registry, experiment) if t.state in ACTIVE_STATES}
    finally:
        registry.close()


def discover(
    experiment: str, arms: list[str] | None = None, best_metric: str = "val/reward_mean", require: bool = True
) -> dict[str, Arm]:
    """Every arm's complete checkpoints, latest and best. UserError when none is found (and
    `require`), naming the directory and the registry we looked in."""
    root = paths.checkpoints_dir() / experiment
    training = active_training_units(experiment)
    names = sorted({p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set())
    if arms:
        unknown = [a for a in arms if a not in names and a not in training]
        if unknown:
            raise UserError(
                f"experiment {experiment}: no arm {', '.join(unknown)} in {root} or the registry "
                f"(arms: {', '.join(sorted(set(names) | set(training))) or 'none'})"
            )
        names = list(arms)
    else:  # an arm the registry knows as training may have no checkpoint directory yet
        names = sorted(set(names) | set(training))
    found: dict[str, Arm] = {}
    for name in names:
        arm = Arm(name, training=training.get(name))
        arm_dir = paths.arm_checkpoints_dir(experiment, name)
        if arm_dir.is_dir():
            for p in arm_dir.iterdir():
                c = read_checkpoint(name, p)
                if c is not None:
                    arm.checkpoints.append(c)
                elif EPOCH_DIR.match(p.name) or p.is_dir():
                    arm.notes.append(f"ignored {p.name}: not a complete checkpoint (no {paths.CHECKPOINT_META})")
        arm.checkpoints.sort(key=lambda c: c.epoch)
        if arm.checkpoints:
            arm.latest = arm.checkpoints[-1]
            latest_file = arm_dir / paths.CHECKPOINT_LATEST
            if latest_file.is_file():
                named = Path(latest_file.read_text().strip()).name
                match = [c for c in arm.checkpoints if c.name == named]
                if match:
                    arm.latest = match[0]
                else:
                    arm.notes.append(f"'latest' names {named!r}, not a complete checkpoint: using {arm.latest.name}")
            arm.best = _best(arm, experiment, best_metric)
        found[name] = arm
    if require and not any(a.checkpoints for a in found.values()):
        running = [f"{a} (job {k})" for a, k in sorted(training.items())]
        hint = (
            f"; still training: {', '.join(running)} — run again once a checkpoint is written"
            if running
            else "; train first (orchestrate submit ...) or check the experiment name"
        )
        where = f"{root}/<arm>/epoch_<N>/ with {paths.CHECKPOINT_META}"
        registry = f"registry {paths.registry_file()} ({len(training)} unfinished unit(s))"
        raise UserError(
            f"experiment {experiment}: found 0 checkpoints; looked in {where} "
            f"(arms seen: {', '.join(names) or 'none'}) and the {registry}{hint}"
        )
    return found
