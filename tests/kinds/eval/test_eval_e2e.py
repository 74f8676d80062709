"""eval-evolution end to end on a fixture experiment: tiny-model checkpoints, a training arm
still running (it writes one more checkpoint, then ends), locally and on the test cluster."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import TINY_SUITE
from helpers import wait_final
from orchestrator.core import paths
from orchestrator.core.registry import Registry

RESULT_KEYS = {
    "schema_version",
    "config",
    "experiment",
    "arm",
    "checkpoint",
    "epoch",
    "domain",
    "task",
    "n",
    "metrics",
    "primary_metric",
    "higher_is_better",
    "per_example",
}


def shapes_suite(tmp_path):
    """The tiny suite with mbpp asking for 2 CPUs: two resource shapes."""
    path = tmp_path / "shapes.yaml"
    path.write_text(
        f"base: reasoning\ndata_root: {TINY_SUITE.parent / 'data'}\n"
        "domains: {code: {mbpp: {resources: {cpus_per_task: 2}}}}\n"
        "override: {max_tokens: 8, samples: 1}\n"
    )
    return path


def training_spec(spec_file, tiny_model_dir, seconds: int):
    """Arm `a` of experiment `exp` still training: after `seconds` it writes epoch_2, then ends."""
    dst = paths.checkpoint_dir("exp", "a", 2)
    code = (
        f"import json, shutil, time; time.sleep({seconds}); shutil.copytree({str(tiny_model_dir)!r}, {str(dst)!r}); "
        f"open({str(dst / 'meta.json')!r}, 'w').write(json.dumps({{'epoch': 2, 'step': 20, 'metrics': {{}}, 'config': {{}}}})); "
        f"open({str(dst.parent / 'latest')!r}, 'w').write('epoch_2')"
    )
    return spec_file(
        "exp",
        f"""\
kind: command
resources: {{time: "10", mem: 300M}}
stages:
  a:
    run: [python, -c, {json.dumps(code)}]
""",
    )


def check_results(expected: set[tuple[str, str, str]]) -> dict:
    found = {}
    for arm, ckpt, task in expected:
        data = json.loads(paths.eval_result("exp", arm, ckpt, task).read_text())
        assert RESULT_KEYS <= set(data), sorted(RESULT_KEYS - set(data))
        assert (data["arm"], data["checkpoint"], data["task"], data["epoch"]) == (
            arm,
            ckpt,
            task,
            int(ckpt.split("_")[1]),
        )
        assert (
            data["n"] == 1
            and len(data["per_example"]) == 1
            and {"id", "correct", "score"} <= set(data["per_example"][0])
        )
        assert 0.0 <= data["metrics"][data["primary_metric"]] <= 1.0
        assert data["config"]["checkpoint_path"] == str(paths.checkpoint_dir("exp", arm, int(ckpt.split("_")[1])))
        found[(arm, ckpt, task)] = data
    on_disk = {
        tuple(p.relative_to(paths.experiment_dir("exp") / "eval").with_suffix("").parts)
        for p in (paths.experiment_dir("exp") / "eval").rglob("*.json")
    }
    assert on_disk == expected
    return found


def run_fixture(cli, spec_file, tmp_path, make_experiment, tiny_model_dir, executor: str):
    make_experiment("exp", {"a": [0.1], "b": [0.3]})
    train = cli(
        "submit", training_spec(spec_file, tiny_model_dir, 20 if executor == "slurm" else 8), "--executor", executor
    )
    assert train.code == 0, train.err
    (train_job,) = [r[0] for r in Registry().db.execute("SELECT scheduler_id FROM jobs WHERE experiment='exp'")]
    res = cli(
        "eval-evolution",
        "exp",
        "--suite",
        shapes_suite(tmp_path),
        "--tasks",
        "math500,mbpp",
        "--limit",
        "1",
        "--executor",
        executor,
        "--set",
        "array_parallelism=2",
        "--set",
        "resources.mem=1G",
        "--set",
        "resources.time=15",
    )
    assert res.code == 0, res.err
    assert f"a: epoch_1; latest epoch_1; best epoch_1; training as job {train_job}" in res.out
    jobs = (
        Registry()
        .db.execute("SELECT scheduler_id, stage, n_tasks, depends_on FROM jobs WHERE experiment='exp-eval'")
        .fetchall()
    )
    # one sbatch call per resource shape, and per shape once more for the units waiting on training
    wait_on = train_job if executor == "slurm" else "exp/a"  # locally: the run, watched by the waiting job
    assert sorted((n, dep) for _, _, n, dep in jobs) == [(1, wait_on), (1, wait_on), (2, ""), (2, "")]
    assert len({stage for _, stage, _, _ in jobs}) == 4
    tasks = wait_final("exp-eval", timeout=900)
    assert {t.state for t in tasks.values()} == {"COMPLETED"}, [(t.run, t.state, t.reason) for t in tasks.values()]
    assert wait_final("exp")["a"].state == "COMPLETED"
    expected = {
        (arm, ckpt, task)
        for arm, ckpt in (("a", "epoch_1"), ("a", "epoch_2"), ("b", "epoch_1"))
        for task in ("math500", "mbpp")
    }
    results = check_results(expected)
    # the checkpoint training wrote later was evaluated after training ended
    train_end = json.loads(paths.status_file("exp", "a").read_text())["ended"]
    assert json.loads(paths.status_file("exp-eval", "a__pending__mbpp").read_text())["started"] >= train_end - 1
    assert results[("a", "epoch_2", "mbpp")]["metrics"].keys() >= {"pass@1"}
    # again: everything exists, nothing is submitted
    again = cli(
        "eval-evolution", "exp", "--suite", shapes_suite(tmp_path), "--tasks", "math500,mbpp", "--executor", executor
    )
    assert again.code == 0 and "nothing to submit" in again.out and "6 unit(s) skipped, result exists" in again.out
    return train_job


@pytest.mark.slow
def test_eval_evolution_local(cli, spec_file, tmp_path, make_experiment, tiny_model_dir):
    run_fixture(cli, spec_file, tmp_path, make_experiment, tiny_model_dir, "local")
    # `eval` (latest and best) finds its results among those of eval-evolution
    res = cli("eval", "exp", "--suite", shapes_suite(tmp_path), "--tasks", "math500", "--executor", "local")
    assert res.code == 0 and "nothing to submit" in res.out and "a: epoch_1, epoch_2; latest epoch_2" in res.out


@pytest.mark.slow
@pytest.mark.slurm
def test_eval_evolution_slurm(cli, spec_file, tmp_path, make_experiment, tiny_model_dir, slurm_home):
    train_job = run_fixture(cli, spec_file, tmp_path, make_experiment, tiny_model_dir, "slurm")
    jobs = Registry().db.execute("SELECT scheduler_id, depends_on FROM jobs WHERE experiment='exp-eval'").fetchall()
    for job, _dep in jobs:  # what SLURM itself recorded: arrays, and afterok on the training job
        out = subprocess.run(
            ["sacct", "-X", "-P", "-n", "-j", job, "-o", "JobID,State"], capture_output=True, text=True
        ).stdout.split()
        assert out and all(line.split("|")[1] == "COMPLETED" for line in out), out
    waiting = [job for job, dep in jobs if dep == train_job]  # sbatch --dependency=afterok:<train_job>
    assert len(waiting) == 2
    for job in waiting:
        start = subprocess.run(
            ["sacct", "-X", "-P", "-n", "-j", job, "-o", "Start"], capture_output=True, text=True
        ).stdout.split()[0]
        end = subprocess.run(
            ["sacct", "-X", "-P", "-n", "-j", train_job, "-o", "End"], capture_output=True, text=True
        ).stdout.split()[0]
        assert time.strptime(start, "%Y-%m-%dT%H:%M:%S") >= time.strptime(end, "%Y-%m-%dT%H:%M:%S")
