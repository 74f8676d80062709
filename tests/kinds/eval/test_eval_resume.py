"""Evaluation resumes like inference: per-example records appended per batch to <task>.jsonl, a
killed run picks up where it stopped (none lost, none twice, finished examples not generated
again) and ends with the result an uninterrupted run writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import kill_at_random_points, timed_run
from orchestrator.core import paths
from orchestrator.generation.backends.base import Generation
from orchestrator.kinds.eval import job as eval_job

N = 11  # examples: batches of 2 leave a short last batch
LONG = 121  # for ten kills with the real model (its batches take milliseconds)


def write_suite(tmp_path: Path, samples: int = 1, n: int = N) -> Path:
    data = tmp_path / "data" / "arith.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(
        "".join(json.dumps({"id": f"q{i}", "question": f"{i} + 1", "answer": str(i + 1)}) + "\n" for i in range(n))
    )
    suite = tmp_path / "resume.yaml"
    suite.write_text(
        f"name: resume\ndata_root: data\ndomains:\n  arithmetic:\n    add:\n      data: arith.jsonl\n"
        f"      prompt: 'What is {{{{ question }}}}? Answer:'\n      scorer: exact\n      max_tokens: 6\n"
        f"      samples: {samples}\n"
    )
    return suite


def unit_args(experiment: str, suite: Path, **kw) -> dict:
    return dict(
        run_dir=str(paths.run_dir(f"{experiment}-eval", paths.eval_run("a", "epoch_1", "add"))),
        experiment=f"{experiment}-eval",
        train_experiment=experiment,
        arm="a",
        checkpoint="epoch_1",
        task="add",
        suite=str(suite),
        batch_size=2,
        **kw,
    )


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


class FakeBackend:
    """Answers from the prompt (every third one wrong); records what it was asked; optionally
    stops the process-like run after `crash_after` batches (an exception mid-run)."""

    asked: list[str] = []

    def __init__(self, crash_after: int | None = None):
        self.crash_after, self.batches = crash_after, 0

    def generate(self, requests):
        if self.crash_after is not None and self.batches == self.crash_after:
            raise KeyboardInterrupt("killed")
        self.batches += 1
        out = []
        for r in requests:
            FakeBackend.asked.append(r.id)
            n = int(r.prompt.split("What is ")[1].split(" +")[0])
            answer = n + 1 if n % 3 else n
            out.append(Generation(r.id, f"Answer: {answer}", [-0.1, -0.2], 5, 2, "stop"))
        return out

    def close(self):
        pass


def test_interrupted_evaluation_resumes_without_recomputing(tmp_path, make_experiment, monkeypatch):
    suite = write_suite(tmp_path, samples=2)
    make_experiment("ref", {"a": [0.1]})
    make_experiment("exp", {"a": [0.1]})
    FakeBackend.asked = []
    monkeypatch.setattr(eval_job, "load_backend", lambda *a, **k: FakeBackend())
    assert eval_job.evaluate_checkpoint(**unit_args("ref", suite)) == 0
    reference = json.loads(paths.eval_result("ref", "a", "epoch_1", "add").read_text())
    assert reference["n"] == N and reference["metrics"]["accuracy"] == pytest.approx(7 / 11)

    FakeBackend.asked = []
    monkeypatch.setattr(eval_job, "load_backend", lambda *a, **k: FakeBackend(crash_after=3))
    with pytest.raises(KeyboardInterrupt):
        eval_job.evaluate_checkpoint(**unit_args("exp", suite))
    predictions = paths.eval_predictions("exp", "a", "epoch_1", "add")
    assert len(lines(predictions)) == 6 and not paths.eval_result("exp", "a", "epoch_1", "add").exists()
    with open(predictions, "ab") as f:
        f.write(b'{"id": "q6", "pred')  # a kill in the middle of the next batch's write
    before = predictions.read_bytes()[: before_torn(predictions)]

    FakeBackend.asked = []
    monkeypatch.setattr(eval_job, "load_backend", lambda *a, **k: FakeBackend())
    assert eval_job.evaluate_checkpoint(**unit_args("exp", suite)) == 0
    assert FakeBackend.asked == [f"q{i}#{k}" for i in range(6, N) for k in range(2)]  # only what was missing
    assert predictions.read_bytes().startswith(before)  # finished records untouched
    records = lines(predictions)
    assert [r["id"] for r in records] == [f"q{i}" for i in range(N)]
    assert all(len(r["samples"]) == 2 for r in records)
    result = json.loads(paths.eval_result("exp", "a", "epoch_1", "add").read_text())
    for key in ("n", "metrics", "primary_metric", "per_example", "samples", "domain", "task"):
        assert result[key] == reference[key], key

    # all done: a rerun only rewrites the result, the backend is not even opened
    monkeypatch.setattr(eval_job, "load_backend", lambda *a, **k: pytest.fail("backend opened with nothing to do"))
    assert eval_job.evaluate_checkpoint(**unit_args("exp", suite)) == 0
    assert lines(predictions) == records


def before_torn(path: Path) -> int:
    data = path.read_bytes()
    return data.rfind(b"\n") + 1


RUN_FROM_FILE = (
    "import json, sys; from orchestrator.kinds.eval.job import evaluate_checkpoint; "
    "sys.exit(evaluate_checkpoint(**json.load(open(sys.argv[1]))))"
)


def _eval_process(args_file: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_FROM_FILE, str(args_file)],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_sigkill_at_ten_random_points_then_resume_equals_uninterrupted(tmp_path, make_experiment):
    """The real tiny model in a subprocess, SIGKILLed at 10 random points (seeded): start-up,
    mid-batch, between batches. The resumed file has every example once, as the uninterrupted run."""
    suite = write_suite(tmp_path, n=LONG)
    make_experiment("ref", {"a": [0.1]})
    make_experiment("exp", {"a": [0.1]})

    def args_file(experiment: str) -> Path:
        f = tmp_path / f"{experiment}.json"
        f.write_text(json.dumps(unit_args(experiment, suite)))
        return f

    ref_pred = paths.eval_predictions("ref", "a", "epoch_1", "add")
    startup_s, batch_s = timed_run(lambda: _eval_process(args_file("ref")), ref_pred, batches=(LONG + 1) // 2)
    ref_records = {r["id"]: r for r in lines(ref_pred)}
    reference = json.loads(paths.eval_result("ref", "a", "epoch_1", "add").read_text())
    assert len(ref_records) == LONG

    pred = paths.eval_predictions("exp", "a", "epoch_1", "add")
    kills = kill_at_random_points(
        lambda: _eval_process(args_file("exp")), pred, 10, seed=11, startup_s=startup_s, batch_s=batch_s
    )
    assert len(kills) == 10 and all(at < LONG for _, at in kills)
    assert not paths.eval_result("exp", "a", "epoch_1", "add").exists()
    kept = pred.read_bytes()
    kept = kept[: kept.rfind(b"\n") + 1]
    assert _eval_process(args_file("exp")).wait(timeout=300) == 0

    resumed = lines(pred)
    assert pred.read_bytes().startswith(kept)  # what was on disk is kept, not generated again
    ids = [r["id"] for r in resumed]
    assert len(ids) == len(set(ids)) == LONG  # none missing, none twice
    for r in resumed:
        ref = ref_records[r["id"]]
        assert (r["prediction"], r["scores"], r["correct"], r["completion_tokens"]) == (
            ref["prediction"],
            ref["scores"],
            ref["correct"],
            ref["completion_tokens"],
        )
    result = json.loads(paths.eval_result("exp", "a", "epoch_1", "add").read_text())
    for key in ("n", "metrics", "primary_metric", "per_example"):
        assert result[key] == reference[key], key


def test_result_direction_is_the_task_scorers(tmp_path, make_experiment, monkeypatch):
    """A result's higher_is_better is its task scorer's, from the scorer registry (a user scorer
    declares it), never assumed."""
    (tmp_path / "lowscorer.py").write_text(
        "def distance(prediction, gold):\n"
        "    return abs(float(prediction.split()[-1]) - float(gold))\n"
        "distance.higher_is_better = False\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    suite = write_suite(tmp_path)
    make_experiment("exp", {"a": [0.1]})
    monkeypatch.setattr(eval_job, "load_backend", lambda *a, **k: FakeBackend())
    results = {}
    for scorer in ("exact", "lowscorer:distance"):
        suite.write_text(suite.read_text().replace("scorer: exact", f"scorer: {scorer}"))
        assert eval_job.evaluate_checkpoint(**unit_args("exp", suite)) == 0
        results[scorer] = json.loads(paths.eval_result("exp", "a", "epoch_1", "add").read_text())
        paths.eval_predictions("exp", "a", "epoch_1", "add").unlink()
    assert results["exact"]["higher_is_better"] is True
    assert results["lowscorer:distance"]["higher_is_better"] is False
