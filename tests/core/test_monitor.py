"""State merging on recorded scheduler output (tests/executors/fixtures/, no cluster): what
`refresh` makes of one squeue and one sacct answer, and of the jobs' own status files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.core import monitor, paths
from orchestrator.core.files import write_json_atomic
from orchestrator.core.registry import Registry
from orchestrator.executors import slurm

FIXTURES = Path(__file__).parent.parent / "executors" / "fixtures"
IDS = json.loads((FIXTURES / "ids.json").read_text())


@pytest.fixture
def registry(orch_home):
    reg = Registry()
    folder = str(orch_home / "jobs")
    reg.add_job(IDS["array"], "slurm", "rec", "array", folder, "", [(f"a-{i}", []) for i in range(4)], [])
    for role in ("fail", "cancel", "dependent", "timeout"):
        reg.add_job(IDS[role], "slurm", "rec", role, folder, "", [(role, [])], [])
    yield reg
    reg.close()


def replay(monkeypatch, when: str) -> list[list[str]]:
    """Answer squeue/sacct with the recording taken `when` ('running' or 'done')."""
    calls = []

    def call(cmd):
        calls.append(cmd)
        ids = cmd[cmd.index("-j") + 1].split(",")  # as the scheduler does: only the jobs asked about
        lines = (FIXTURES / f"{cmd[0]}_{when}.txt").read_text().splitlines(keepends=True)
        text = "".join(line for line in lines if line.split("|")[0].split("_")[0] in ids)
        return subprocess.CompletedProcess(cmd, 0, text, "")

    monkeypatch.setattr(slurm, "_call", call)
    return calls


def test_while_running(registry, monkeypatch):
    calls = replay(monkeypatch, "running")
    tasks = {t.run: t for t in monitor.refresh(registry, "rec")}
    assert [c[0] for c in calls] == ["squeue", "sacct"]  # sacct only for those squeue has as ended
    assert sorted(calls[1][calls[1].index("-j") + 1].split(",")) == sorted([IDS["fail"], IDS["cancel"]])
    assert {r: t.state for r, t in tasks.items()} == {
        "a-0": "RUNNING",
        "a-1": "RUNNING",
        "a-2": "PENDING",
        "a-3": "PENDING",
        "fail": "FAILED",
        "cancel": "CANCELLED",
        "dependent": "PENDING",
        "timeout": "RUNNING",
    }
    assert tasks["a-2"].reason == "JobArrayTaskLimit" and tasks["dependent"].reason == "Dependency"
    assert tasks["a-0"].node == "node1" and tasks["a-2"].node is None
    assert tasks["fail"].exit_code == 1 and tasks["fail"].reason == "exit code 1"


def test_after_the_end(registry, monkeypatch):
    replay(monkeypatch, "running")
    assert {t.run: t.reason for t in monitor.refresh(registry, "rec")}["a-3"] == "JobArrayTaskLimit"
    replay(monkeypatch, "done")
    tasks = {t.run: t for t in monitor.refresh(registry, "rec")}
    assert {r: (t.state, t.exit_code) for r, t in tasks.items()} == {
        "a-0": ("COMPLETED", 0),
        "a-1": ("COMPLETED", 0),
        "a-2": ("FAILED", 3),
        "a-3": ("COMPLETED", 0),
        "fail": ("FAILED", 1),
        "cancel": ("CANCELLED", 0),
        "dependent": ("CANCELLED", 0),
        "timeout": ("TIMEOUT", 0),
    }
    assert tasks["dependent"].node is None  # sacct's 'None assigned'
    assert tasks["a-3"].reason is None and tasks["a-2"].reason == "exit code 3"  # no stale reason to wait
    # every task is final now: the next refresh asks the scheduler nothing
    calls = replay(monkeypatch, "done")
    monitor.refresh(registry, "rec")
    assert calls == []


def test_the_status_file_reason_explains_a_failure(registry, monkeypatch):
    write_json_atomic(paths.status_file("rec", "a-2"), {"state": "FAILED", "exit_code": 3, "reason": "disk full"})
    replay(monkeypatch, "done")
    tasks = {t.run: t for t in monitor.refresh(registry, "rec")}
    assert tasks["a-2"].reason == "disk full"


def test_completed_without_declared_outputs_is_failed(orch_home, monkeypatch):
    reg = Registry()
    reg.add_job(
        IDS["array"], "slurm", "rec", "array", str(orch_home), "", [(f"a-{i}", ["out.txt"]) for i in range(4)], []
    )
    (paths.run_dir("rec", "a-0")).mkdir(parents=True)
    (paths.run_dir("rec", "a-0") / "out.txt").write_text("x")
    replay(monkeypatch, "done")
    tasks = {t.run: t for t in monitor.refresh(reg, "rec")}
    assert tasks["a-0"].state == "COMPLETED"
    assert tasks["a-1"].state == "FAILED" and "out.txt" in tasks["a-1"].reason


def test_forgotten_by_both_is_failed_not_waited_on(registry, monkeypatch):
    monkeypatch.setattr(slurm, "_call", lambda cmd: subprocess.CompletedProcess(cmd, 0, "", ""))
    tasks = monitor.refresh(registry, "rec")
    assert {t.state for t in tasks} == {"FAILED"}
    assert all("left the queue" in t.reason for t in tasks)


def test_progress_counts():
    class T:
        def __init__(self, state):
            self.state = state

    c = monitor.progress([T(s) for s in ("COMPLETED", "RUNNING", "PENDING", "REQUEUED", "FAILED", "TIMEOUT")])
    assert dict(c) == {"done": 1, "running": 1, "pending": 2, "failed": 2, "total": 6}


def test_pending_on_a_dependency_never_satisfied_is_cancelled_naming_the_upstream(orch_home, monkeypatch, cli):
    """An evaluation waiting (afterok) on another experiment's unit that failed, submitted without
    --kill-on-invalid-dep: SLURM would keep it PENDING forever. It is CANCELLED, scancelled, and
    its reason names the upstream unit; `wait` returns 1 at once."""
    reg = Registry()
    folder = str(orch_home / "jobs")
    reg.add_job(IDS["never_upstream"], "slurm", "train", "arm", folder, "", [("arm", [])], [])
    reg.add_job(IDS["never"], "slurm", "train-eval", "eval", folder, "", [("u", [])], [IDS["never_upstream"]])
    calls = replay(monkeypatch, "never")
    cancelled = []
    monkeypatch.setattr(slurm.SlurmExecutor, "cancel", lambda self, ids: cancelled.extend(ids))
    (task,) = monitor.refresh(reg, "train-eval")
    assert task.state == "CANCELLED"
    assert task.reason == f"dependency never satisfied: train/arm (job {IDS['never_upstream']}) ended FAILED"
    assert cancelled == [IDS["never"]]
    assert [t.state for t in reg.tasks("train")] == ["FAILED"]  # the upstream experiment, refreshed once
    assert [c[0] for c in calls] == ["squeue", "squeue", "sacct"]
    res = cli("wait", "train-eval", "--timeout", "5")
    assert res.code == 1 and "CANCELLED dependency never satisfied: train/arm" in res.out


def test_cancelled_by_kill_on_invalid_dep_names_the_failed_upstream(orch_home, monkeypatch):
    reg = Registry()
    folder = str(orch_home / "jobs")
    reg.add_job(IDS["array"], "slurm", "rec", "array", folder, "", [(f"a-{i}", []) for i in range(4)], [])
    reg.add_job(IDS["dependent"], "slurm", "rec", "dependent", folder, "", [("dependent", [])], [IDS["array"]])
    reg.add_job(IDS["cancel"], "slurm", "rec", "cancel", folder, "", [("cancel", [])], [IDS["array"]])
    replay(monkeypatch, "done")
    tasks = {t.run: t for t in monitor.refresh(reg, "rec")}
    assert tasks["dependent"].state == "CANCELLED"
    assert tasks["dependent"].reason == "dependency never satisfied: rec/a-2 (job 2_2) ended FAILED"
    # cancelled by hand (squeue's reason is not DependencyNeverSatisfied) while its upstream failed:
    # the upstream still explains why nothing ran
    assert tasks["cancel"].state == "CANCELLED" and "rec/a-2" in tasks["cancel"].reason


def test_accounting_down_keeps_last_states_and_says_so(registry, monkeypatch):
    """slurmdbd down: sacct fails. Units squeue still shows are updated from it; those it has
    forgotten keep their last known state (never FAILED for want of an answer); a note says so."""
    replay(monkeypatch, "running")
    monitor.refresh(registry, "rec")

    def squeue_only(cmd):
        if cmd[0] == "sacct":
            return subprocess.CompletedProcess(cmd, 1, "", "sacct: error: Problem talking to the database")
        return subprocess.CompletedProcess(cmd, 0, f"{IDS['array']}_0|COMPLETED|None|node1\n", "")

    monkeypatch.setattr(slurm, "_call", squeue_only)
    notes: list[str] = []
    tasks = {t.run: t for t in monitor.refresh(registry, "rec", notes=notes)}
    assert notes == [slurm.NO_ACCOUNTING]
    assert tasks["a-0"].state == "COMPLETED"
    assert tasks["a-1"].state == "RUNNING" and tasks["a-2"].state == "PENDING"  # as last seen
    assert tasks["fail"].state == "FAILED"  # already final before: never asked again


def test_controller_down_reads_accounting_and_says_so(registry, monkeypatch):
    replay(monkeypatch, "done")
    real = slurm._call

    def no_squeue(cmd):
        return None if cmd[0] == "squeue" else real(cmd)

    monkeypatch.setattr(slurm, "_call", no_squeue)
    notes: list[str] = []
    tasks = {t.run: t for t in monitor.refresh(registry, "rec", notes=notes)}
    assert notes == [slurm.NO_CONTROLLER]
    assert tasks["a-0"].state == "COMPLETED" and tasks["timeout"].state == "TIMEOUT"


def test_nothing_answers_keeps_states_and_wait_gives_up_saying_why(registry, monkeypatch, cli):
    replay(monkeypatch, "running")
    monitor.refresh(registry, "rec")
    monkeypatch.setattr(slurm, "_call", lambda cmd: None)
    notes: list[str] = []
    tasks = {t.run: t for t in monitor.refresh(registry, "rec", notes=notes)}
    assert notes == [slurm.NO_SCHEDULER] and tasks["a-0"].state == "RUNNING"
    res = cli("wait", "rec", "--interval", "0.05", "--unreachable-timeout", "0.2")
    assert res.code == 4
    assert "neither squeue nor sacct answers" in res.out and "has not answered for" in res.out


def test_a_failure_on_a_full_results_filesystem_says_so(registry, monkeypatch):
    from collections import namedtuple

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(monitor.shutil, "disk_usage", lambda p: Usage(8 << 20, (8 << 20) - 4096, 4096))
    replay(monkeypatch, "done")
    tasks = {t.run: t for t in monitor.refresh(registry, "rec")}
    assert tasks["fail"].reason.startswith("exit code 1; the results filesystem")
    assert "is full (4 KiB free): free space and submit again" in tasks["fail"].reason


def test_status_watch_ends_when_every_job_has_ended(registry, monkeypatch, cli):
    replay(monkeypatch, "running")
    res = cli("status", "rec", "--watch", "--interval", "0.01", "--timeout", "0.05")
    assert res.code == 3 and "stopped watching after" in res.out  # still running: the timeout ends it
    replay(monkeypatch, "done")
    res = cli("status", "rec", "--watch", "--interval", "0.01")
    assert res.code == 0 and "every job has ended" in res.out
