"""Judge experiments in `orchestrate report` (issue 10, item 3): accuracy by model and domain,
confidence-tag counts, no-verdict counts and reasons, calls / retries / back-off, and the results
matrix across models; and a judge experiment made by the judge's own entry point."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from orchestrator.core import paths
from orchestrator.reporting.report import build, write_report
from orchestrator.reporting.results import collect
from reporting.fixtures import RATE_LIMITED, judge_experiment, sweep_experiment


@pytest.fixture
def jt(orch_home):
    judge_experiment("jt")
    return collect("jt")


def test_judge_rows_in_the_table(jt):
    rows = {(r.run, r.domain, r.metric): r for r in jt.of("judge")}
    r = rows[("big-70b__medqa", "", "accuracy")]
    assert r.arm == "big-70b" and r.task == "medqa" and r.detail == "judge-model" and r.n == 10
    assert r.value == pytest.approx(6 / 8)  # 2 items without a verdict do not count
    assert rows[("big-70b__medqa", "", "no_verdict")].value == 2
    assert rows[("big-70b__medqa", "", "retries")].value == 14 and rows[("big-70b__medqa", "", "calls")].value == 24
    assert rows[("big-70b__medqa", "", "no_verdict")].higher_is_better is False
    assert rows[("big-70b__medqa", "MED", "accuracy")].value == pytest.approx(6 / 8)
    # killed before its summary: counts from judged.jsonl, and said so
    assert rows[("tiny-1b__medqa", "", "accuracy")].value == pytest.approx(0.4)
    assert ("tiny-1b__medqa", "", "calls") not in rows
    assert any("tiny-1b__medqa/judge_summary.json: missing: counts recomputed" in w for w in jt.warnings)
    assert len(jt.judged) == 40 and sum(j.correct is None for j in jt.judged) == 2
    doc = jt.to_json()
    assert '"source": "judge"' in doc


def test_judge_section(jt):
    ctx = build(jt)["judge"]
    assert ctx["models"] == ["big-70b", "tiny-1b"] and ctx["domains"] == ["MATH", "MED"]
    pivot = {p["model"]: p for p in ctx["accuracy"]}
    assert pivot["big-70b"]["cells"] == [pytest.approx(0.8), pytest.approx(0.75)]
    assert pivot["big-70b"]["all"] == pytest.approx(14 / 18) and pivot["big-70b"]["n"] == 20
    assert pivot["tiny-1b"]["cells"] == [pytest.approx(0.4), pytest.approx(0.4)]
    tags = {(t["model"], t["domain"]): (t["cn"], t["un"], t["none"]) for t in ctx["tags"]}
    assert tags == {
        ("big-70b", "MATH"): (8, 2, 0),
        ("big-70b", "MED"): (6, 2, 2),
        ("tiny-1b", "MATH"): (4, 6, 0),
        ("tiny-1b", "MED"): (4, 6, 0),
    }
    assert ctx["no_verdict"] == 2 and ctx["n"] == 40
    assert ctx["reasons"] == [{"reason": RATE_LIMITED, "n": 2}]
    assert (ctx["calls"], ctx["retries"], ctx["backoff_s"]) == (44, 14, 12.5)
    m = ctx["matrix"]
    assert m["models"] == ["big-70b", "tiny-1b"] and m["n"] == 20
    assert m["all_correct"] + m["none_correct"] + m["disagree"] <= 20


def test_judge_report_files_and_recommendations(jt):
    report = write_report(jt)
    md = report.read_text()
    for heading in ("## Judge", "### Accuracy by model and domain", "### Confidence tags", "### Judge runs"):
        assert heading in md
    assert "| big-70b | 0.800 | 0.750 | 0.778 | 20 |" in md
    assert "| big-70b | MED | 10 | 6 | 2 | 2 | 0.750 |" in md
    assert "| big-70b__medqa | big-70b | medqa | judge-model | 10 | 6 | 2 | 2 | 0.750 | 24 | 14 | 12.5 | 30.0 |" in md
    assert f"- 2 × {RATE_LIMITED}" in md
    assert "Total: 44 call(s), 14 retries, 12.5 s of back-off." in md
    assert "Best model by the judge: big-70b (accuracy 0.778)." in md
    assert "2 of 40 judged item(s) have no verdict" in md
    assert "The judge endpoint pushed back: 14 retries over 44 calls" in md
    assert "## Inference sweep" not in md and "## Evolution" not in md
    matrix = list(csv.reader(io.StringIO((report.parent / "judge_matrix.csv").read_text())))
    assert matrix[0] == ["task", "id", "big-70b", "tiny-1b"] and len(matrix) == 21
    assert ["medqa", "medqa-3", "", "0"] in matrix  # no verdict: blank
    assert write_report(collect("jt")).read_text() == md  # deterministic


def test_cli_reports_a_judge_experiment(cli, orch_home):
    judge_experiment("jt")
    res = cli("report", "jt", "--no-refresh")
    assert res.code == 0, res.err
    assert "## Judge" in Path(res.out.strip()).read_text()


def test_judge_experiment_made_by_the_judge_itself(orch_home):
    """The rule judge over an inference sweep's predictions, then the report of the judge experiment."""
    from orchestrator.kinds.judge.job import judge_run

    sweep_experiment("sw")
    config = {"type": "exact", "domains": {"coqa": "READ", "gsm8k": "MATH"}}
    for pred in sorted(paths.experiment_dir("sw").glob(f"*/{paths.PREDICTIONS_FILE}")):
        if pred.parent.name.endswith("-rerun"):
            continue
        assert judge_run(str(paths.run_dir("jsw", pred.parent.name)), "jsw", str(pred), config) == 0
    ctx = build(collect("jsw"))["judge"]
    assert ctx["models"] == ["big-70b", "mid-7b", "tiny-1b"] and ctx["domains"] == ["MATH", "READ"]
    pivot = {p["model"]: p["all"] for p in ctx["accuracy"]}
    # the planted predictions equal the gold exactly when the inference run scored them correct
    assert pivot["big-70b"] == pytest.approx(0.8) and pivot["tiny-1b"] < pivot["mid-7b"] < pivot["big-70b"]
    assert ctx["calls"] == 0 and ctx["matrix"]["n"] == 40
