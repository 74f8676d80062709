"""The checkpoint contract, shared by the kind that writes checkpoints (train) and the kinds that
read them (eval), which never import each other.

    checkpoints/<experiment>/<arm>/epoch_<N>/   the writer's files (train: HF model + tokenizer,
                                                trainer_state.pt), meta.json (written last)
    checkpoints/<experiment>/<arm>/latest       text files naming an epoch_<N> directory,
    checkpoints/<experiment>/<arm>/best         each replaced after the checkpoint it names is complete
    checkpoints/<experiment>/<arm>/.epoch_<N>.* a checkpoint being written or replaced

`write` fills epoch_<N>/ under a hidden temporary name, fsyncs it, renames it into place, then
replaces `best` (when asked) and `latest`; so a kill at any moment leaves the previous complete
checkpoint as latest. Retention (`prune`) keeps the last `keep_last` epochs plus best, those the
writer still needs (`keep`: train's pending held-out decisions), plus every **pinned** checkpoint:
an evaluation planned for a checkpoint pins it when submitted
(`.pins/<checkpoint>/<eval experiment>__<run>.json`) and unpins it once its result is written. A pin
is also released when its result exists or its unit ended (status file or registry) after the pin
was made, so a failed or cancelled evaluation holds nothing; a later save then applies the keep
policy. Pinning and retention take the arm's lock (`.lock`) and retention renames a checkpoint away
before deleting it, so a checkpoint is either pinned while complete or gone before the pin.

One definition of each, used by the trainer (resume, retention), discovery and evaluation:

- **complete**: a directory named `epoch_<N>` holding a readable `meta.json` (a JSON object).
  meta.json is the last file written into a checkpoint, so its presence vouches for the files
  beside it, even from a writer that does not rename (a test or a copy by hand). Anything else in
  the arm's directory (`.epoch_3.tmp-123`, `epoch_5/` without meta.json, ...) is a checkpoint
  being written and is ignored (with a note). A resume also needs train's trainer_state.pt
  (kinds/train/checkpoint.py `load_state` says so if absent).
- **latest**: the complete checkpoint the `latest` pointer names. Without a pointer (a kill
  between the first rename and the first pointer, or checkpoints copied in by hand), the complete
  checkpoint with the highest epoch. A pointer that names no complete checkpoint was edited by
  hand (the writer writes it only after its target is complete, retention never deletes its
  target): no latest then, and a note; guessing could resume from, or evaluate, the wrong epoch.
- **best**: the epoch the trainer's early stopping judged best, as the trainer records it: the
  `best` pointer (written with that epoch's checkpoint, so it is current while training runs),
  else the best epoch of the arm's summary.json (written at the end), when either names a complete
  checkpoint. Only for checkpoints with neither (written by something else), the best value of
  `best_metric` in the checkpoints' meta.json metrics (the earlier epoch on ties), in the direction
  the caller passes: the scorer registry's (`scoring.registry.higher_is_better`), which core cannot
  import.

Another kind asks for an evaluation of checkpoints by kind name (`evaluator`, `submit_evaluation`):
the `eval` kind's spec, found in the kind table, plans and pins; train never imports it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from orchestrator.core import files, paths
from orchestrator.core.errors import SpecError, UserError
from orchestrator.core.files import locked
from orchestrator.core.records import CheckpointMeta, RecordError
from orchestrator.core.registry import Registry
from orchestrator.core.runner import read_status
from orchestrator.core.spec import BaseSpec, format_validation_error, kind_class  # kind_class: the kind table
from orchestrator.core.states import FINAL_STATES

if TYPE_CHECKING:
    from orchestrator.core.executor import Executor
    from orchestrator.core.submit import Submitted

DEFAULT_BEST_METRIC = "val/reward_mean"  # a reward: higher is better (scoring/rewards.py orients it)


@dataclass(frozen=True)
class Checkpoint:
    arm: str
    name: str  # "epoch_3": the directory name, also the result path's <checkpoint>
    epoch: int
    path: Path
    step: int | None
    metrics: dict


@dataclass
class ArmCheckpoints:
    """What the checkpoint directory of one arm holds, read once (see the module docstring)."""

    arm: str
    complete: list[Checkpoint] = field(default_factory=list)  # by epoch
    latest: Checkpoint | None = None
    best: Checkpoint | None = None
    notes: list[str] = field(default_factory=list)  # what was ignored, and why


def read_checkpoint(arm: str, path: Path) -> Checkpoint | None:
    """A complete checkpoint directory, or None (not an epoch_<N> dir, or still being written)."""
    epoch = paths.checkpoint_epoch(path.name)
    if epoch is None or not path.is_dir():
        return None
    try:  # a newer schema_version is an error (SchemaVersionError), never a skipped checkpoint
        meta = CheckpointMeta.read(path / paths.CHECKPOINT_META)
    except (OSError, RecordError):
        return None
    return Checkpoint(arm=arm, name=path.name, epoch=meta.epoch, path=path, step=meta.step, metrics=meta.metrics)


def _pointer(file: Path) -> str | None:
    """The directory name a pointer file holds; None when there is no pointer."""
    try:
        return Path(file.read_text().strip()).name
    except OSError:
        return None


def read_arm(
    experiment: str, arm: str, best_metric: str = DEFAULT_BEST_METRIC, higher_is_better: bool = True
) -> ArmCheckpoints:
    """The arm's complete checkpoints, latest and best (definitions in the module docstring);
    `higher_is_better`: the direction of `best_metric`, from the scorer registry."""
    out = ArmCheckpoints(arm)
    root = paths.arm_checkpoints_dir(experiment, arm)
    if not root.is_dir():
        return out
    for p in sorted(root.iterdir()):
        c = read_checkpoint(arm, p)
        if c is not None:
            out.complete.append(c)
        elif p.is_dir() and not p.name.startswith("."):
            out.notes.append(f"ignored {p.name}: not a complete checkpoint (no {paths.CHECKPOINT_META})")
    out.complete.sort(key=lambda c: c.epoch)
    if not out.complete:
        return out
    by_name = {c.name: c for c in out.complete}
    named = _pointer(paths.latest_checkpoint_file(experiment, arm))
    if named is None:
        out.latest = out.complete[-1]
    elif named in by_name:
        out.latest = by_name[named]
    else:
        out.notes.append(f"'{paths.CHECKPOINT_LATEST}' names {named!r}, not a complete checkpoint: no latest")
    out.best = _best(experiment, arm, out, best_metric, higher_is_better)
    return out


def _best(experiment: str, arm: str, found: ArmCheckpoints, metric: str, higher: bool) -> Checkpoint | None:
    by_name = {c.name: c for c in found.complete}
    named = _pointer(paths.best_checkpoint_file(experiment, arm))
    if named in by_name:
        return by_name[named]
    if named is not None:
        found.notes.append(f"'{paths.CHECKPOINT_BEST}' names {named!r}, not a complete checkpoint")
    try:
        summary = json.loads((paths.run_dir(experiment, arm) / paths.SUMMARY_FILE).read_text())
        epoch = (summary.get("best") or {}).get("epoch")
    except (OSError, ValueError, AttributeError):
        epoch = None
    if isinstance(epoch, int) and paths.checkpoint_name(epoch) in by_name:
        return by_name[paths.checkpoint_name(epoch)]
    scored = [c for c in found.complete if isinstance(c.metrics.get(metric), (int, float))]
    if not scored:
        return None
    return (max if higher else min)(scored, key=lambda c: (c.metrics[metric], -c.epoch if higher else c.epoch))


def latest(experiment: str, arm: str) -> Path | None:
    """The directory of the arm's latest complete checkpoint, or None."""
    c = read_arm(experiment, arm).latest
    return c.path if c else None


def best(experiment: str, arm: str) -> Path | None:
    c = read_arm(experiment, arm).best
    return c.path if c else None


def epochs(experiment: str, arm: str) -> list[int]:
    """The epochs of the arm's complete checkpoints."""
    return [c.epoch for c in read_arm(experiment, arm).complete]


# ---------------------------------------------------------------------- writing (train)


def write(experiment: str, arm: str, epoch: int, fill: Callable[[Path], None], meta: dict, best: bool = False) -> Path:
    """Write epoch_<epoch>/ atomically: `fill(directory)` writes the writer's files into a hidden
    temporary directory, which is fsynced, completed with meta.json and renamed into place; then
    `best` (if `best`) and `latest` point at it."""
    final = paths.checkpoint_dir(experiment, arm, epoch)
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = paths.checkpoint_scratch(final, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    fill(tmp)
    files.honour_umask(tmp)  # safetensors writes the weights 0600: the group could not evaluate them
    for f in tmp.iterdir():
        if f.is_file():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
    files.write_atomic(tmp / paths.CHECKPOINT_META, json.dumps(meta, indent=1, sort_keys=True))  # last
    if final.exists():  # the same epoch saved again (a resumed run redoing it): replace
        old = paths.checkpoint_scratch(final, "old")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    files.fsync_dir(root)
    if best:
        files.write_atomic(paths.best_checkpoint_file(experiment, arm), final.name + "\n")
    files.write_atomic(paths.latest_checkpoint_file(experiment, arm), final.name + "\n")
    return final


def set_best(experiment: str, arm: str, name: str) -> bool:
    """Point `best` at an earlier complete checkpoint (held-out scores arrive after the save)."""
    with _locked(experiment, arm):
        if read_checkpoint(arm, paths.arm_checkpoints_dir(experiment, arm) / name) is None:
            return False
        files.write_atomic(paths.best_checkpoint_file(experiment, arm), name + "\n")
    return True


def prune(experiment: str, arm: str, keep_last: int, keep: tuple[int, ...] = ()) -> list[int]:
    """Delete checkpoints other than the last `keep_last`, the latest, the best, the pinned ones
    and the epochs in `keep` (the trainer's, awaiting a held-out decision); leftovers of
    interrupted writes too. Returns the epochs deleted."""
    root = paths.arm_checkpoints_dir(experiment, arm)
    with _locked(experiment, arm):
        for p in root.glob(paths.CHECKPOINT_SCRATCH_GLOB):
            shutil.rmtree(p, ignore_errors=True)
        found = read_arm(experiment, arm)
        held = pinned(experiment, arm)
        kept = {c.epoch for c in found.complete[-keep_last:]} | set(keep)
        kept |= {c.epoch for c in (found.latest, found.best) if c is not None}
        kept |= {c.epoch for c in found.complete if c.name in held}
        gone = [c for c in found.complete if c.epoch not in kept]
        doomed = []
        for c in gone:  # renamed under the lock: no longer complete, so no pin can take it now
            doomed.append(paths.checkpoint_scratch(c.path, "old"))
            os.replace(c.path, doomed[-1])
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return [c.epoch for c in gone]


# ---------------------------------------------------------------------- pins (evaluation)


def _locked(experiment: str, arm: str) -> AbstractContextManager[None]:
    return locked(paths.checkpoint_lock(experiment, arm))


def pin(experiment: str, arm: str, checkpoint: str, holder: str, run: str, result: Path) -> str:
    """Keep `checkpoint` until unit `run` of experiment `holder` has written `result` or ended.
    "new" (pinned now), "held" (an earlier submit's pin still holds it), or "gone" (nothing
    pinned: the checkpoint is not complete any more)."""
    with _locked(experiment, arm):
        if read_checkpoint(arm, paths.arm_checkpoints_dir(experiment, arm) / checkpoint) is None:
            return "gone"
        f = paths.checkpoint_pin(experiment, arm, checkpoint, holder, run)
        registry: list[Registry] = []
        held = _held(f, registry)  # a held pin keeps its time (its unit is queued or running)
        if not held:
            files.write_json_atomic(
                f, {"experiment": holder, "run": run, "result": str(result), "created": time.time()}
            )
        for r in registry:
            r.close()
    return "held" if held else "new"


def unpin(experiment: str, arm: str, checkpoint: str, holder: str, run: str) -> None:
    paths.checkpoint_pin(experiment, arm, checkpoint, holder, run).unlink(missing_ok=True)


def pinned(experiment: str, arm: str) -> set[str]:
    """Names of the arm's checkpoints an evaluation still holds; released pins are removed."""
    held = set()
    registry: list[Registry] = []  # opened only when a pin needs it
    for f in sorted(paths.checkpoint_pins_dir(experiment, arm).glob("*/*.json")):
        if _held(f, registry):
            held.add(f.parent.name)
        else:
            f.unlink(missing_ok=True)
    for r in registry:
        r.close()
    return held


def _held(f: Path, registry: list[Registry]) -> bool:
    """A pin holds until its result exists or its unit ended after the pin was made (an earlier
    attempt's end says nothing about the one the pin is for)."""
    try:
        pin = files.read_json(f)
    except (OSError, ValueError):
        return False
    if Path(pin["result"]).exists():
        return False
    status = read_status(pin["experiment"], pin["run"]) or {}
    if status.get("state") in FINAL_STATES and (status.get("ended") or 0) >= pin["created"]:
        return False
    if not paths.registry_file().exists():
        return True
    if not registry:
        registry.append(Registry())
    tasks = [t for t in registry[0].tasks(pin["experiment"]) if t.run == pin["run"]]
    return not (tasks and tasks[0].final and tasks[0].submitted >= pin["created"])


# ---------------------------------------------------------------------- evaluations, by kind name

EVALUATOR_KIND = "eval"  # the kind whose plans evaluate checkpoints
PLAN_ATTEMPTS = 3  # retention racing the planner is rare: a fresh plan sees what it left


class CheckpointGone(UserError):
    """Retention deleted a checkpoint between planning and pinning it: plan again."""


@dataclass(frozen=True)
class EvaluatedTask:
    """One task an evaluation scores each checkpoint on, as the asking kind needs to know it."""

    name: str
    domain: str
    not_binary: str | None = None  # why its per-example scores are not 0/1 (McNemar needs them); None: 0/1


class Evaluator(BaseSpec):
    """The spec of a kind that evaluates checkpoints (`eval`): what it offers the kinds that ask
    for evaluations, besides plan() and check_submit() (which pins the planned checkpoints)."""

    def evaluated_tasks(self) -> list[EvaluatedTask]:
        raise NotImplementedError

    def plan_summary(self) -> str:
        """What discovery found and what was left out (for the asking command's output)."""
        raise NotImplementedError

    def release_pins(self) -> None:
        """Undo this submit's pins (it failed: nothing of it runs)."""
        raise NotImplementedError


def evaluator(request: dict[str, Any], shown: str = "") -> Evaluator:
    """The spec of an evaluation (`request`: the eval kind's spec keys, as in a YAML spec), its
    class found by kind name in the kind table, so the asking kind imports no other kind.
    SpecError (under the name `shown`) when the request is not valid."""
    shown = shown or f"evaluation of {request.get('experiment')}"
    cls = kind_class(EVALUATOR_KIND, shown)
    if not issubclass(cls, Evaluator):
        raise SpecError(shown, f"kind {EVALUATOR_KIND!r} ({cls.__qualname__}) does not evaluate checkpoints")
    try:
        return cls.model_validate({**request, "kind": EVALUATOR_KIND})
    except ValidationError as e:
        raise SpecError(shown, format_validation_error(e, cls)) from None


def submit_evaluation(
    spec: Evaluator,
    executor: Executor,
    force: bool = False,
    again: Callable[[], Evaluator] | None = None,
    say: Callable[[str], Any] = print,
) -> tuple[Evaluator, list[Submitted]]:
    """Submit an evaluation; its pins are released when the submit fails (nothing of it runs).
    When retention deleted a planned checkpoint before it was pinned (CheckpointGone, nothing
    submitted), `again()` makes a fresh spec to plan with, at most PLAN_ATTEMPTS times in all.
    Returns the spec that was submitted and what it submitted."""
    from orchestrator.core.submit import submit  # here: the eval job reads checkpoints without it

    attempt = 1
    while True:
        try:
            return spec, submit(spec, executor, force=force)
        except CheckpointGone as e:  # nothing submitted, no pin left
            if again is None or attempt == PLAN_ATTEMPTS:
                raise
            say(f"{e}; planning again ({attempt}/{PLAN_ATTEMPTS - 1})")
            spec, attempt = again(), attempt + 1
        except BaseException:
            spec.release_pins()  # submit rolled back what it started
            raise
