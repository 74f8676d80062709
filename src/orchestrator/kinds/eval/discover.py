"""Finding a training experiment's checkpoints: the checkpoint layout plus the registry.

What a complete checkpoint is, and which one is latest and best, is core/checkpoints.py's
`read_arm` (one definition for the trainer, discovery and evaluation; see its docstring).
The registry says which arms exist before their first checkpoint and which are still training
(their unfinished units), so evaluation can wait for them. Finding no checkpoint at all is an
error naming where we looked, never an empty plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.core import paths
from orchestrator.core.checkpoints import DEFAULT_BEST_METRIC, Checkpoint, read_arm
from orchestrator.core.errors import UserError
from orchestrator.core.monitor import refresh
from orchestrator.core.registry import Registry
from orchestrator.core.states import ACTIVE_STATES
from orchestrator.scoring.registry import higher_is_better


@dataclass
class Arm:
    name: str
    checkpoints: list[Checkpoint] = field(default_factory=list)  # complete ones, by epoch
    latest: Checkpoint | None = None
    best: Checkpoint | None = None
    training: str | None = None  # scheduler key of its unfinished training unit, if any
    notes: list[str] = field(default_factory=list)


def active_training_units(experiment: str) -> dict[str, str]:
    """run → scheduler key of the experiment's units still pending or running (refreshed)."""
    if not paths.registry_file().exists():
        return {}
    registry = Registry()
    try:
        return {t.run: t.key for t in refresh(registry, experiment) if t.state in ACTIVE_STATES}
    finally:
        registry.close()


def discover(
    experiment: str, arms: list[str] | None = None, best_metric: str = DEFAULT_BEST_METRIC, require: bool = True
) -> dict[str, Arm]:
    """Every arm's complete checkpoints, latest and best (by `best_metric`, in the direction the
    scorer registry gives it). UserError when none is found (and `require`), naming the directory
    and the registry we looked in."""
    higher = higher_is_better(best_metric)
    root = paths.experiment_checkpoints_dir(experiment)
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
        ckpts = read_arm(experiment, name, best_metric, higher)
        found[name] = Arm(name, ckpts.complete, ckpts.latest, ckpts.best, training.get(name), ckpts.notes)
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
