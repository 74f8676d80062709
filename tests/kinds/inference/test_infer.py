"""The inference job: result files in the documented formats, scoring, calibration, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FIXTURES, kill_at_random_points, timed_run
from orchestrator.core.files import append_jsonl
from orchestrator.core.records import ExampleRecord
from orchestrator.generation.examples import build_examples
from orchestrator.generation.models import ModelConfig
from orchestrator.generation.pipeline import read_done
from orchestrator.generation.tasks import load_task
from orchestrator.kinds.inference.job import run_inference

FIX = FIXTURES / "inference"
RECORD_KEYS = {
    "schema_version",
    "id",
    "task",
    "model",
    "domain",
    "prompt",
    "prediction",
    "gold",
    "scores",
    "correct",
    "confidence",
    "latency_s",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
}
HW_KEYS = {
    "gpu_name",
    "gpu_count",
    "gpu_memory_total_gb",
    "gpu_memory_peak_gb",
    "energy_wh",
    "power_avg_w",
    "power_peak_w",
    "model_disk_gb",
}


def args_for(model_path, task: dict, **kw) -> dict:
    return dict(
        model=ModelConfig(name="tiny", path=str(model_path)).model_dump(mode="json"),
        task=load_task(task).model_dump(mode="json"),
        batch_size=kw.pop("batch_size", 4),
        wandb=kw.pop("wandb", {"enabled": False}),
        **kw,
    )


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_coqa_run_writes_the_documented_files(tmp_path, tiny_model_path, orch_home):
    a = args_for(tiny_model_path, {"task": "coqa", "dataset": {"data_files": str(FIX / "coqa-dev.json")}})
    assert run_inference(run_dir=str(tmp_path / "run"), experiment="e", **a) == 0
    preds = lines(tmp_path / "run" / "predictions.jsonl")
    assert [p["id"] for p in preds] == [f"3dr23u6we5exclen4th8uq9rb42tel_{t}" for t in (1, 2, 3)] + [
        f"3azhrg4cu4ktme1zh7c2ro3pn2430d_{t}" for t in (1, 2, 3, 4)
    ]
    assert all(set(p) == RECORD_KEYS for p in preds)
    first, second = preds[0], preds[1]
    assert first["gold"] == ["white", "white", "white", "a little white"]  # main + additional answers
    assert "Q: What color was Cotton?\nA: white\nQ: Where did she live?\nA:" in second["prompt"]  # history
    # both stories are in-domain (mctest, cnn): each turn also scores under CoQA's official split
    assert set(first["scores"]) == {"em", "f1", "em_in_domain", "f1_in_domain"}
    assert first["confidence"]["mean"] is not None
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["schema_version"] == 1 and results["examples"] == preds and "model" in results["config"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n"] == 7 and summary["model"] == "tiny" and summary["task"] == "coqa"
    assert set(summary["metrics"]) == {"em", "f1", "em_in_domain", "f1_in_domain"}
    assert summary["metrics"]["f1_in_domain"] == summary["metrics"]["f1"]  # every turn is in-domain
    assert set(summary["calibration"]) == {"auroc", "ece"}
    assert set(summary["hardware"]) == HW_KEYS and summary["hardware"]["gpu_name"] is None  # no GPU here
    assert summary["hardware"]["model_disk_gb"] > 0
    assert summary["throughput_tokens_per_s"] > 0 and summary["load_time_s"] > 0 and summary["wall_time_s"] > 0
    # official prediction list as CSV: story id, turn id, answer
    csv_lines = (tmp_path / "run" / "predictions.csv").read_text().splitlines()
    assert csv_lines[0] == "id,turn_id,answer" and csv_lines[1].startswith("3dr23u6we5exclen4th8uq9rb42tel,1,")


@pytest.mark.parametrize(
    "task,file,metrics,n",
    [
        ("boolq", "boolq.jsonl", {"accuracy"}, 6),
        ("medqa", "medqa.jsonl", {"accuracy"}, 3),
        ("math", "math.jsonl", {"accuracy"}, 3),
        ("qa", "qa.jsonl", {"em", "f1"}, 4),
    ],
)
def test_task_formats(tmp_path, tiny_model_path, orch_home, task, file, metrics, n):
    # short generations keep the test fast; the task's own budget (128/256/512) is checked below
    a = args_for(
        tiny_model_path,
        {"task": task, "dataset": {"data_files": str(FIX / file)}, "generation": {"max_new_tokens": 12}},
        limit=n,
    )
    assert load_task(task).generation.max_new_tokens == {"boolq": 128, "medqa": 256, "math": 512, "qa": 32}[task]
    run_inference(run_dir=str(tmp_path), experiment="e", **a)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n"] == n and set(summary["metrics"]) == metrics
    preds = lines(tmp_path / "predictions.jsonl")
    assert all(p["correct"] is not None and p["completion_tokens"] >= 1 for p in preds)
    if task == "medqa":
        assert "D. Nitrofurantoin" in preds[0]["prompt"] and preds[0]["gold"] == "D"
    if task == "math":
        assert preds[0]["id"] == "test/prealgebra/1.json" and preds[0]["gold"] == "2"


def test_calibration_auroc_equals_sklearn(tmp_path, tiny_model_path, orch_home):
    from sklearn.metrics import roc_auc_score

    rows = [
        {"question": f"question number {i}" + "?" * (i % 5), "answer": i % 2 == 0, "passage": "p" * (i % 7)}
        for i in range(16)
    ]
    data = tmp_path / "boolq.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = args_for(
        tiny_model_path,
        {
            "task": "boolq",
            "dataset": {"data_files": str(data)},
            "scorer": "scorers_for_tests:gold_label",
            "generation": {"max_new_tokens": 9},
        },
    )
    run_inference(run_dir=str(tmp_path / "r"), experiment="e", **a)
    recs = json.loads((tmp_path / "r" / "results.json").read_text())["examples"]
    correct = [r["correct"] for r in recs]
    assert 0 < sum(correct) < len(correct), "need both classes"
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    expected = roc_auc_score(correct, [r["confidence"]["mean"] for r in recs])
    assert summary["calibration"]["auroc"] == pytest.approx(expected, abs=1e-12)
    assert 0 <= summary["calibration"]["ece"] <= 1


def test_limit_and_smoke_are_seeded_samples(tmp_path, tiny_model_path, orch_home):
    task = load_task({"task": "qa", "dataset": {"data_files": str(FIX / "qa.jsonl")}})
    a, b = build_examples(task, limit=2, seed=1), build_examples(task, limit=2, seed=1)
    assert [x["id"] for x in a] == [x["id"] for x in b] and len(a) == 2
    seeds = {tuple(x["id"] for x in build_examples(task, limit=2, seed=s)) for s in range(8)}
    assert len(seeds) > 1  # the seed matters
    assert len(build_examples(task, smoke=True)) == 1


def test_torn_last_line_is_cut_and_resume_appends_cleanly(tmp_path):
    p = tmp_path / "predictions.jsonl"

    def rec(i: str) -> dict:
        return ExampleRecord(id=i, task="t", model="m", prompt="p", prediction=i).dump()

    append_jsonl(p, [rec("a"), rec("b")])
    with open(p, "ab") as f:
        f.write(b'{"id": "c", "x"')  # a kill mid-write
    assert list(read_done(p)) == ["a", "b"]
    append_jsonl(p, [rec("c")])
    assert [r["id"] for r in lines(p)] == ["a", "b", "c"]


RUN_FROM_FILE = (
    "import json, sys; from orchestrator.kinds.inference.job import run_inference; "
    "sys.exit(run_inference(**json.load(open(sys.argv[1]))))"
)


def _infer_process(args_file: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    return subprocess.Popen(
        [sys.executable, "-c", RUN_FROM_FILE, str(args_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_sigkill_at_ten_random_points_then_resume_equals_uninterrupted(tmp_path, tiny_model_path, orch_home):
    """The in-job runner SIGKILLed at 10 random points (seeded): start-up, mid-batch, between
    batches. The resumed file has every example once, equal to an uninterrupted run."""
    n = 80
    rows = [
        {"id": f"q{i}", "question": f"what is item {i}?", "context": "c" * (i % 17), "answers": [f"item {i}"]}
        for i in range(n)
    ]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {"task": "qa", "dataset": {"data_files": str(data)}, "generation": {"max_new_tokens": 24, "stop": []}}

    def args_file(run_dir: Path) -> Path:
        f = tmp_path / f"{run_dir.name}.json"
        f.write_text(
            json.dumps({"run_dir": str(run_dir), "experiment": "e", **args_for(tiny_model_path, task, batch_size=2)})
        )
        return f

    ref_dir, kill_dir = tmp_path / "reference", tmp_path / "killed"
    startup_s, batch_s = timed_run(lambda: _infer_process(args_file(ref_dir)), ref_dir / "predictions.jsonl", n // 2)
    reference = {r["id"]: r for r in lines(ref_dir / "predictions.jsonl")}
    assert len(reference) == n

    pred = kill_dir / "predictions.jsonl"
    kills = kill_at_random_points(
        lambda: _infer_process(args_file(kill_dir)), pred, 10, seed=7, startup_s=startup_s, batch_s=batch_s
    )
    assert len(kills) == 10 and all(at < n for _, at in kills)
    assert any(at == before for before, at in kills) and any(at > before for before, at in kills)
    assert not (kill_dir / "summary.json").exists()
    kept = pred.read_bytes()
    assert _infer_process(args_file(kill_dir)).wait(timeout=300) == 0
    assert pred.read_bytes().startswith(kept[: kept.rfind(b"\n") + 1])  # kept, not generated again

    resumed = lines(pred)
    ids = [r["id"] for r in resumed]
    assert len(ids) == len(set(ids)) == n  # none missing, none twice
    for r in resumed:
        ref = reference[r["id"]]
        assert (r["prediction"], r["scores"], r["correct"], r["completion_tokens"]) == (
            ref["prediction"],
            ref["scores"],
            ref["correct"],
            ref["completion_tokens"],
        )
        assert r["confidence"]["mean"] == pytest.approx(ref["confidence"]["mean"], rel=1e-6)
    summary = json.loads((kill_dir / "summary.json").read_text())
    ref_summary = json.loads((ref_dir / "summary.json").read_text())
    assert summary["n"] == n and summary["metrics"] == ref_summary["metrics"]
    assert [r["id"] for r in json.loads((kill_dir / "results.json").read_text())["examples"]] == [
        f"q{i}" for i in range(n)
    ]
