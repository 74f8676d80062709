"""Checkpoint discovery (layout + registry) and planning checkpoint × task units."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import TINY_SUITE
from orchestrator.core import paths
from orchestrator.core.errors import UserError
from orchestrator.core.registry import Registry
from orchestrator.kinds.eval.discover import discover
from orchestrator.kinds.eval.spec import EvalSpec


def running_training_unit(experiment: str, arm: str, executor: str = "local", scheduler_id: str | None = None) -> str:
    """Register an unfinished training unit, as `orchestrate submit` of a training spec would."""
    job = scheduler_id or str(os.getpid())  # a live pid: the local monitor sees it running
    Registry().add_job(
        job, executor, experiment, "train", str(paths.stage_dir(experiment, "train")), None, [(arm, [])], []
    )
    return job


def test_layout_complete_checkpoints_latest_and_best(make_experiment, tiny_model_dir):
    make_experiment("exp", {"a": [0.1, 0.5, 0.3], "b": [0.4, 0.2]})
    arm_a = paths.arm_checkpoints_dir("exp", "a")
    shutil.copytree(tiny_model_dir, arm_a / "epoch_4.tmp-123")  # being written: no meta.json, odd name
    (arm_a / "epoch_5").mkdir()  # directory created, meta.json not yet written
    (arm_a / "latest").write_text("epoch_3")
    arms = discover("exp")
    assert [c.name for c in arms["a"].checkpoints] == ["epoch_1", "epoch_2", "epoch_3"]
    assert arms["a"].latest.name == "epoch_3" and arms["a"].best.name == "epoch_2"
    assert arms["b"].latest.name == "epoch_2" and arms["b"].best.name == "epoch_1"
    assert any("epoch_5" in n for n in arms["a"].notes)
    # the training summary's best epoch wins over meta.json metrics
    summary = paths.run_dir("exp", "b") / paths.SUMMARY_FILE
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"best": {"epoch": 2, "metric": "val/reward_mean", "value": 0.2}}))
    assert discover("exp")["b"].best.name == "epoch_2"


def test_best_by_metric_reads_its_direction_from_the_scorer_registry(make_experiment):
    """Checkpoints without a trainer's best: `best_metric` picks the best, higher or lower as the
    scorer registry says (ECE: lower is better)."""
    make_experiment("exp", {"a": [0.1, 0.5, 0.3]})
    for epoch, ece in ((1, 0.02), (2, 0.5), (3, 0.1)):
        meta = paths.checkpoint_dir("exp", "a", epoch) / paths.CHECKPOINT_META
        data = json.loads(meta.read_text())
        data["metrics"]["val/ece"] = ece
        meta.write_text(json.dumps(data))
    assert discover("exp")["a"].best.name == "epoch_2"  # val/reward_mean: the highest
    assert discover("exp", best_metric="val/ece")["a"].best.name == "epoch_1"  # the lowest
    (stage,) = spec(best_metric="val/ece", tasks=["math500"]).plan()  # `final`: latest and best
    assert sorted(u.args.checkpoint for u in stage.units) == ["epoch_1", "epoch_3"]


def test_zero_checkpoints_is_an_error_naming_where_it_looked(orch_home, tiny_model_dir):
    with pytest.raises(UserError) as e:
        discover("ghost")
    assert str(orch_home / "checkpoints" / "ghost") in str(e.value) and "found 0 checkpoints" in str(e.value)
    # an arm directory holding only a half-written checkpoint is still zero
    shutil.copytree(tiny_model_dir, paths.arm_checkpoints_dir("half", "a") / "epoch_1")
    running_training_unit("half", "a")
    with pytest.raises(UserError, match=r"arms seen: a\).*still training: a \(job \d+\)"):
        discover("half")


def test_cli_zero_checkpoints_exits_2(cli, orch_home):
    res = cli("eval-evolution", "ghost", "--suite", TINY_SUITE, "--dry-run", "--executor", "local")
    assert res.code == 2 and str(orch_home / "checkpoints" / "ghost") in res.err


def test_registry_names_arms_still_training(make_experiment):
    make_experiment("exp", {"a": [0.1]})
    job = running_training_unit("exp", "b")  # arm b: training, no checkpoint yet
    arms = discover("exp")
    assert arms["a"].training is None and arms["b"].training == job and arms["b"].checkpoints == []


def spec(**kw) -> EvalSpec:
    return EvalSpec.model_validate({"experiment": "exp", "suite": str(TINY_SUITE), **kw})


def test_plan_every_checkpoint_times_every_task_skipping_existing_results(make_experiment):
    make_experiment("exp", {"a": [0.1, 0.2, 0.3], "b": [0.3, 0.1]})
    s = spec(checkpoints="all", tasks=["math500", "aime", "supergpqa"])
    (stage,) = s.plan()  # one resource shape → one array
    assert len(stage.units) == 5 * 3 and stage.after_runs == ()
    assert {u.run for u in stage.units} >= {"a__epoch_3__aime", "b__epoch_1__supergpqa"}
    unit = next(u for u in stage.units if u.run == "a__epoch_2__math500")
    assert unit.entry == "orchestrator.kinds.eval.job:evaluate_checkpoint" and unit.args.checkpoint == "epoch_2"
    # the declared output is the documented result file, relative to the unit's run dir
    assert (paths.run_dir(s.name, unit.run) / unit.outputs[0]).resolve() == paths.eval_result(
        "exp", "a", "epoch_2", "math500"
    )
    done = paths.eval_result("exp", "a", "epoch_2", "math500")
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    (stage,) = spec(checkpoints="all", tasks=["math500", "aime", "supergpqa"]).plan()
    assert len(stage.units) == 14 and "a__epoch_2__math500" not in {u.run for u in stage.units}


def test_final_plans_latest_and_best_only(make_experiment):
    make_experiment("exp", {"a": [0.1, 0.5, 0.3], "b": [0.1, 0.2]})
    (stage,) = spec(tasks=["math500"]).plan()
    assert sorted(u.run for u in stage.units) == ["a__epoch_2__math500", "a__epoch_3__math500", "b__epoch_2__math500"]


def test_one_array_per_resource_shape(make_experiment, tmp_path):
    make_experiment("exp", {"a": [0.1, 0.2]})
    suite = tmp_path / "shapes.yaml"
    suite.write_text(f"""\
base: reasoning
data_root: {TINY_SUITE.parent / "data"}
domains:
  code:
    humaneval: {{resources: {{cpus_per_task: 2}}}}
    mbpp: {{resources: {{cpus_per_task: 2}}}}
  science:
    supergpqa: {{resources: {{mem: 2G}}}}
""")
    s = EvalSpec.model_validate(
        {
            "experiment": "exp",
            "suite": str(suite),
            "checkpoints": "all",
            "tasks": ["math500", "humaneval", "mbpp", "supergpqa"],
        }
    )
    stages = s.plan()
    by_shape = {
        (st.resources.cpus_per_task, st.resources.mem): sorted(u.run.split("__")[2] for u in st.units) for st in stages
    }
    assert by_shape == {
        (1, None): ["math500", "math500"],
        (2, None): ["humaneval", "humaneval", "mbpp", "mbpp"],
        (1, "2G"): ["supergpqa", "supergpqa"],
    }
    assert len({st.name for st in stages}) == 3


def test_units_of_an_arm_still_training_wait_for_it(make_experiment):
    """Existing checkpoints run now; the checkpoints still to come (eval-evolution) and the final
    ones (eval) are evaluated by units that depend afterok on the training unit."""
    make_experiment("exp", {"a": [0.1, 0.2], "b": [0.3]})
    running_training_unit("exp", "a")
    stages = spec(checkpoints="all", tasks=["math500"]).plan()
    now, later = sorted(stages, key=lambda st: bool(st.after_runs))
    assert now.after_runs == () and sorted(u.run for u in now.units) == [
        "a__epoch_1__math500",
        "a__epoch_2__math500",
        "b__epoch_1__math500",
    ]
    assert later.after_runs == ("exp/a",) and [u.run for u in later.units] == ["a__pending__math500"]
    stages = spec(tasks=["math500"]).plan()
    deferred = next(st for st in stages if st.after_runs)
    assert [u.run for u in deferred.units] == ["a__final__math500"]


def test_slurm_dependency_is_the_training_jobs_id(make_experiment):
    """The sbatch dependency names the still-running training job (afterok), not our own."""
    from orchestrator.core.submit import Plan, dependencies
    from orchestrator.executors.local import run_refs
    from orchestrator.executors.slurm import afterok

    make_experiment("exp", {"a": [0.1]})
    running_training_unit("exp", "a")
    s = spec(checkpoints="all", tasks=["math500"])
    (task,) = Registry().tasks("exp")
    task.scheduler_id, task.executor = "4242", "slurm"  # as `submit` of a training spec on SLURM records it
    active = {"exp/a": task}
    deferred = next(st for st in s.plan() if st.after_runs)
    plan = Plan(s.name, "slurm", s.plan())
    deps = dependencies(deferred, plan, [], active)
    assert afterok(deps) == ["4242"]
    assert run_refs(deps) == ["exp/a"]  # locally: the run, watched by the waiting controller
    assert dependencies(deferred, plan, [], {}) == []  # training ended: nothing to wait for


def test_dry_run_prints_plan_and_imports_no_torch(make_experiment, orch_home):
    import subprocess
    import sys

    make_experiment("exp", {"a": [0.1, 0.2], "b": [0.3]})
    code = (
        "import sys; from orchestrator.cli import main; rc = main(sys.argv[1:]); "
        "bad = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; "
        "print('HEAVY', bad); sys.exit(rc)"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "eval-evolution",
            "exp",
            "--suite",
            str(TINY_SUITE),
            "--tasks",
            "math,code",
            "--dry-run",
            "--executor",
            "local",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ORCH_HOME": str(orch_home)},
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "a: epoch_1, epoch_2; latest epoch_2" in out.stdout
    assert "array of 18" in out.stdout and "dry run: nothing submitted" in out.stdout  # 3 ckpts × 6 tasks
    assert not (orch_home / "logs" / "exp-eval").exists()
