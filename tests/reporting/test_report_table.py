"""The aggregator: one table with a schema, CSV/JSON export, tolerance of missing and bad files."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields

import pytest

from orchestrator.core import paths
from orchestrator.core.errors import UserError
from orchestrator.reporting.report import build, write_report
from orchestrator.reporting.results import COLUMNS, Row, collect
from reporting.fixtures import training_experiment


def test_table_holds_every_source(orch_home):
    training_experiment("mtl")
    res = collect("mtl")
    by_source = {s: [r for r in res.rows if r.source == s] for s in ("job", "train", "train_summary", "eval")}
    assert len(by_source["train_summary"]) == 2
    assert {r.epoch for r in by_source["train"] if r.arm == "baseline"} == {1, 2, 3, 4}
    assert {r.domain for r in by_source["train"] if r.metric.startswith("val/") and r.domain} == {"math", "code"}
    primary = [r for r in by_source["eval"] if r.primary]
    assert len(primary) == 2 * 3 * 4  # arms x checkpoints x tasks (the torn epoch_4 file is not one)
    assert len(res.per_example[("pcgrad", "epoch_3", "gsm8k")]) == 200
    train_jobs = {r.run: r for r in by_source["job"] if r.stage == "train"}
    assert train_jobs["baseline"].wall_hours == pytest.approx(4 * 600 / 3600)
    assert train_jobs["baseline"].device_hours == pytest.approx(2 * 4 * 600 / 3600)  # 2 GPUs in its script
    failed = [r for r in by_source["job"] if r.state == "FAILED"]
    assert [r.run for r in failed] == ["baseline__epoch_4__gsm8k"] and "CUDA out of memory" in failed[0].log_tail
    assert any("epoch_4/gsm8k.json: not valid JSON" in w for w in res.warnings)


def test_csv_and_json_exports_follow_the_schema(orch_home):
    training_experiment("mtl")
    res = collect("mtl")
    assert COLUMNS == [f.name for f in fields(Row)]
    table = list(csv.DictReader(io.StringIO(res.to_csv())))
    assert list(table[0]) == COLUMNS and len(table) == len(res.rows)
    doc = json.loads(res.to_json())
    assert doc["schema_version"] == 1 and doc["columns"] == COLUMNS and len(doc["rows"]) == len(res.rows)
    row = next(r for r in doc["rows"] if r["source"] == "eval" and r["primary"])
    assert set(row) == set(COLUMNS) and isinstance(row["value"], float)
    documented = (paths.REPO_ROOT / "docs" / "results-schema.md").read_text()
    for col in COLUMNS:
        assert f"`{col}`" in documented, f"column {col} is not documented in docs/results-schema.md"


def test_bad_files_are_reported_not_fatal(orch_home):
    training_experiment("mtl")
    metrics = paths.run_dir("mtl", "baseline") / paths.METRICS_FILE
    metrics.write_text(metrics.read_text() + '{"epoch": 5, "train/lo')  # torn last line
    (paths.run_dir("mtl", "pcgrad") / paths.SUMMARY_FILE).write_text("[1, 2]")
    bad_eval = paths.eval_result("mtl", "pcgrad", "epoch_3", "mbpp")
    bad_eval.write_text(json.dumps({"schema_version": 1, "task": "mbpp"}))
    res = collect("mtl")
    text = "\n".join(res.warnings)
    assert "logs/mtl/baseline/metrics.jsonl: 1 malformed line(s) skipped (first: line 5)" in text
    assert "logs/mtl/pcgrad/summary.json: expected a JSON object" in text
    assert "logs/mtl/eval/pcgrad/epoch_3/mbpp.json: no 'metrics' object" in text
    md = write_report(res).read_text()
    assert "## Data problems" in md and "first: line 5" in md
    assert "| mbpp |" not in md.split("## Evolution")[0].split("### Per task")[1]  # compared only where both exist


@pytest.mark.parametrize("part", ["training", "eval", "inference"])
def test_report_from_one_part_only(orch_home, part):
    """Whatever exists is reported: training only, evaluation only, inference only."""
    import shutil

    from reporting.fixtures import sweep_experiment

    if part == "inference":
        sweep_experiment("x")
        shutil.rmtree(paths.stage_dir("x", "infer"))
    else:
        training_experiment("x")
        if part == "training":
            shutil.rmtree(paths.eval_dir("x"))
        else:
            for arm in ("baseline", "pcgrad"):
                shutil.rmtree(paths.run_dir("x", arm))
    for f in paths.logs_dir().glob("registry.sqlite*"):  # no jobs either
        f.unlink()
    ctx = build(collect("x"))
    md = write_report(collect("x")).read_text()
    assert ("## Evolution" in md) == (part != "inference")
    assert (ctx["comparison"] is not None) == (part == "eval")
    assert (ctx["gradients"] is not None) == (part == "training")
    assert ("## Inference sweep" in md) == (part == "inference")
    if part == "training":  # curves from validation rewards when nothing was evaluated
        assert ctx["evolution"]["source"] == "training validation"
    assert "No jobs of this experiment are in the registry." in md


def test_unknown_and_empty_experiments(orch_home):
    with pytest.raises(UserError, match=r"unknown experiment 'nope': no directory .*logs/nope"):
        collect("nope")
    paths.experiment_dir("empty").mkdir(parents=True)
    with pytest.raises(UserError, match=r"no results for experiment 'empty': looked for training .*metrics.jsonl"):
        collect("empty")


def test_unfinished_inference_run_is_read_from_its_predictions(orch_home):
    """A run killed before summary.json: accuracy recomputed from predictions.jsonl, torn line skipped."""
    from reporting.fixtures import sweep_experiment

    sweep_experiment("s")
    run = paths.run_dir("s", "mid-7b__coqa")
    (run / paths.SUMMARY_FILE).unlink()
    preds = run / paths.PREDICTIONS_FILE
    lines = preds.read_text().splitlines()
    preds.write_text("\n".join(lines[:10]) + '\n{"id": "q10", "mod')
    res = collect("s")
    acc = next(r for r in res.rows if r.source == "inference" and r.run == "mid-7b__coqa" and r.metric == "accuracy")
    expected = [json.loads(x)["correct"] for x in lines[:10]]
    assert acc.value == pytest.approx(sum(expected) / 10) and acc.n == 10
    assert any("mid-7b__coqa/summary.json: missing: metrics recomputed" in w for w in res.warnings)
    assert any("mid-7b__coqa/predictions.jsonl: 1 malformed line(s)" in w for w in res.warnings)
    assert "mid-7b" in build(res)["inference"]["scaling"]["ranking"]
