"""squeue/sacct parsing on output recorded from the test cluster (fixtures/record.sh); no cluster.

The recording: array 2 (tasks 0-3, two at a time, task 2 exits 3), job 3 exits 1, job 4 is
cancelled, job 5 waits afterok on the array (killed when it fails), job 6 hits its time limit.
`*_running` was taken while the array ran, `*_done` after every job ended.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from orchestrator.core.states import CANCELLED, COMPLETED, FAILED, TIMEOUT, normalise
from orchestrator.executors import slurm

FIXTURES = Path(__file__).parent / "fixtures"
IDS = json.loads((FIXTURES / "ids.json").read_text())
ARRAY = IDS["array"]


def recorded(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_squeue_while_running():
    found = slurm.parse_squeue(recorded("squeue_running.txt"))
    assert set(found) == {f"{ARRAY}_{i}" for i in range(4)} | {
        IDS[k] for k in ("fail", "cancel", "dependent", "timeout")
    }
    assert found[f"{ARRAY}_0"] == ("RUNNING", "None", "node1")
    assert found[f"{ARRAY}_2"] == ("PENDING", "JobArrayTaskLimit", "")  # throttled by %2
    assert found[IDS["dependent"]] == ("PENDING", "Dependency", "")
    assert found[IDS["fail"]][0] == "FAILED" and found[IDS["cancel"]][0] == "CANCELLED"


def test_squeue_after_the_end():
    found = slurm.parse_squeue(recorded("squeue_done.txt"))
    states = {k: normalise(v[0]) for k, v in found.items()}
    assert states == {
        f"{ARRAY}_0": COMPLETED,
        f"{ARRAY}_1": COMPLETED,
        f"{ARRAY}_2": FAILED,
        f"{ARRAY}_3": COMPLETED,
        IDS["fail"]: FAILED,
        IDS["cancel"]: CANCELLED,
        IDS["dependent"]: CANCELLED,  # kill-on-invalid-dep
        IDS["timeout"]: TIMEOUT,
    }
    assert found[IDS["dependent"]][1] == "DependencyNeverSatisfied"


def test_sacct_leaves_out_array_tasks_not_started():
    found = slurm.parse_sacct(recorded("sacct_running.txt"))
    assert not any("[" in k for k in found)  # the recorded '2_[2-3%2]' line
    assert set(found) == {f"{ARRAY}_0", f"{ARRAY}_1"} | {IDS[k] for k in ("fail", "cancel", "dependent", "timeout")}
    assert found[IDS["dependent"]] == ("PENDING", 0, "")  # 'None assigned' is no node
    assert found[IDS["cancel"]] == ("CANCELLED by 0", 0, "node2")


def test_sacct_exit_codes_and_states():
    found = slurm.parse_sacct(recorded("sacct_done.txt"))
    assert found[IDS["fail"]] == ("FAILED", 1, "node2")
    assert found[f"{ARRAY}_2"] == ("FAILED", 3, "node2")  # the unit's own exit code
    assert found[f"{ARRAY}_3"] == ("COMPLETED", 0, "node1")
    assert {k: normalise(v[0]) for k, v in found.items()}[IDS["cancel"]] == CANCELLED
    assert normalise(found[IDS["timeout"]][0]) == TIMEOUT


def test_sacct_keeps_the_newest_of_a_reused_id():
    # a cluster whose job ids restarted: the same id twice in accounting, the older one first or last
    line = recorded("sacct_done.txt").splitlines()[0]
    job, state, code, nodes, submitted = line.split("|")
    older = f"{job}|COMPLETED|0:0|node1|2020-01-01T00:00:00"
    for text in (f"{older}\n{line}\n", f"{line}\n{older}\n"):
        assert slurm.parse_sacct(text)[job] == (state, int(code.split(":")[0]), nodes)


def _answer(stdout: str = "", stderr: str = "", rc: int = 0):
    return lambda cmd: subprocess.CompletedProcess(cmd, rc, stdout, stderr)


def test_squeue_of_only_forgotten_ids_is_an_empty_answer(monkeypatch):
    # squeue exits 1 with "Invalid job id specified" when no id is known: none is known, which is an answer
    rc = int(recorded("squeue_unknown.rc"))
    monkeypatch.setattr(slurm, "_call", _answer(recorded("squeue_unknown.txt"), recorded("squeue_unknown.err"), rc))
    assert rc != 0 and slurm.squeue(["999999"]) == {}


def test_scheduler_unavailable_is_no_answer(monkeypatch):
    monkeypatch.setattr(slurm, "_call", lambda cmd: None)
    assert slurm.squeue(["1"]) is None and slurm.sacct(["1"]) is None
    monkeypatch.setattr(slurm, "_call", _answer("", "slurm_load_jobs error: Unable to contact slurm controller", 1))
    assert slurm.squeue(["1"]) is None
    monkeypatch.setattr(slurm, "_call", _answer("", "Slurm accounting storage is disabled", 1))
    assert slurm.sacct(["1"]) is None


def test_query_command_lines():
    assert slurm.squeue_command(["1", "2"]) == ["squeue", "-h", "-r", "--states=all", "-j", "1,2", "-o", "%i|%T|%r|%N"]
    assert slurm.sacct_command(["1"]) == [
        "sacct",
        "-X",
        "-P",
        "-n",
        "-j",
        "1",
        "-o",
        "JobID,State,ExitCode,NodeList,Submit",
    ]
    # the recording used these very arguments
    script = recorded("record.sh")
    assert "squeue -h -r --states=all -j \"$ids\" -o '%i|%T|%r|%N'" in script
    assert 'sacct -X -P -n -j "$ids" -o JobID,State,ExitCode,NodeList,Submit' in script
