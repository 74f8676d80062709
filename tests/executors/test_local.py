"""The local executor (no SLURM): what a newcomer meets first."""

from __future__ import annotations

import json
import os

from helpers import status_json, wait_final
from orchestrator.core.registry import Registry


def test_pipeline_runs_end_to_end(cli, spec_file, orch_home):
    path = spec_file(
        "pipe",
        """\
kind: command
stages:
  first:
    run: [python, -c, "import pathlib; pathlib.Path('{run_dir}/a.txt').write_text('A')"]
    outputs: [a.txt]
  second:
    after: [first]
    run: [python, -c, "import sys, pathlib; pathlib.Path('{run_dir}/out.txt').write_text(sys.argv[1] + '{index}')"]
    array: [["x"], ["y"], ["z"]]
    outputs: [out.txt]
""",
    )
    res = cli("submit", path, "--executor", "local")
    assert res.code == 0, res.err
    assert "array of 3" in res.out
    assert cli("wait", "pipe", "--interval", "0.2").code == 0
    runs = {f"second-{i}": v for i, v in enumerate("xyz")}
    for run, value in runs.items():
        assert (orch_home / "logs" / "pipe" / run / "out.txt").read_text() == value + run[-1]
    records = status_json(cli, "pipe")
    assert [r["progress"]["done"] for r in records] == [1, 3]
    # a second submit finds everything completed and submits nothing
    again = cli("submit", path, "--executor", "local")
    assert again.code == 0 and "nothing to submit" in again.out
    assert len(Registry().db.execute("SELECT * FROM jobs").fetchall()) == 2


def test_failure_is_reported_with_log_tail_and_dependents_cancelled(cli, spec_file, orch_home):
    path = spec_file(
        "fails",
        """\
kind: command
stages:
  broken:
    run: [python, -c, "import sys; print('about to fail', file=sys.stderr); sys.exit(3)"]
  after_broken:
    after: [broken]
    run: [python, -c, "open('{run_dir}/ran', 'w')"]
""",
    )
    assert cli("submit", path, "--executor", "local").code == 0
    tasks = wait_final("fails", timeout=60)
    assert tasks["broken"].state == "FAILED"
    assert tasks["after_broken"].state == "CANCELLED"
    assert tasks["after_broken"].reason == "dependency never satisfied: fails/broken ended FAILED"
    assert not (orch_home / "logs" / "fails" / "after_broken" / "ran").exists()
    records = status_json(cli, "fails")
    broken = records[0]["tasks"][0]
    assert "about to fail" in broken["log_tail"]
    assert "exited with 3" in broken["reason"]
    assert cli("wait", "fails").code == 1


def test_missing_declared_output_is_a_failure(cli, spec_file):
    path = spec_file(
        "noout",
        """\
kind: command
stages:
  main:
    run: ["true"]
    outputs: [result.json]
""",
    )
    assert cli("submit", path, "--executor", "local").code == 0
    t = wait_final("noout", timeout=60)["main"]
    assert t.state == "FAILED" and "result.json" in t.reason


def test_planted_commands_in_values_never_run(cli, spec_file, tmp_path):
    marker = tmp_path / "PWNED"
    path = spec_file(
        "literal",
        f"""\
kind: command
env:
  vars: {{PAYLOAD: "$(touch {marker}); `touch {marker}`"}}
stages:
  main:
    run: [python, -c, "import os, sys, json; json.dump([sys.argv[1:], os.environ['PAYLOAD']], open('{{run_dir}}/args.json', 'w'))",
          "; touch {marker}", "$(touch {marker})", "`touch {marker}`", "' && touch {marker} '"]
    outputs: [args.json]
""",
    )
    assert cli("submit", path, "--executor", "local").code == 0
    t = wait_final("literal", timeout=60)["main"]
    assert t.state == "COMPLETED", t.reason
    argv, payload = json.loads((tmp_path / "home" / "logs" / "literal" / "main" / "args.json").read_text())
    assert argv == [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", f"' && touch {marker} '"]
    assert payload == f"$(touch {marker}); `touch {marker}`"
    assert not marker.exists()


def test_cancel_local_experiment(cli, spec_file):
    path = spec_file(
        "sleepy",
        """\
kind: command
stages:
  nap:
    run: [sleep, "300"]
    array: [["1"], ["2"]]
""",
    )
    assert cli("submit", path, "--executor", "local").code == 0
    res = cli("cancel", "sleepy")
    assert res.code == 0 and "cancelled 1 job(s), 2 unit(s)" in res.out
    tasks = wait_final("sleepy", timeout=30)
    assert {t.state for t in tasks.values()} == {"CANCELLED"}


def test_list_shows_specs_and_experiments(cli, spec_file):
    path = spec_file("tiny", "kind: command\nstages:\n  a:\n    run: ['true']\n")
    cli("submit", path, "--executor", "local")
    res = cli("list")
    assert "hello" in res.out  # the shipped example spec
    assert "tiny" in res.out


def test_status_runs_is_a_pass_fail_table(cli, spec_file):
    path = spec_file(
        "mixed",
        """\
kind: command
stages:
  main:
    run: [python, -c, "import sys; sys.exit(int(sys.argv[1]))"]
    array: [["0"], ["4"], ["0"]]
""",
    )
    assert cli("submit", path, "--executor", "local").code == 0
    wait_final("mixed", timeout=60)
    res = cli("status", "mixed", "--runs")
    assert res.code == 0
    rows = [line for line in res.out.splitlines() if line.startswith("│ mixed")]
    assert len(rows) == 3
    assert sum("COMPLETED" in r for r in rows) == 2 and sum("FAILED" in r for r in rows) == 1
    assert "command exited with 4" in res.out
    assert "2 of 3 runs passed" in res.out


def test_stages_submitted_from_inside_a_job_run_at_lower_priority(cli, spec_file, orch_home, monkeypatch):
    """Evaluation on save: the trainer (a running local job) submits evaluations; they and their
    unit processes run niced so training keeps the cores. A user's own submit keeps its priority."""
    write_nice = ["python", "-c", "import os, pathlib; pathlib.Path('{run_dir}/nice').write_text(str(os.nice(0)))"]
    text = "kind: command\nstages:\n  one:\n    run: %s\n  many:\n    run: %s\n    array: [[a], [b]]\n" % (
        json.dumps(write_nice),
        json.dumps(write_nice),
    )
    base = os.nice(0)
    for name, inside_job, expected in (("user", False, base), ("nested", True, min(19, base + 19))):
        if inside_job:
            monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "12345")
        assert cli("submit", spec_file(name, text), "--executor", "local").code == 0
        assert all(t.state == "COMPLETED" for t in wait_final(name).values())
        for run in ("one", "many-0", "many-1"):
            assert int((orch_home / "logs" / name / run / "nice").read_text()) == expected, (name, run)
