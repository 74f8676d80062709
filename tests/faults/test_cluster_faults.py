"""Faults of the cluster, injected into the real test cluster (scripts/slurm-cluster.sh): the
controller restarted, a node dying mid-job, accounting down, the results filesystem full, ten
submits at once. Each test leaves the cluster up again (`up` in a finalizer), and prints one
line of figures (`FAULT ...`) that docs/faults.md tabulates.

These stop and kill SLURM daemons: run them alone, never beside other SLURM work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import status_json, wait_final
from orchestrator.core import paths
from orchestrator.core.registry import Registry
from orchestrator.executors.slurm import NO_ACCOUNTING, NO_CONTROLLER

pytestmark = [pytest.mark.slurm, pytest.mark.faults]

REPO = Path(__file__).resolve().parent.parent.parent
CLUSTER = REPO / "scripts" / "slurm-cluster.sh"


def cluster(*args: str, timeout: float = 300) -> str:
    res = subprocess.run(["bash", str(CLUSTER), *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"slurm-cluster.sh {' '.join(args)}: {res.stderr[-3000:]}"
    return res.stderr


@pytest.fixture(autouse=True)
def cluster_restored():
    """Whatever a test broke, the next one finds the cluster whole (daemons up, nodes idle)."""
    yield
    if subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, timeout=120).returncode != 0:
        cluster("up")


def figures(fault: str, **values: object) -> None:
    """One line of measured figures per fault (pytest -s shows it; docs/faults.md holds a run's)."""
    print(f"\nFAULT {fault}: " + ", ".join(f"{k}={v}" for k, v in values.items()), flush=True)


def orchestrate(*args: str, **kw) -> subprocess.Popen:
    """The CLI in its own process (as a user runs it), with this test's ORCH_HOME."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        **kw,
    )


def until(what: str, check, timeout: float, interval: float = 0.5):
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def submit(cli, path: Path) -> None:
    res = cli("submit", path, "--executor", "slurm")
    assert res.code == 0, res.err


def states(cli, experiment: str) -> dict[str, str]:
    return {t["run"]: t["state"] for r in status_json(cli, experiment) for t in r["tasks"]}


def lines(path: Path) -> list[dict]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in data.splitlines() if x.strip()]


# --------------------------------------------------------------------------------------------


def test_ten_simultaneous_submits_make_one_set_of_jobs(spec_file, slurm_home):
    """Ten `orchestrate submit` processes of one experiment at the same moment: one sbatch per
    stage, every unit runs once, the other nine say what they skipped."""
    path = spec_file(
        "tensub",
        """\
kind: command
resources: {time: "5", mem: 100M}
stages:
  a:
    run: [bash, -c, 'echo "$1" >> {run_dir}/ran.txt', _, "{index}"]
    array: [["x"], ["y"], ["z"]]
    outputs: [ran.txt]
  b:
    after: [a]
    run: [bash, -c, "echo b >> {run_dir}/ran.txt"]
    outputs: [ran.txt]
""",
    )
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    procs = [orchestrate("submit", str(path), "--executor", "slurm") for _ in range(10)]
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 10, [err for _, _, err in results]
    jobs = Registry().db.execute("SELECT stage FROM jobs WHERE experiment = 'tensub' ORDER BY id").fetchall()
    assert [j[0] for j in jobs] == ["a", "b"]
    final = wait_final("tensub", timeout=180)
    assert {r: t.state for r, t in final.items()} == {
        "a-0": "COMPLETED",
        "a-1": "COMPLETED",
        "a-2": "COMPLETED",
        "b": "COMPLETED",
    }
    for run in final:
        assert len((paths.run_dir("tensub", run) / "ran.txt").read_text().splitlines()) == 1, run

    def sbatched() -> set[str]:  # the jobs accounting has of this experiment (its records may lag)
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-S", since, "--name", "tensub.a,tensub.b", "-o", "JobID"],
            capture_output=True,
            text=True,
        ).stdout
        return {j.split("_")[0] for j in out.split()}

    until("accounting to record both jobs", lambda: len(sbatched()) >= 2, 60, 1)
    time.sleep(2)
    assert len(sbatched()) == 2  # accounting agrees: two sbatch calls, not twenty
    skipped = sum("nothing to submit" in out for _, out, _ in results)
    assert skipped == 9, [out for _, out, _ in results]
    figures("ten-submits", submits=10, sbatch_jobs=len(jobs), units_run_once=len(final), skipped=skipped)


def test_accounting_down_status_falls_back_says_so_and_recovers(cli, spec_file, slurm_home):
    """slurmdbd stopped while a job runs and ends: `status` takes the end from squeue and the
    job's status file and says accounting is not answering; with slurmdbd back the record
    arrives in sacct (nothing lost) and status speaks without the note."""
    path = spec_file(
        "dbddown",
        """\
kind: command
resources: {time: "5", mem: 100M}
stages:
  main: {run: [bash, -c, "sleep 6; echo ok > {run_dir}/out.txt"], outputs: [out.txt]}
""",
    )
    cluster("stop", "slurmdbd")
    try:
        submit(cli, path)  # sbatch needs only the controller
        until("dbddown running", lambda: states(cli, "dbddown") == {"main": "RUNNING"}, 60)
        down = time.monotonic()
        res = until("dbddown to end", lambda: (r := cli("status", "dbddown")) and "COMPLETED" in r.out and r, 60)
        assert res.code == 0 and NO_ACCOUNTING.text[:40] in " ".join(res.out.split())
        (job_id,) = [r["job_id"] for r in status_json(cli, "dbddown")]
    finally:
        cluster("up")
    back = time.monotonic()

    def in_accounting():
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True)
        return out.stdout.split() == ["COMPLETED"]

    until("the controller to hand the job's record to slurmdbd", in_accounting, 120, 1)
    recorded = time.monotonic() - back
    path2 = spec_file(
        "dbdback",
        'kind: command\nresources: {time: "5", mem: 100M}\nstages:\n  main: {run: ["true"]}\n',
    )
    submit(cli, path2)
    assert wait_final("dbdback")["main"].state == "COMPLETED"
    res = cli("status", "dbdback")
    assert res.code == 0 and "note:" not in res.out
    figures(
        "slurmdbd-down", down_s=round(back - down), jobs=1, state="COMPLETED", record_in_sacct_after_s=round(recorded)
    )


def test_controller_restart_while_jobs_run_and_wait_polls(spec_file, cli, slurm_home):
    """slurmctld stopped (state saved) while an array runs and `wait` and `status --watch`
    poll, for long enough that the array ends meanwhile, then started again: both pollers say
    the controller does not answer, then end on their own; every unit COMPLETED, and the stage
    waiting afterok on the array ran after it."""
    path = spec_file(
        "ctldrestart",
        """\
kind: command
resources: {time: "10", mem: 100M}
stages:
  a:
    run: [bash, -c, "sleep 12; echo a > {run_dir}/out.txt"]
    array: [["x"], ["y"], ["z"]]
    outputs: [out.txt]
  b:
    after: [a]
    run: [bash, -c, "cat {run_dir}/../a-*/out.txt > {run_dir}/out.txt"]
    outputs: [out.txt]
""",
    )
    submit(cli, path)
    until("the array to run", lambda: sum(s == "RUNNING" for s in states(cli, "ctldrestart").values()) >= 2, 90)
    wait = orchestrate("wait", "ctldrestart", "--interval", "1", "--timeout", "400")
    watch = orchestrate("status", "ctldrestart", "--watch", "--interval", "1", "--timeout", "400")
    time.sleep(2)
    cluster("stop", "slurmctld")
    down = time.monotonic()
    time.sleep(25)  # the array's units end while the controller is away
    cluster("up")
    restarted = time.monotonic()
    code = wait.wait(timeout=400)
    waited = time.monotonic() - restarted
    out, err = wait.communicate()
    assert code == 0, out + err
    assert f"note: {NO_CONTROLLER}" in out and "note: SLURM answers again" in out
    assert watch.wait(timeout=120) == 0
    assert "every job has ended" in watch.communicate()[0]
    final = wait_final("ctldrestart", timeout=30)
    assert {t.state for t in final.values()} == {"COMPLETED"}
    assert (paths.run_dir("ctldrestart", "b") / "out.txt").read_text() == "a\na\na\n"
    figures(
        "slurmctld-restart",
        down_s=round(restarted - down),
        jobs=len(final),
        state="COMPLETED",
        wait_returned_after_restart_s=round(waited),
    )


def _qa_rows(n: int) -> str:
    return "".join(
        json.dumps(
            {"id": f"q{i}", "question": f"what is item {i}?", "context": "c" * (i % 9), "answers": [f"item {i}"]}
        )
        + "\n"
        for i in range(n)
    )


def _inference_spec(spec_file, tmp_path: Path, name: str, n: int, extra: str = "") -> Path:
    data = tmp_path / f"{name}.jsonl"
    data.write_text(_qa_rows(n))
    return spec_file(
        name,
        f"""\
kind: inference
models: [tiny]
tasks: [{{task: qa, dataset: {{data_files: {data}}}, generation: {{max_new_tokens: 16, stop: []}}}}]
device: cpu
batch_size: 2
wandb: {{enabled: false}}
resources: {{time: "20", mem: 2G{extra}}}
""",
    )


def test_node_dies_mid_job_resumable_units_requeue_others_fail(cli, spec_file, slurm_home, tmp_path):
    """node1 dies (its slurmd and every process of its jobs SIGKILLed) while an inference and a
    command run there. The controller notices (SlurmdTimeout), SLURM requeues the inference
    (--requeue), which resumes from its predictions once the node is back; the command
    (--no-requeue) ends NODE_FAIL with a reason that says to submit again."""
    n = 150
    infer = _inference_spec(spec_file, tmp_path, "nodeinf", n, ", sbatch: {nodelist: node1}")
    command = spec_file(
        "nodecmd",
        """\
kind: command
resources: {time: "10", mem: 100M, sbatch: {nodelist: node1}}
stages:
  main: {run: [sleep, "600"]}
""",
    )
    submit(cli, infer)
    submit(cli, command)
    pred = paths.run_dir("nodeinf", "tiny__qa") / "predictions.jsonl"
    until("some predictions", lambda: len(lines(pred)) >= 6, 240)
    assert states(cli, "nodecmd") == {"main": "RUNNING"}
    cluster("fail-node", "node1")
    failed = time.monotonic()
    kept = pred.read_bytes()
    kept = kept[: kept.rfind(b"\n") + 1]

    def node_down():
        out = subprocess.run(["sinfo", "-h", "-n", "node1", "-o", "%t"], capture_output=True, text=True).stdout
        return "down" in out

    until("the controller to mark node1 down", node_down, 120, 1)
    noticed = time.monotonic() - failed
    cmd = wait_final("nodecmd", timeout=60)["main"]
    assert cmd.state == "NODE_FAIL"
    assert cmd.reason.startswith("node node1 failed while the unit ran; it was not requeued")
    assert states(cli, "nodeinf")["tiny__qa"] in ("PENDING", "REQUEUED")  # requeued, waiting for node1
    cluster("up")  # node1 comes back (slurmd restarted, ReturnToService)
    final = wait_final("nodeinf", timeout=600)["tiny__qa"]
    assert final.state == "COMPLETED", final.reason
    data = pred.read_bytes()
    assert data.startswith(kept)  # what was written before the failure is kept, not redone
    ids = [r["id"] for r in lines(pred)]
    assert len(ids) == len(set(ids)) == n  # none lost, none twice
    restarts = subprocess.run(
        ["scontrol", "-o", "show", "job", final.scheduler_id], capture_output=True, text=True
    ).stdout
    assert "Restarts=1" in restarts, restarts
    figures(
        "node-dies",
        noticed_after_s=round(noticed),
        jobs=2,
        inference="requeued, resumed, COMPLETED",
        examples_before=kept.count(b"\n"),
        examples=n,
        duplicates=len(ids) - len(set(ids)),
        command="NODE_FAIL",
    )


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    assert res.returncode == 0, f"mount tmpfs (needs root): {res.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full (down to single bytes)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


def test_results_filesystem_full_then_rerun_completes_exactly_once(cli, spec_file, tmp_path, small_tmpfs, monkeypatch):
    """ORCH_HOME on a 24 MiB tmpfs, filled while an inference writes: the job fails saying the
    filesystem is full, every result file on it is whole (predictions end on a complete record,
    no temp files), and after space is freed a second submit completes with every example once,
    equal to an uninterrupted run."""
    n = 120
    infer = _inference_spec(spec_file, tmp_path, "fullinf", n)
    submit(cli, infer)  # the reference: ORCH_HOME on the ordinary disk
    assert wait_final("fullinf", timeout=600)["tiny__qa"].state == "COMPLETED"
    reference = {r["id"]: r["prediction"] for r in lines(paths.run_dir("fullinf", "tiny__qa") / "predictions.jsonl")}
    assert len(reference) == n

    monkeypatch.setenv("ORCH_HOME", str(small_tmpfs))
    submit(cli, infer)
    pred = paths.run_dir("fullinf", "tiny__qa") / "predictions.jsonl"
    until("some predictions", lambda: len(lines(pred)) >= 4, 240)
    filler = fill(small_tmpfs)
    task = wait_final("fullinf", timeout=300)["tiny__qa"]
    assert task.state == "FAILED"
    assert "No space left on device" in task.reason or "is full" in task.reason, task.reason
    failed_with = task.reason
    data = pred.read_bytes()
    assert data.endswith(b"\n")  # no half-written record
    written = lines(pred)
    assert 4 <= len(written) < n and len({r["id"] for r in written}) == len(written)
    assert not list(small_tmpfs.rglob("*.tmp"))  # no temp file of an atomic write left behind
    for status in small_tmpfs.rglob("status.json"):
        json.loads(status.read_text())
    res = cli("status", "fullinf")
    assert res.code == 0 and "FAILED" in res.out, res.err
    assert "note: could not write the job registry" in res.out  # the registry is on the full disk too
    assert "free space and submit again" in " ".join(res.out.split())

    filler.unlink()
    submit(cli, infer)
    task = wait_final("fullinf", timeout=600)["tiny__qa"]
    assert task.state == "COMPLETED", task.reason
    assert pred.read_bytes().startswith(data)  # kept, not regenerated
    resumed = lines(pred)
    ids = [r["id"] for r in resumed]
    assert len(ids) == len(set(ids)) == n
    assert {r["id"]: r["prediction"] for r in resumed} == reference
    figures(
        "filesystem-full",
        jobs=1,
        failed_with=repr(failed_with[:120]),
        examples_before=len(written),
        examples=n,
        duplicates=0,
        equal_to_uninterrupted=True,
    )
