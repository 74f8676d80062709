"""Integration tests against the real two-node test cluster (scripts/slurm-cluster.sh up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from helpers import status_json, wait_final
from orchestrator.core import monitor, paths
from orchestrator.core.registry import Registry
from orchestrator.executors import slurm

pytestmark = pytest.mark.slurm


def submit(cli, path, *extra) -> str:
    res = cli("submit", path, "--executor", "slurm", *extra)
    assert res.code == 0, res.err
    return res.out


def job_ids(experiment: str) -> list[str]:
    rows = Registry().db.execute("SELECT scheduler_id FROM jobs WHERE experiment = ? ORDER BY id", (experiment,))
    return [r[0] for r in rows]


def sacct_rows(job_id: str) -> list[list[str]]:
    """Accounting rows of our job (-S: not an older job of the same id on a cluster that restarted)."""
    (submitted,) = (
        Registry()
        .db.execute("SELECT submitted FROM jobs WHERE scheduler_id = ? ORDER BY id DESC LIMIT 1", (job_id,))
        .fetchone()
    )
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(submitted - 2))
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-S", since, "-j", job_id, "-o", "JobID,State,ExitCode,Start,End"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split("|") for line in out.splitlines() if line]


def test_one_job_and_render_equals_submitted_script(cli, spec_file, slurm_home):
    path = spec_file(
        "one",
        """\
kind: command
resources: {time: "5", mem: 200M}
env:
  vars: {GREETING: "hi there"}
stages:
  main:
    run: [python, -c, "import os; open('{run_dir}/done.txt', 'w').write(os.environ['GREETING'])"]
    outputs: [done.txt]
""",
    )
    rendered = cli("render", path).out
    submit(cli, path)
    (job,) = job_ids("one")
    in_slurm = subprocess.run(["scontrol", "write", "batch_script", job, "-"], capture_output=True, check=True).stdout
    assert in_slurm.decode() == rendered  # byte for byte
    assert paths.submission_file(paths.stage_dir("one", "main"), job).read_text() == rendered
    t = wait_final("one")["main"]
    assert t.state == "COMPLETED" and t.exit_code == 0
    assert (slurm_home / "logs" / "one" / "main" / "done.txt").read_text() == "hi there"


def test_array_of_50_is_one_sbatch_call(cli, spec_file, slurm_home):
    path = spec_file(
        "fifty",
        """\
kind: command
resources: {time: "5", mem: 100M}
array_parallelism: 50
stages:
  many:
    run: [python, -c, "import sys; open('{run_dir}/out', 'w').write(sys.argv[1])"]
    array: %s
    outputs: [out]
"""
        % json.dumps([[str(i)] for i in range(50)]),
    )
    out = submit(cli, path)
    assert "array of 50" in out
    (job,) = job_ids("fifty")  # one sbatch call, one job id
    tasks = wait_final("fifty", timeout=300)
    assert len(tasks) == 50 and {t.state for t in tasks.values()} == {"COMPLETED"}
    deadline = time.time() + 60  # accounting records arrive shortly after the controller's
    while len(rows := sacct_rows(job)) < 50 and time.time() < deadline:
        time.sleep(1)
    assert sorted(r[0] for r in rows) == sorted(f"{job}_{i}" for i in range(50))
    assert {r[1] for r in rows} == {"COMPLETED"}
    for i in range(50):
        assert (slurm_home / "logs" / "fifty" / f"many-{i}" / "out").read_text() == str(i)
    progress = status_json(cli, "fifty")[0]["progress"]
    assert progress == {"done": 50, "running": 0, "pending": 0, "failed": 0, "total": 50}


def test_status_makes_at_most_one_squeue_and_one_sacct_call(cli, spec_file, slurm_home):
    path = spec_file(
        "calls",
        """\
kind: command
resources: {time: "5", mem: 100M}
stages:
  a: {run: [sleep, "1"], array: [["x"], ["y"], ["z"]]}
  b: {run: [sleep, "1"]}
  c: {run: ["false"]}
""",
    )
    submit(cli, path)
    seen = 0
    while True:
        before = len(slurm.scheduler_calls)
        tasks = monitor.refresh(Registry(), "calls")
        calls = [c[0] for c in slurm.scheduler_calls[before:]]
        assert calls.count("squeue") <= 1 and calls.count("sacct") <= 1, calls
        seen += 1
        if all(t.final for t in tasks):
            break
        time.sleep(0.5)
    assert seen >= 1


def test_dependency_chain_runs_in_order(cli, spec_file, slurm_home):
    log = slurm_home / "order.txt"
    step = "import time, sys; time.sleep(float(sys.argv[2])); open(%r, 'a').write(sys.argv[1] + chr(10))" % str(log)
    path = spec_file(
        "chain",
        f"""\
kind: command
resources: {{time: "5", mem: 100M}}
stages:
  first: {{run: [python, -c, "{step}", first, "3"]}}
  second: {{run: [python, -c, "{step}", second, "1"], after: [first]}}
  third: {{run: [python, -c, "{step}", third, "0"], after: [second]}}
""",
    )
    submit(cli, path)
    ids = job_ids("chain")
    pending = subprocess.run(["squeue", "-h", "-j", ids[2], "-o", "%r"], capture_output=True, text=True).stdout
    assert "Dependency" in pending
    tasks = wait_final("chain")
    assert {t.state for t in tasks.values()} == {"COMPLETED"}
    assert log.read_text().split() == ["first", "second", "third"]
    deadline = time.time() + 60
    while len([r for i in ids for r in sacct_rows(i) if r[4] != "Unknown"]) < 3 and time.time() < deadline:
        time.sleep(1)
    starts = {r[0]: r[3] for i in ids for r in sacct_rows(i)}
    ends = {r[0]: r[4] for i in ids for r in sacct_rows(i)}
    assert starts[ids[1]] >= ends[ids[0]] and starts[ids[2]] >= ends[ids[1]]


def test_failed_job_reports_exit_code_and_log_tail(cli, spec_file, slurm_home):
    path = spec_file(
        "boom",
        """\
kind: command
resources: {time: "5", mem: 100M}
stages:
  main: {run: [python, -c, "import sys; print('disk full, giving up', file=sys.stderr); sys.exit(1)"]}
  later: {run: ["true"], after: [main]}
""",
    )
    submit(cli, path)
    tasks = wait_final("boom")
    assert tasks["main"].state == "FAILED" and tasks["main"].exit_code == 1
    assert tasks["later"].state == "CANCELLED"  # kill-on-invalid-dep: never pending forever
    record = status_json(cli, "boom")[0]["tasks"][0]
    assert "disk full, giving up" in record["log_tail"]
    res = cli("wait", "boom")
    assert res.code == 1 and "FAILED" in res.out


def test_success_without_declared_output_is_failed(cli, spec_file, slurm_home):
    path = spec_file(
        "noout",
        """\
kind: command
resources: {time: "5", mem: 100M}
stages:
  main: {run: ["true"], outputs: [predictions.jsonl]}
""",
    )
    submit(cli, path)
    t = wait_final("noout")["main"]
    assert t.state == "FAILED" and "predictions.jsonl" in t.reason


def test_time_limit_is_timeout(cli, spec_file, slurm_home):
    path = spec_file(
        "slow",
        """\
kind: command
resources: {time: "1", mem: 100M}
stages:
  main: {run: [sleep, "600"]}
""",
    )
    submit(cli, path)
    t = wait_final("slow", timeout=240)["main"]
    assert t.state == "TIMEOUT"


def test_cancel_experiment(cli, spec_file, slurm_home):
    path = spec_file(
        "cancelme",
        """\
kind: command
resources: {time: "5", mem: 100M}
stages:
  main: {run: [sleep, "600"], array: [["a"], ["b"]]}
""",
    )
    submit(cli, path)
    (job,) = job_ids("cancelme")
    res = cli("cancel", "cancelme")
    assert res.code == 0 and "cancelled 1 job(s), 2 unit(s)" in res.out
    tasks = wait_final("cancelme", timeout=60)
    assert {t.state for t in tasks.values()} == {"CANCELLED"}
    deadline = time.time() + 60
    while {r[1].split()[0] for r in sacct_rows(job)} != {"CANCELLED"}:
        assert time.time() < deadline, sacct_rows(job)
        time.sleep(1)


def test_two_node_job_reports_both_node_names(cli, spec_file, slurm_home):
    code = (
        "import os, json, submitit; env = submitit.JobEnvironment(); "
        "json.dump({'node': os.environ['SLURMD_NODENAME'], 'rank': env.global_rank, 'hostnames': env.hostnames}, "
        "open('{run_dir}/rank-%s.json' % env.global_rank, 'w'))"
    )
    path = spec_file(
        "twonode",
        f"""\
kind: command
resources: {{nodes: 2, tasks_per_node: 1, time: "5", mem: 100M}}
stages:
  main: {{run: [python, -c, "{code}"], outputs: [rank-0.json, rank-1.json]}}
""",
    )
    submit(cli, path)
    t = wait_final("twonode")["main"]
    assert t.state == "COMPLETED", t.reason
    ranks = [json.loads((slurm_home / "logs" / "twonode" / "main" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert sorted(r["node"] for r in ranks) == ["node1", "node2"]
    assert ranks[0]["hostnames"] == ["node1", "node2"]


def test_one_failing_task_ends_the_others(cli, spec_file, slurm_home):
    # task 1 fails at once while task 0 would wait 5 minutes (as a learner waits on a dead peer in
    # a collective): srun's --kill-on-bad-exit ends the job now, FAILED
    code = "import os, sys, time; sys.exit(3) if os.environ['SLURM_PROCID'] == '1' else time.sleep(300)"
    path = spec_file(
        "badrank",
        f"""\
kind: command
resources: {{nodes: 2, tasks_per_node: 1, time: "10", mem: 100M}}
stages:
  main: {{run: [python, -c, "{code}"]}}
""",
    )
    started = time.monotonic()
    submit(cli, path)
    t = wait_final("badrank", timeout=240)["main"]
    assert t.state == "FAILED", (t.state, t.reason)
    assert time.monotonic() - started < 200


def test_values_reach_the_job_literally(cli, spec_file, slurm_home, tmp_path):
    marker = tmp_path / "PWNED"
    path = spec_file(
        "literal",
        f"""\
kind: command
resources: {{time: "5", mem: 100M}}
env:
  vars: {{PAYLOAD: "$(touch {marker}); `touch {marker}` '"}}
stages:
  main:
    run: [python, -c, "import os, sys; open('{{run_dir}}/got', 'w').write(os.environ['PAYLOAD'] + '|' + sys.argv[1])", "; touch {marker}"]
    outputs: [got]
""",
    )
    submit(cli, path)
    assert wait_final("literal")["main"].state == "COMPLETED"
    got = (slurm_home / "logs" / "literal" / "main" / "got").read_text()
    assert got == f"$(touch {marker}); `touch {marker}` '|; touch {marker}"
    assert not marker.exists()


def test_resubmit_and_concurrent_submits_yield_one_set_of_jobs(cli, spec_file, slurm_home):
    path = spec_file(
        "once",
        """\
kind: command
resources: {time: "5", mem: 100M}
stages:
  main: {run: [sleep, "30"], array: [["a"], ["b"]]}
""",
    )
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "submit", str(path), "--executor", "slurm"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len(job_ids("once")) == 1
    assert sum("nothing to submit" in o for o, _ in outs) == 2
    assert "nothing to submit" in submit(cli, path)
    assert len(job_ids("once")) == 1
    assert "array of 2" in submit(cli, path, "--force")
    assert len(job_ids("once")) == 2
    cli("cancel", "once")


def test_sacct_unavailable_falls_back_to_status_files(cli, spec_file, slurm_home, monkeypatch):
    path = spec_file(
        "nosacct",
        """\
kind: command
resources: {time: "5", mem: 100M}
stages:
  good: {run: ["true"]}
  bad: {run: ["false"]}
""",
    )
    submit(cli, path)
    real_call = slurm._call
    monkeypatch.setattr(slurm, "_call", lambda cmd: None if cmd[0] == "sacct" else real_call(cmd))
    tasks = wait_final("nosacct")
    assert tasks["good"].state == "COMPLETED" and tasks["bad"].state == "FAILED"
    # and when the controller has forgotten the jobs too, the status files still decide
    reg = Registry()
    reg.db.execute("UPDATE tasks SET state = 'RUNNING' WHERE experiment = 'nosacct'")
    monkeypatch.setattr(slurm, "squeue", lambda ids: {})
    monkeypatch.setattr(slurm, "sacct", lambda ids: None)
    tasks = {t.run: t for t in monitor.refresh(reg, "nosacct")}
    assert tasks["good"].state == "COMPLETED" and tasks["bad"].state == "FAILED"


def test_no_scheduler_to_ask_keeps_states_open(cli, spec_file, slurm_home, monkeypatch):
    """Off the cluster (no squeue/sacct), a running job is not declared failed."""
    path = spec_file(
        "offline",
        """\
kind: command
resources: {time: "5", mem: 100M}
stages:
  main: {run: [sleep, "60"]}
""",
    )
    submit(cli, path)
    monkeypatch.setattr(slurm, "_call", lambda cmd: None)
    (t,) = monitor.refresh(Registry(), "offline")
    assert t.state in ("PENDING", "RUNNING")
    monkeypatch.undo()
    cli("cancel", "offline")


def test_logs_command_shows_job_output(cli, spec_file, slurm_home):
    path = spec_file(
        "talk",
        """\
kind: command
resources: {time: "5", mem: 100M}
stages:
  main: {run: [echo, "hello from the job"]}
""",
    )
    submit(cli, path)
    (job,) = job_ids("talk")
    res = cli("logs", job, "-f")
    assert res.code == 0 and "hello from the job" in res.out
