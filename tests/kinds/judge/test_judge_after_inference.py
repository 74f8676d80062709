"""The judge consumes what the inference kind writes: a tiny-model inference experiment (local
executor), and `judge-tagging` over its runs submitted while it still runs — the judge waits,
then grades every prediction once and tags it with its task's domain."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from chat_server import ChatServer
from judge_data import read_jsonl

from helpers import FIXTURES, wait_final
from orchestrator.core import paths

FIX = FIXTURES / "inference"
KEY_ENV = "ORCH_TEST_JUDGE_KEY"
KEY = "sk-after-inference-0b5e"


@pytest.mark.slow
def test_judge_tagging_over_an_inference_experiment(cli, spec_file, orch_home, monkeypatch):
    tasks = "".join(
        f"  - {{task: {t}, dataset: {{data_files: {FIX / f}}}, generation: {{max_new_tokens: 4}}}}\n"
        for t, f in [("coqa", "coqa-dev.json"), ("medqa", "medqa.jsonl"), ("math", "math.jsonl")]
    )
    infer = spec_file(
        "tinyinf",
        f"""\
kind: inference
models: [tiny]
tasks:
{tasks}device: cpu
limit: 2
batch_size: 2
wandb: {{enabled: false}}
resources: {{time: "15", mem: 2G}}
""",
    )
    res = cli("submit", infer, "--executor", "local")
    assert res.code == 0, res.err

    # submitted while inference still runs: the judge waits for its runs (afterok), then grades
    monkeypatch.setenv(KEY_ENV, KEY)
    with ChatServer(key=KEY) as server:
        res = cli(
            "submit",
            "judge-tagging",
            "--executor",
            "local",
            "--set",
            "inputs.experiment=tinyinf",
            "--set",
            f"judge.base_url={server.url}",
            "--set",
            "judge.model=judge-model",
            "--set",
            f"judge.api_key_env={KEY_ENV}",
        )
        assert res.code == 0, res.err
        assert "after tinyinf/tiny__coqa, tinyinf/tiny__math, tinyinf/tiny__medqa" in res.out
        runs = wait_final("tinyinf", timeout=600)
        judged_runs = wait_final("judge-tagging", timeout=300)
    assert {t.state for t in runs.values()} == {"COMPLETED"}, {r: t.reason for r, t in runs.items()}
    assert set(judged_runs) == set(runs) and {t.state for t in judged_runs.values()} == {"COMPLETED"}
    assert Counter(c.status for c in server.calls) == {200: 6}  # 3 tasks × 2 examples, each once
    last_inference = max(json.loads(paths.status_file("tinyinf", r).read_text())["ended"] for r in runs)
    first_judge = min(json.loads(paths.status_file("judge-tagging", r).read_text())["started"] for r in runs)
    assert first_judge >= last_inference
    for run in runs:
        preds = read_jsonl(paths.run_dir("tinyinf", run) / paths.PREDICTIONS_FILE)
        judged = {r["id"]: r for r in read_jsonl(paths.run_dir("judge-tagging", run) / paths.JUDGED_FILE)}
        assert set(judged) == {p["id"] for p in preds}
        for p in preds:
            out = judged[p["id"]]
            domain = {"tiny__coqa": "READ", "tiny__medqa": "MED", "tiny__math": "MATH"}[run]
            assert out["tag_domain"] == domain and out["domain"] == p["domain"]
            expected = " <CN_" if out["verdict"]["correct"] else " <UN_"
            assert out["tagged_response"] == p["prediction"] + expected + domain + ">"
