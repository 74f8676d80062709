"""Inference-sweep sections: model comparison, results matrix, ensembles, audit, scaling files."""

from __future__ import annotations

import csv
import io
import json

import pytest

from orchestrator.kinds.inference.sweep import ensemble_table, vote
from orchestrator.reporting.report import build, write_report
from orchestrator.reporting.results import Example, collect
from reporting.fixtures import MODELS, N_QUESTIONS, sweep_experiment


@pytest.fixture
def sweep(orch_home):
    sweep_experiment("sweep")
    return collect("sweep")


def ex(
    model: str, prediction: str | None, correct: bool | None, confidence: float | None = None, qid: str = "q"
) -> Example:
    return Example(
        run=f"{model}__t",
        model=model,
        task="t",
        domain="",
        id=qid,
        prediction=prediction,
        correct=correct,
        confidence=confidence,
        latency_s=0.1,
        prompt_tokens=1,
        completion_tokens=1,
        finish_reason="stop",
    )


def test_voting_strategies():
    ranking = ["a", "b", "c", "d"]
    q = {
        "a": ex("a", "  ", None),
        "b": ex("b", "Paris", False, 0.2),
        "c": ex("c", "the paris!", True, 0.9),
        "d": ex("d", "Lyon", False, 0.95),
    }
    assert vote(q, ranking, "first_non_blank").model == "b"  # a is blank
    assert vote(q, ranking, "majority").model == "b"  # "paris" x2 (normalised) beats "lyon"; b ranks first in it
    assert vote(q, ranking, "confidence").model == "d"
    tie = {"a": ex("a", "x", True), "b": ex("b", "y", False)}
    assert vote(tie, ["b", "a"], "majority").model == "b"  # tie → the better-ranked model's answer
    assert vote(tie, ["b", "a"], "confidence").model == "b"  # no confidences → first_non_blank
    assert vote({"a": ex("a", None, False)}, ["a"], "majority") is None
    with pytest.raises(ValueError, match="unknown voting strategy"):
        vote(tie, ["a", "b"], "mean")


def test_ensemble_accuracy_per_task():
    examples = []
    for i in range(4):  # a right on q0,q1; b right on q2; c right on q0,q2,q3 with high confidence
        examples += [
            ex("a", "ok" if i < 2 else f"a{i}", i < 2, 0.5, f"q{i}"),
            ex("b", "ok" if i == 2 else f"b{i}", i == 2, 0.1, f"q{i}"),
            ex("c", "ok" if i != 1 else "c1", i != 1, 0.9 if i != 1 else 0.2, f"q{i}"),
        ]
    (task, overall) = ensemble_table(examples, ["c", "a", "b"])
    assert task == overall | {"task": "t"}
    assert task["best_model"] == "c" and task["best"] == 0.75
    assert task["first_non_blank"] == 0.75 and task["confidence"] == 1.0  # q1: a (0.5) beats c (0.2)
    assert task["majority"] == 0.75  # q1: three different answers → c, the best-ranked, is wrong
    assert task["gain"] == pytest.approx(0.25)


def test_model_comparison_and_ranking(sweep):
    inf = build(sweep)["inference"]
    assert inf["models"] == ["tiny-1b", "mid-7b", "big-70b"]  # by size
    assert inf["scaling"]["ranking"] == ["big-70b", "mid-7b", "tiny-1b"]
    assert {"em", "f1", "auroc", "ece"} <= set(inf["columns"])
    big_coqa = next(r for r in inf["table"] if r["model"] == "big-70b" and r["task"] == "coqa")
    assert big_coqa["n"] == N_QUESTIONS  # the complete run, not its 5-example duplicate


def test_results_matrix_csv(sweep, orch_home):
    out = write_report(sweep).parent
    rows = list(csv.reader(io.StringIO((out / "results_matrix.csv").read_text())))
    assert rows[0] == ["task", "id", "tiny-1b", "mid-7b", "big-70b"]
    assert len(rows) == 1 + 2 * N_QUESTIONS
    recs = {
        (json.loads(line)["id"]): json.loads(line)
        for line in (orch_home / "logs/sweep/tiny-1b__coqa/predictions.jsonl").read_text().splitlines()
    }
    for task, qid, tiny, *_ in rows[1:]:
        if task == "coqa":
            assert tiny == str(int(recs[qid]["correct"]))


def test_audit_finds_what_was_planted(sweep):
    audit = build(sweep)["inference"]["audit"]
    rows = {r["run"]: r for r in audit["rows"]}
    tiny = rows["tiny-1b__coqa"]
    assert (tiny["missing_prompt_tokens"], tiny["missing_completion_tokens"], tiny["errors"]) == (3, 3, 1)
    assert tiny["error_rate"] == pytest.approx(1 / N_QUESTIONS)
    mid = rows["mid-7b__gsm8k"]
    assert (mid["high_latency"], mid["duplicate_ids"]) == (1, 1)
    clean = rows["mid-7b__coqa"]
    assert (clean["high_latency"], clean["duplicate_ids"], clean["errors"], clean["missing_prompt_tokens"]) == (
        0,
        0,
        0,
        0,
    )
    assert audit["duplicate_runs"] == [
        {"model": "big-70b", "task": "coqa", "runs": "big-70b__coqa, big-70b__coqa-rerun"}
    ]
    assert [(f["run"], f["exit_code"]) for f in audit["failed_jobs"]] == [("big-70b__gsm8k", 137)]
    assert audit["flagged"] == 2


def test_scaling_files_and_plots(sweep):
    out = write_report(sweep).parent
    table = list(csv.DictReader(io.StringIO((out / "scaling.csv").read_text())))
    assert [r["model"] for r in table] == list(MODELS) and float(table[2]["params_b"]) == 70.0
    assert float(table[2]["score"]) == pytest.approx(0.8) and float(table[0]["energy_wh"]) == pytest.approx(3.0)
    doc = json.loads((out / "scaling.json").read_text())
    assert doc[1]["model"] == "mid-7b" and set(doc[1]["scores"]) == {"coqa", "gsm8k"}
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == ["energy.png", "latency.png", "ranking.png", "size_vs_score.png"]
    md = (out / "report.md").read_text()
    for p in plots:
        assert f"](plots/{p})" in md
    for heading in ("### Model comparison", "### Overall ranking", "### Results matrix", "### Ensembles", "### Audit"):
        assert f"\n{heading}\n" in md
