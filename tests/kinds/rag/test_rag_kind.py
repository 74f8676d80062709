"""The `rag` kind end to end on the tiny model (local executor): index stage, answering,
WattBot files, index reuse, missing model configs skipped, resume after kill -9."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.scoring import wattbot


def spec_text(name: str, rag_files, model_path, extra: str = "", models: str | None = None) -> str:
    models = models or f"[{{name: tiny, path: {model_path}, max_length: 1024}}, no-such-model]"
    return f"""\
name: {name}
kind: rag
corpus: {rag_files["corpus"]}
questions: {rag_files["questions"]}
models: {models}
retrieval: {{retriever: bm25, top_k: 2, max_chunk_chars: 120, chunking: {{size: 16, overlap: 4}}}}
prompt_file: {rag_files["prompt"]}
max_new_tokens: 8
device: cpu
batch_size: 3
resources: {{time: "10", mem: 2G}}
{extra}"""


def test_plan_index_stage_then_answer_arrays(cli, spec_file, rag_files, tiny_model_path):
    path = spec_file(
        "ragplan",
        spec_text(
            "ragplan",
            rag_files,
            tiny_model_path,
            "grid: {retriever: [bm25, hybrid], top_k: [1, 2]}\nretrieval: {embedder: %s}\n" % rag_files["encoder"],
        ).replace(
            "retrieval: {retriever: bm25, top_k: 2, max_chunk_chars: 120, chunking: {size: 16, overlap: 4}}\n", ""
        ),
    )
    res = cli("submit", path, "--dry-run", "--executor", "slurm")
    assert res.code == 0, res.err
    assert "skipping no-such-model: no model config" in res.err
    assert "stage index: submit 1" in res.out or "stage index" in res.out
    for label in ("bm25-k1", "bm25-k2", "hybrid-k1", "hybrid-k2"):
        assert f"tiny__{label}" in res.out


@pytest.mark.slow
def test_rag_end_to_end_locally_and_index_reused(cli, spec_file, rag_files, tiny_model_path, orch_home):
    from helpers import wait_final

    res = cli("submit", spec_file("ragtiny", spec_text("ragtiny", rag_files, tiny_model_path)), "--executor", "local")
    assert res.code == 0, res.err
    assert "index" in res.out
    final = wait_final("ragtiny", timeout=300)
    assert {r: t.state for r, t in final.items() if not r.startswith("index-")} == {"tiny__bm25-k2": "COMPLETED"}
    run = orch_home / "logs" / "ragtiny" / "tiny__bm25-k2"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n"] == 6 and set(summary["score"]) == {"overall", "value_accuracy", "ref_overlap", "na_recall"}
    assert summary["retrieval"] == {**summary["retrieval"], "k": 2, "recall_at_k": 1.0}
    results = json.loads((run / "results.json").read_text())["examples"]
    assert {"retrieved", "parsed", "cost_usd", "score", "prompt", "prediction", "latency_s"} <= set(results[0])
    assert 1 <= len(results[0]["retrieved"]) <= 2 and results[0]["cost_usd"] == 0.0
    with open(run / "submission.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(1, 7)] and list(rows[0]) == list(wattbot.CSV_COLUMNS)
    # The scorer on the written submission agrees with the run's summary.
    scored = cli(
        "score",
        "--task",
        "wattbot",
        "--predictions",
        run / "submission.csv",
        "--gold",
        rag_files["questions"],
        "--json",
    )
    assert json.loads(scored.out)["metrics"] == pytest.approx(summary["score"])
    # Same corpus, chunking and embedder in another experiment: no index stage, nothing rebuilt.
    again = cli(
        "submit",
        spec_file("ragtiny2", spec_text("ragtiny", rag_files, tiny_model_path)),
        "--smoke",
        "--executor",
        "local",
    )
    assert again.code == 0 and "stage index" not in again.out
    final = wait_final("ragtiny-smoke", timeout=300)
    assert [t.state for t in final.values()] == ["COMPLETED"]
    assert json.loads((orch_home / "logs" / "ragtiny-smoke" / "tiny__bm25-k2" / "summary.json").read_text())["n"] == 1
    runs = cli("status", "ragtiny", "--runs")
    assert runs.code == 0 and "passed" in runs.out


RUN = """
import json, sys
from orchestrator.kinds.rag.job import rag_answer
a = json.loads(open(sys.argv[1]).read())
sys.exit(rag_answer(**a))
"""


@pytest.mark.slow
def test_kill9_then_resume_answers_each_question_once(rag_files, tiny_model_path, orch_home, tmp_path):
    from orchestrator.core.spec import load_spec
    from orchestrator.kinds.rag import retrieval

    path = tmp_path / "ragkill.yaml"
    path.write_text(
        spec_text(
            "ragkill", rag_files, tiny_model_path, "limit: 4\n", models=f"[{{name: tiny, path: {tiny_model_path}}}]"
        ).replace("batch_size: 3", "batch_size: 1")
    )
    spec = load_spec(path)
    (stage_index, stage_answer) = spec.plan()
    unit = stage_index.units[0]
    retrieval.build(unit.args.corpus, unit.args.chunking, None, Path(unit.args.index_dir))
    args = stage_answer.units[0].args

    def start(run_dir: Path) -> subprocess.Popen:
        f = tmp_path / f"{run_dir.name}.json"
        f.write_text(json.dumps({"run_dir": str(run_dir), "experiment": "e", **args.model_dump(mode="json")}))
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
        return subprocess.Popen(
            [sys.executable, "-c", RUN, str(f)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    ref, killed = tmp_path / "ref", tmp_path / "killed"
    assert start(ref).wait(timeout=300) == 0
    proc, pred = start(killed), killed / "predictions.jsonl"
    while proc.poll() is None and (not pred.exists() or pred.read_bytes().count(b"\n") < 2):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL and not (killed / "summary.json").exists()
    assert start(killed).wait(timeout=300) == 0
    ids = [json.loads(x)["id"] for x in pred.read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 4
    a, b = (json.loads((d / "summary.json").read_text()) for d in (ref, killed))
    assert a["score"] == b["score"]


@pytest.mark.slurm
@pytest.mark.slow
def test_rag_through_slurm_index_then_answer_array(cli, spec_file, rag_files, tiny_model_path, slurm_home):
    from helpers import wait_final

    name = f"ragslurm{os.getpid()}"
    text = spec_text(name, rag_files, tiny_model_path, "grid: {top_k: [1, 2]}\n")
    res = cli("submit", spec_file(name, text), "--executor", "slurm")
    assert res.code == 0, res.err
    assert "stage index" in res.out and "stage answer-cpu: array of 2" in res.out
    final = wait_final(name, timeout=600)
    assert {r: t.state for r, t in final.items()} == {
        **{r: "COMPLETED" for r in final if r.startswith("index-")},
        "tiny__bm25-k1": "COMPLETED",
        "tiny__bm25-k2": "COMPLETED",
    }
    for k in (1, 2):
        summary = json.loads((slurm_home / "logs" / name / f"tiny__bm25-k{k}" / "summary.json").read_text())
        assert summary["n"] == 6 and summary["retrieval"]["k"] == k


def test_scaling_spec_family_skips_what_does_not_fit_and_what_ran(cli, rag_files, orch_home):
    sets = ["--set", f"corpus={rag_files['corpus']}", "--set", f"questions={rag_files['questions']}"]
    res = cli("submit", "rag-scaling", "--dry-run", "--executor", "slurm", *sets, "--set", "max_gpus=1")
    assert res.code == 0, res.err
    assert "skipping qwen2.5-72b" in res.err and "at most 1 allowed" in res.err
    assert "qwen2.5-1.5b__hybrid-k5" in res.out and "qwen2.5-7b__hybrid-k5" in res.out
    done = orch_home / "logs" / "rag-scaling" / "qwen2.5-1.5b__hybrid-k5"
    done.mkdir(parents=True)
    (done / "summary.json").write_text("{}")
    res = cli("submit", "rag-scaling", "--dry-run", "--executor", "slurm", *sets, "--set", "max_gpus=1")
    assert "skipping qwen2.5-1.5b__hybrid-k5: summary.json exists" in res.err
    assert "qwen2.5-1.5b__hybrid-k5" not in res.out


def test_per_model_time_limits_make_their_own_array(cli, spec_file, rag_files, tiny_model_path):
    models = f"[{{name: tiny, path: {tiny_model_path}}}, {{name: tiny2, path: {tiny_model_path}}}]"
    text = spec_text("ragtime", rag_files, tiny_model_path, 'time_limits: {tiny2: "00:30:00"}\n', models=models)
    res = cli("submit", spec_file("ragtime", text), "--dry-run", "--executor", "slurm")
    assert res.code == 0, res.err
    assert "stage answer-cpu-10m: submit 1 job, after index" in res.out
    assert "stage answer-cpu-30m: submit 1 job, after index" in res.out and "#SBATCH --time=00:30:00" in res.out


def test_submit_refuses_an_api_model_without_its_key(cli, spec_file, rag_files, tiny_model_path, monkeypatch):
    monkeypatch.delenv("RAG_NO_KEY", raising=False)
    api = "{name: remote, path: m, backend: openai, api: {base_url: 'http://127.0.0.1:9/v1', api_key_env: RAG_NO_KEY}}"
    path = spec_file("ragkey", spec_text("ragkey", rag_files, tiny_model_path, models=f"[{api}]"))
    assert cli("submit", path, "--dry-run", "--executor", "slurm").code == 0  # plans need no secret
    res = cli("submit", path, "--executor", "local")
    assert res.code == 2 and "$RAG_NO_KEY is not set" in res.err


def test_ablation_grid_is_one_spec_with_one_shared_index(cli, rag_files, orch_home):
    sets = ["--set", f"corpus={rag_files['corpus']}", "--set", f"questions={rag_files['questions']}"]
    res = cli("submit", "rag-ablation", "--dry-run", "--executor", "slurm", *sets)
    assert res.code == 0, res.err
    assert "stage index: submit 1 job" in res.out
    for model in ("qwen2.5-7b", "llama-3.1-8b"):
        for retriever in ("bm25", "dense", "hybrid"):
            for k in (3, 5):
                assert f"{model}__{retriever}-k{k}" in res.out
    assert "answer-1gpu: submit array of 12, after index" in res.out
