"""A project directory of one's own: found from anywhere below it, its specs and templates before
the built-ins, paths in a spec read from the spec's directory, inputs checked at submit."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers import FIXTURES, wait_final
from orchestrator.core import paths
from orchestrator.core.spec import load_spec

INFER = """\
kind: inference
models: [{{name: tiny, path: {model}}}]
tasks: [{{task: math, dataset: {{data_files: {data}}}}}]
device: cpu
limit: 3
batch_size: 3
wandb: {{enabled: false}}
"""


@pytest.fixture
def project(cli, tmp_path, monkeypatch):
    """`orchestrate init` of a fresh directory, entered from a folder below it, no ORCH_HOME."""
    root = tmp_path / "proj"
    assert cli("init", root).code == 0
    monkeypatch.delenv("ORCH_HOME")
    (root / "deep" / "below").mkdir(parents=True)
    monkeypatch.chdir(root / "deep" / "below")
    return root


def test_init_makes_a_project_with_an_example_per_kind(cli, tmp_path):
    root = tmp_path / "p"
    res = cli("init", root)
    assert res.code == 0, res.err
    assert (root / "orchestrate.toml").is_file() and (root / "templates").is_dir()
    assert {"logs/", "checkpoints/"} <= set((root / ".gitignore").read_text().split())
    specs = {p.stem for p in (root / "jobs").glob("*.yaml")}
    assert {"hello", "infer-tiny", "coqa-sweep", "judge-tagging", "mtl-comparison-tiny", "rag-tiny"} <= specs
    for name in specs:  # every example validates where it landed (includes and data found)
        assert load_spec(root / "jobs" / f"{name}.yaml").name == name
    again = cli("init", root)
    assert again.code == 2 and "already a project" in again.err


def test_project_is_found_from_below_and_holds_the_state(cli, project):
    assert paths.project_dir() == project and paths.home() == project
    res = cli("list")
    assert res.code == 0, res.err
    lines = {line.split()[0]: line for line in res.out.splitlines()[1:] if line.startswith("  ")}
    assert str(project / "jobs") in lines["hello"]  # the project's copy
    assert "built-in" in lines["rag-wattbot"]  # not copied: the shipped one


def test_project_config_sets_home_executor_and_resource_defaults(cli, project):
    (project / "orchestrate.toml").write_text(
        'home = "../scratch"\nexecutor = "local"\n[resources]\naccount = "grp1"\npartition = "short"\n'
    )
    assert paths.home() == (project.parent / "scratch").resolve()
    res = cli("render", "hello")
    assert res.code == 0, res.err
    assert "#SBATCH --account=grp1" in res.out and "#SBATCH --partition=short" in res.out
    res = cli("submit", "hello", "--dry-run")
    assert res.code == 0 and "experiment hello (local executor)" in res.out


def test_project_templates_and_specs_override_the_builtins(cli, project):
    shutil.copyfile(paths.BUILTIN_TEMPLATES / "sbatch.sh.j2", project / "templates" / "sbatch.sh.j2")
    with open(project / "templates" / "sbatch.sh.j2", "a") as f:
        f.write("# our group's epilogue\n")
    with open(project / "jobs" / "hello.yaml", "a") as f:
        f.write('resources: {time: "00:07:00"}\n')
    res = cli("render", "hello")
    assert res.code == 0, res.err
    assert "# our group's epilogue" in res.out and "#SBATCH --time=00:07:00" in res.out


def test_no_project_says_how_to_make_one(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("ORCH_HOME")
    monkeypatch.setattr(paths, "SOURCE_CHECKOUT", False)  # as an installed wheel is
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    res = cli("status")
    assert res.code == 2 and "orchestrate init" in res.err and "ORCH_HOME" in res.err


def test_relative_data_paths_mean_the_same_from_anywhere(orch_home, tmp_path, monkeypatch, tiny_model_path):
    spec_dir = tmp_path / "study" / "jobs"
    (spec_dir / "data").mkdir(parents=True)
    shutil.copyfile(FIXTURES / "inference" / "math.jsonl", spec_dir / "data" / "math.jsonl")
    spec_file = spec_dir / "rel.yaml"
    spec_file.write_text(INFER.format(model=tiny_model_path, data="data/math.jsonl"))
    seen = set()
    for cwd in (spec_dir, tmp_path, orch_home):
        monkeypatch.chdir(cwd)
        spec = load_spec(spec_file)
        seen.add(spec._tasks[0].dataset.data_files)
    assert seen == {str(spec_dir / "data" / "math.jsonl")}


def test_a_missing_input_file_is_refused_at_submit(cli, orch_home, tmp_path, tiny_model_path):
    spec_file = tmp_path / "missing.yaml"
    spec_file.write_text(INFER.format(model=tiny_model_path, data="data/nowhere.jsonl"))
    assert cli("submit", spec_file, "--dry-run", "--executor", "local").code == 0  # plans need no data
    res = cli("submit", spec_file, "--executor", "local")
    assert res.code == 2
    assert "tasks[0] (math).dataset.data_files" in res.err and str(tmp_path / "data" / "nowhere.jsonl") in res.err
    assert not (orch_home / "logs" / "missing").exists()  # nothing submitted


@pytest.mark.slow
def test_submitting_from_another_directory_gives_the_same_results(
    cli, orch_home, tmp_path, monkeypatch, tiny_model_path
):
    spec_dir = tmp_path / "study"
    (spec_dir / "data").mkdir(parents=True)
    shutil.copyfile(FIXTURES / "inference" / "math.jsonl", spec_dir / "data" / "math.jsonl")
    spec_file = spec_dir / "rel.yaml"
    spec_file.write_text(INFER.format(model=tiny_model_path, data="data/math.jsonl"))
    for name, cwd in (("here", spec_dir), ("there", orch_home)):
        monkeypatch.chdir(cwd)
        assert cli("submit", spec_file, "--name", name, "--executor", "local").code == 0
    results = {}
    for name in ("here", "there"):
        assert {r: t.state for r, t in wait_final(name, timeout=900).items()} == {"tiny__math": "COMPLETED"}
        preds = orch_home / "logs" / name / "tiny__math" / "predictions.jsonl"
        results[name] = [(r["id"], r["prediction"]) for r in map(json.loads, preds.read_text().splitlines())]
    assert len(results["here"]) == 3 and results["here"] == results["there"]
