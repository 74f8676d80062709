"""`orchestrate report` on a rag experiment: comparison with CIs, results matrix, ensembles,
audit, retrieval quality, scaling comparison and the plots (two API models and a local-sized one
answering through the local test server)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "judge"))
from chat_server import ChatServer, completion  # noqa: E402

GOOD = {"Alpha-7": "1287", "H100": "700", "water": "5.6", "Virginia": "390"}


def replier(model_id: str):
    def script(call):
        if call.body["model"] != model_id:
            return None
        question = call.prompt.split("Q:")[-1]
        for needle, value in GOOD.items():
            if needle in question:
                if model_id == "weak" and needle in ("water", "Virginia"):
                    return 200, {}, completion("I am not sure.")  # malformed: no JSON, no labels
                return 200, {}, completion(json.dumps({"answer_value": value, "ref_id": ["x"]}))
        return 200, {}, completion('{"answer_value": "is_blank", "ref_id": []}')

    return script


@pytest.mark.slow
def test_report_sections_files_and_plots(cli, spec_file, rag_files, orch_home, monkeypatch):
    from orchestrator.core.spec import load_spec
    from orchestrator.kinds.rag import retrieval
    from orchestrator.kinds.rag.job import rag_answer

    monkeypatch.setenv("K", "k")
    strong, weak = replier("strong"), replier("weak")
    with ChatServer(script=lambda c: strong(c) or weak(c)) as server:
        api = {"base_url": server.url, "api_key_env": "K", "backoff_base_s": 0.01}
        models = [
            {"name": "strong", "path": "strong", "backend": "openai", "api": api, "price": {"input_per_mtok": 5.0}},
            {"name": "weak", "path": "weak", "backend": "openai", "api": api, "params_b": 1.0},
        ]
        text = (
            f"name: ragrep\nkind: rag\ncorpus: {rag_files['corpus']}\nquestions: {rag_files['questions']}\n"
            f"models: {json.dumps(models)}\nprompt_file: {rag_files['prompt']}\ngrid: {{top_k: [1, 2]}}\n"
        )
        stages = load_spec(spec_file("ragrep", text)).plan()
        u = stages[0].units[0].args
        retrieval.build(u.corpus, u.chunking, None, Path(u.index_dir))
        for unit in stages[1].units:
            run_dir = orch_home / "logs" / "ragrep" / unit.run
            assert rag_answer(str(run_dir), "ragrep", **unit.args.kwargs()) == 0
    res = cli("report", "ragrep", "--no-refresh")
    assert res.code == 0, res.err
    out = orch_home / "logs" / "ragrep" / "report"
    md = (out / "report.md").read_text()
    for heading in ("Model comparison", "Ensembles", "Retrieval quality", "Audit", "Plots"):
        assert f"## {heading}" in md
    comparison = json.loads((out / "comparison.json").read_text())
    best = comparison[0]
    assert best["model"] == "strong" and best["value_accuracy"] == pytest.approx(1.0) and best["cost_usd"] > 0
    assert best["overall_ci"][0] <= best["overall"] <= best["overall_ci"][1]
    with open(out / "results_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "id" and len(rows) == 7 and len(rows[0]) == 5
    audit = {a["run"]: a for a in json.loads((out / "audit.json").read_text())}
    assert audit["weak__bm25-k1"]["malformed_rate"] == pytest.approx(2 / 6)
    assert not any(a["score_mismatch"] for a in audit.values())
    ens = json.loads((out / "ensembles.json").read_text())
    assert {e["name"] for e in ens} == {"ensemble:majority", "ensemble:first_non_blank", "ensemble:confidence"}
    first = next(e for e in ens if e["name"] == "ensemble:first_non_blank" and e["config"] == "bm25-k1")
    assert first["value_accuracy"] == pytest.approx(1.0)  # the strong model answers first
    res = cli("report", "ragrep", "--no-refresh", "--format", "csv")
    assert res.code == 0 and res.out.strip().endswith("comparison.csv")
    assert (out / "comparison.csv").read_text().startswith("run,model,config")
    assert not (out / "scaling_comparison.csv").exists()  # API models only: no scaling table
    for png in (
        "ranking.png",
        "score_breakdown.png",
        "cost_vs_performance.png",
        "size_vs_score.png",
        "size_vs_latency.png",
        "size_vs_cost.png",
        "size_score_cost.png",
    ):
        assert (out / "plots" / png).read_bytes()[:4] == b"\x89PNG"


def test_scaling_rows_are_local_sized_models_smallest_first():
    from orchestrator.kinds.rag.analysis import SCALING_KEYS, scaling

    base = {k: None for k in SCALING_KEYS} | {"config": "c", "api": False}
    rows = [
        base | {"model": "b", "params_b": 7.0},
        base | {"model": "a", "params_b": 1.5},
        base | {"model": "api", "params_b": 100.0, "api": True},
        base | {"model": "nosize"},
    ]
    assert [r["model"] for r in scaling(rows)] == ["a", "b"]
