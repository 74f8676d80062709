"""One batched look at every tracked job: each executor polls all its open tasks at once (SLURM:
at most one `squeue` and one `sacct` call per refresh, however many jobs). States are normalised,
and a unit counts as COMPLETED only when it exited 0 AND the outputs its kind declares exist."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.errors import SpecError
from orchestrator.core.executor import Note, executor_named
from orchestrator.core.registry import Registry, RegistryUnwritable, Task
from orchestrator.core.runner import missing_outputs, read_status
from orchestrator.core.states import (
    ACTIVE_STATES,
    CANCELLED,
    COMPLETED,
    FAILED,
    FAILED_STATES,
    FINAL_STATES,
    NEVER_SATISFIED,
    NODE_FAIL,
    PENDING,
    REQUEUED,
    RUNNING,
    dependency_reason,
)


def from_status(t: Task) -> dict:
    """The job's own account (status.json), used when the scheduler's is missing."""
    s = read_status(t.experiment, t.run) or {}
    if s.get("state") in FINAL_STATES:
        return {"state": s["state"], "exit_code": s.get("exit_code"), "reason": s.get("reason") or None}
    return {}


def refresh(
    registry: Registry, experiment: str | None = None, seen: set[str] | None = None, notes: list[Note] | None = None
) -> list[Task]:
    """Bring every open task of `experiment` (or all) up to date; return all latest tasks.
    `seen`: experiments refreshed already in this pass (upstreams of cancelled units); `notes`
    receives what the caller should tell the user (a part of SLURM not answering)."""
    open_tasks = registry.tasks(experiment, only_open=True)
    notes = notes if notes is not None else []
    by_executor: dict[str, list[Task]] = {}
    for t in open_tasks:
        by_executor.setdefault(t.executor, []).append(t)
    updates: dict[tuple[int, int], dict] = {}
    for name, tasks in sorted(by_executor.items()):
        try:
            executor = executor_named(name)
        except SpecError:  # recorded by an executor not registered here (a plugin not installed)
            notes.append(
                Note(
                    f"executor {name!r} is not known here: {len(tasks)} unit(s) keep their last state", unreachable=True
                )
            )
            continue
        polled = executor.poll(tasks)
        updates.update(polled.updates)
        notes += polled.notes
    changes = []
    for t in open_tasks:
        new = updates.get((t.job, t.task), {})
        if new.get("state") not in (None, PENDING, REQUEUED) and t.state in (PENDING, REQUEUED) and "reason" not in new:
            new["reason"] = None  # squeue's reason to wait ("Dependency", "Resources") ended with the wait
        if new.get("state") == COMPLETED:
            if new.get("exit_code") not in (0, None):
                new["state"] = FAILED
            missing = missing_outputs(paths.run_dir(t.experiment, t.run), t.outputs)
            if missing:
                new.update(state=FAILED, reason=f"exited 0 but declared outputs are missing: {', '.join(missing)}")
        if new.get("state") == FAILED and not new.get("reason"):
            status = from_status(t)
            new["reason"] = status.get("reason") or f"exit code {new.get('exit_code')}" + _full_disk(t)
        if new.get("state") == NODE_FAIL and not new.get("reason"):
            node = new.get("node") or t.node
            # checkpointable units are requeued by SLURM (--requeue) and resume; a NODE_FAIL that
            # stays final is a unit that cannot resume (--no-requeue), or one requeued too often
            new["reason"] = f"node {node or '?'} failed while the unit ran; it was not requeued: submit again"
        changed = {k: v for k, v in new.items() if getattr(t, k) != v}
        if changed:
            changes.append((t, changed))
            for k, v in changed.items():
                setattr(t, k, v)
    try:
        if changes:
            registry.update_tasks(changes)
        named = _name_upstream(registry, [t for t, _ in changes], seen or set())
        if named:
            registry.update_tasks(named)
    except RegistryUnwritable as e:
        # the states are known, only not saved: show them (the next refresh learns them again)
        notes.append(Note(f"{e} (states shown are current but not saved)"))
        latest = {(t.job, t.task): t for t in open_tasks}
        return [latest.get((t.job, t.task), t) for t in registry.tasks(experiment)]
    return registry.tasks(experiment)


FULL_DISK_BYTES = 1 << 20  # less free than this: "full" (a failed write is the likely cause)


def _full_disk(t: Task) -> str:
    """A unit that failed without saying why, on a full results filesystem: most likely a write
    failed there (its own error could not be written either)."""
    try:
        free = shutil.disk_usage(paths.experiment_dir(t.experiment)).free
    except OSError:
        return ""
    if free >= FULL_DISK_BYTES:
        return ""
    return f"; the results filesystem ({paths.home()}) is full ({free // 1024} KiB free): free space and submit again"


def _upstream(registry: Registry, t: Task, ref: str) -> list[Task]:
    """The units a recorded dependency `ref` of `t` stands for: `<experiment>/<run>`, or a job id
    or array-task key (executor.Launched.after)."""
    if "/" in ref:
        exp, _, run = ref.rpartition("/")
        return [u for u in registry.tasks(exp) if u.run == run]
    return registry.find_job(ref)


def _name_upstream(registry: Registry, changed: list[Task], seen: set[str]) -> list[tuple[Task, dict]]:
    """Reasons for units cancelled because a dependency failed, naming the upstream unit (which
    may belong to another experiment, refreshed here once so its state is current)."""
    out = []
    for t in changed:
        if t.state != CANCELLED or not t.depends_on or (t.reason and t.reason != NEVER_SATISFIED):
            continue
        upstream = []
        for ref in t.depends_on:
            ups = _upstream(registry, t, ref)
            stale = {u.experiment for u in ups if not u.final} - seen - {t.experiment}
            for exp in stale:
                seen.add(exp)
                refresh(registry, exp, seen)
            upstream += [u for u in (_upstream(registry, t, ref) if stale else ups) if u.state in FAILED_STATES]
        if upstream:
            u = upstream[0]
            reason = dependency_reason(f"{u.experiment}/{u.run} (job {u.key})", u.state)
        elif t.reason == NEVER_SATISFIED:
            reason = dependency_reason(f"job {', '.join(t.depends_on)}", None)
        else:
            continue  # cancelled with its dependencies intact: by a user
        t.reason = reason
        out.append((t, {"reason": reason}))
    return out


def log_tail(task: Task, lines: int = 20) -> str:
    """Last lines of a task's logs (stderr then stdout), for failure reports."""
    out = []
    for stream in ("err", "out"):
        p = paths.job_log(Path(task.folder), task.key, stream=stream)
        try:
            with open(p, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if text:
            out.append(f"--- {p}\n" + "\n".join(text))
    return "\n".join(out)


def progress(tasks: list[Task]) -> Counter[str]:
    """done / running / failed / pending counts, for arrays."""
    c: Counter[str] = Counter()
    for t in tasks:
        c[
            "done"
            if t.state == COMPLETED
            else "running"
            if t.state == RUNNING
            else "pending"
            if t.state in ACTIVE_STATES
            else "failed"
        ] += 1
    c["total"] = len(tasks)
    return c
