"""Rendering is a pure function spec → script text, checked against stored reference scripts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.core.plan import stages_of
from orchestrator.core.render import render_stage
from orchestrator.core.spec import load_spec

GOLDEN = Path(__file__).parent / "golden"
SPEC = """\
name: golden
kind: command
resources:
  partition: debug
  account: lab
  qos: normal
  nodes: 2
  tasks_per_node: 2
  cpus_per_task: 4
  gpus_per_node: 2
  mem: 64G
  time: 2-00:00:00
  constraint: a100&ib
  sbatch: {exclusive: true, mail-type: END, requeue: false}
env:
  modules: [cuda/12.1, gcc/12]
  venv: /opt/envs/my env
  vars: {HF_HOME: "/scratch/$USER/hf cache", TOKENIZERS_PARALLELISM: false, NOTE: "it's; $(x) `y`"}
  python: /opt/envs/my env/bin/python
stages:
  prepare:
    run: python prepare.py
  sweep:
    after: [prepare]
    run: [python, eval.py]
    array: [[--ckpt, "1"], [--ckpt, "2"], [--ckpt, "3"]]
    resources: {gpus_per_node: 1, nodes: 1}
array_parallelism: 2
"""


@pytest.fixture
def rendered(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_HOME", "/orch-home")
    path = tmp_path / "golden.yaml"
    path.write_text(SPEC)
    spec = load_spec(path)
    return {s.name: render_stage(spec.name, s, source=str(path)) for s in stages_of(spec)}


@pytest.mark.parametrize("stage", ["prepare", "sweep"])
def test_render_matches_reference(rendered, stage):
    reference = GOLDEN / f"command_{stage}.sh"
    if os.environ.get("ORCH_UPDATE_GOLDEN") == "1":
        reference.write_text(rendered[stage])
    assert rendered[stage] == reference.read_text(), (
        f"rendered script differs from {reference}; if the change is intended, refresh it with "
        f"ORCH_UPDATE_GOLDEN=1 pytest {__file__}"
    )


def test_render_is_pure(rendered, tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_HOME", "/orch-home")
    path = tmp_path / "golden.yaml"
    spec = load_spec(path)
    again = {s.name: render_stage(spec.name, s, source=str(path)) for s in stages_of(spec)}
    assert again == rendered
    assert not Path("/orch-home").exists()  # rendering writes nothing


def test_every_shell_value_is_quoted(rendered):
    script = rendered["sweep"]
    assert "export NOTE='it'\"'\"'s; $(x) `y`'" in script
    assert "export HF_HOME='/scratch/$USER/hf cache'" in script
    assert "source '/opt/envs/my env/bin/activate'" in script
    assert "'/opt/envs/my env/bin/python' -u -m submitit.core._submit /orch-home/logs/golden/_jobs/sweep" in script


def test_array_and_dependency_directives(rendered):
    sweep = rendered["sweep"]
    assert "#SBATCH --array=0-2%2\n" in sweep
    assert "#SBATCH --kill-on-invalid-dep=yes\n" in sweep
    assert "#SBATCH --gpus-per-node=1\n" in sweep and "#SBATCH --nodes=1\n" in sweep
    assert "%A_%a_0_log.out" in sweep
    prepare = rendered["prepare"]
    assert "--array" not in prepare and "kill-on-invalid-dep" not in prepare
    assert "#SBATCH --exclusive\n" in prepare and "#SBATCH --requeue" not in prepare  # false options are left out
    # a command does not resume: SLURM must not rerun it from the start after a node failure
    assert "#SBATCH --no-requeue\n" in prepare and "#SBATCH --no-requeue\n" in sweep
    assert "#SBATCH --time=2-00:00:00\n" in prepare


def test_units_that_resume_are_requeued_after_a_node_failure(tmp_path):
    from dataclasses import replace

    from orchestrator.core.render import directives

    path = tmp_path / "golden.yaml"
    path.write_text(SPEC)
    spec = load_spec(path)
    stage = replace(stages_of(spec)[0], checkpointable=True)
    flags = directives(spec.name, stage, 1, Path("/x"))
    assert "--requeue" in flags and "--no-requeue" not in flags
    assert any(f.startswith("--signal=USR2@") for f in flags)


def test_waiting_on_another_experiment_also_cancels_on_a_failed_dependency(tmp_path):
    """after_runs (evaluation, judge) waits afterok like `after`: a failed upstream must end it."""
    from dataclasses import replace

    from orchestrator.core.render import directives

    path = tmp_path / "golden.yaml"
    path.write_text(SPEC)
    stage = stages_of(load_spec(path))[0]
    waiting = replace(stage, after=(), after_runs=("train/arm",))
    assert "--kill-on-invalid-dep=yes" in directives("e", waiting, 1, Path("/f"))
    assert "--kill-on-invalid-dep=yes" not in directives("e", replace(waiting, after_runs=()), 1, Path("/f"))


def test_render_cli_prints_the_script(cli, tmp_path, monkeypatch):
    path = tmp_path / "golden.yaml"
    path.write_text(SPEC)
    res = cli("render", path, "--stage", "prepare")
    assert res.code == 0
    monkeypatch.setenv("ORCH_HOME", os.environ["ORCH_HOME"])
    spec = load_spec(path)
    assert res.out == render_stage("golden", stages_of(spec)[0], source=str(path))


def test_override_changes_render(cli, tmp_path):
    path = tmp_path / "golden.yaml"
    path.write_text(SPEC)
    res = cli("render", path, "--stage", "prepare", "--set", "resources.gpus_per_node=4", "--set", "resources.time=90")
    assert "#SBATCH --gpus-per-node=4\n" in res.out and "#SBATCH --time=90\n" in res.out
