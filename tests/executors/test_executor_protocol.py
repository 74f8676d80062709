"""Executors behind one protocol (core/executor.py): one function picks the executor, each
translates the same dependencies, every job's environment names its executor, an executor core
has never heard of works through `submit`, `status` and `wait`, and nothing outside executors/
and cli/ tests an executor's name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import status_json
from orchestrator.core.errors import SpecError
from orchestrator.core.executor import (
    EXECUTORS,
    Dependency,
    Executor,
    Launched,
    Polled,
    choose_executor,
    executor_named,
    job_env,
)
from orchestrator.core.monitor import from_status
from orchestrator.core.registry import Registry
from orchestrator.core.runner import run_unit
from orchestrator.executors.local import run_refs
from orchestrator.executors.slurm import afterok

SRC = Path(__file__).resolve().parents[2] / "src" / "orchestrator"


def test_every_registered_executor_follows_the_protocol():
    for name in EXECUTORS:
        ex = executor_named(name)
        assert isinstance(ex, Executor) and ex.name == name


@pytest.fixture
def path_with(tmp_path, monkeypatch):
    """PATH holding only the given commands (fake executables), and no ORCH_EXECUTOR."""
    monkeypatch.delenv("ORCH_EXECUTOR", raising=False)

    def make(*commands: str) -> None:
        bin_dir = tmp_path / "-".join(("bin", *commands))
        bin_dir.mkdir()
        for c in commands:
            (bin_dir / c).write_text("#!/bin/sh\n")
            (bin_dir / c).chmod(0o755)
        monkeypatch.setenv("PATH", str(bin_dir))

    return make


def test_the_flag_then_orch_executor_then_sbatch_on_path(path_with, monkeypatch):
    path_with("sbatch")
    assert choose_executor().name == "slurm"
    monkeypatch.setenv("ORCH_EXECUTOR", "local")
    assert choose_executor().name == "local"
    assert choose_executor("slurm").name == "slurm"  # the flag wins
    path_with()
    monkeypatch.delenv("ORCH_EXECUTOR")
    assert choose_executor().name == "local"


def test_an_executor_that_cannot_run_here_or_does_not_exist_says_so(path_with):
    path_with()
    with pytest.raises(SpecError, match="slurm was asked for but sbatch is not on PATH; use --executor local"):
        choose_executor("slurm")
    with pytest.raises(SpecError, match="'kubernetes' is not an executor; use slurm or local"):
        choose_executor("kubernetes")


def test_one_dependency_two_translations(orch_home):
    """A whole job of this submit, and single units of earlier jobs (an array task, a job)."""
    reg = Registry()
    reg.add_job("700", "slurm", "train", "arms", "f", None, [("a", []), ("b", [])], [])
    reg.add_job("701", "slurm", "train", "prep", "f", None, [("prep", [])], [])
    arm_b, prep = (t for t in reg.tasks("train") if t.run in ("b", "prep"))
    deps = [Dependency("exp", ("x-0", "x-1"), "800"), Dependency.on(arm_b), Dependency.on(prep)]
    assert afterok(deps) == ["700_1", "701", "800"]  # sbatch --dependency=afterok:700_1:701:800
    assert run_refs(deps) == ["exp/x-0", "exp/x-1", "train/b", "train/prep"]  # polled by the local controller


def test_a_job_knows_its_executor(cli, spec_file, orch_home):
    """What a job submits (evaluate on save, `orchestrate submit` in a command) goes, by default,
    to the executor that runs it; a spec's own env.vars still win."""
    path = spec_file(
        "which",
        """\
kind: command
stages:
  main:
    run: [python, -c, "import os; open('{run_dir}/executor', 'w').write(os.environ['ORCH_EXECUTOR'])"]
    outputs: [executor]
""",
    )
    assert cli("submit", path, "--executor", "local").code == 0
    assert cli("wait", "which", "--interval", "0.2", "--timeout", "60").code == 0
    assert (orch_home / "logs" / "which" / "main" / "executor").read_text() == "local"


class InlineExecutor:
    """An executor core has never heard of: runs each unit at once, in this process."""

    name = "inline"
    submitted: list[tuple[str, list[Dependency]]] = []

    def unavailable(self) -> str | None:
        return None

    def submit(self, experiment, stage, units, script, after) -> Launched:
        self.submitted.append((stage.name, after))
        for u in units:
            run_unit(experiment, u, job_env(stage, self))
        return Launched(f"inline-{len(self.submitted)}", sorted(d.key for d in after))

    def cancel(self, ids: list[str]) -> None:
        pass

    def poll(self, tasks) -> Polled:
        return Polled({(t.job, t.task): from_status(t) for t in tasks})


def test_a_new_executor_is_one_class_and_one_line(cli, spec_file, orch_home, monkeypatch):
    monkeypatch.setitem(EXECUTORS, "inline", f"{__name__}:InlineExecutor")
    # run_unit sets ORCH_EXECUTOR in this process: setenv first, so that teardown removes it again
    # (delenv of an unset variable records nothing to undo)
    monkeypatch.setenv("ORCH_EXECUTOR", "")
    monkeypatch.delenv("ORCH_EXECUTOR")
    InlineExecutor.submitted.clear()
    path = spec_file(
        "two",
        """\
kind: command
stages:
  first: {run: [python, -c, "open('{run_dir}/a', 'w').write('A')"], outputs: [a]}
  second: {run: [python, -c, "print('{index}')"], array: [[x], [y]], after: [first]}
""",
    )
    res = cli("submit", path, "--executor", "inline")
    assert res.code == 0, res.err
    assert "experiment two (inline)" in res.out and "stage second: array of 2 inline-2, after inline-1" in res.out
    assert InlineExecutor.submitted == [("first", []), ("second", [Dependency("two", ("first",), "inline-1")])]
    assert cli("wait", "two", "--timeout", "10").code == 0
    records = status_json(cli, "two")
    assert {r["executor"] for r in records} == {"inline"}
    assert [r["progress"]["done"] for r in records] == [1, 2]


# A comparison with an executor's name: `== "slurm"`, `"local" if`, `in ("slurm", ...)`.
NAME_TEST = re.compile(
    r"""(==|!=)\s*["'](slurm|local)["']|["'](slurm|local)["']\s*(==|!=|if\b)|\bin\s*[(\[{]\s*["'](slurm|local)["']"""
)
EXECUTOR_IMPORT = re.compile(r"^\s*(from|import)\s+orchestrator\.executors\b", re.M)


def test_only_executors_and_cli_know_executor_names():
    for sample in ('if executor == "slurm":', '"slurm" if x else "local"', 'choice not in ("slurm", "local")'):
        assert NAME_TEST.search(sample), sample  # the scan would see what core/ did before
    offenders = []
    for f in sorted(SRC.rglob("*.py")):
        part = f.relative_to(SRC).parts[0]
        if part in ("executors", "cli"):
            continue
        text = f.read_text()
        offenders += [f"{f.relative_to(SRC)}: {m.group(0)}" for m in NAME_TEST.finditer(text)]
        offenders += [f"{f.relative_to(SRC)}: imports executors/" for _ in EXECUTOR_IMPORT.finditer(text)]
    assert offenders == [], json.dumps(offenders, indent=1)
