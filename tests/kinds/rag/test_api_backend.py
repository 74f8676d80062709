"""The OpenAI-compatible backend against a local test server (no network): answers, token counts,
cost from the price table, back-off on 429 honouring Retry-After, the concurrency limit, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "judge"))
from chat_server import ChatServer, completion  # noqa: E402

from orchestrator.core.errors import UserError  # noqa: E402
from orchestrator.generation.backends import load_backend  # noqa: E402
from orchestrator.generation.backends.base import Request  # noqa: E402
from orchestrator.generation.models import ModelConfig  # noqa: E402

ANSWERS = {"Alpha-7": ("1287", ["gpu_energy"]), "H100": ("700", ["hardware"])}


def answer(call):
    """A model that answers from the prompt: the number for known questions, else is_blank."""
    prompt = call.prompt
    for needle, (value, refs) in ANSWERS.items():
        if f"Q: {needle}" in prompt or (needle in prompt.split("Q:")[-1]):
            return (
                200,
                {},
                completion(json.dumps({"answer": value, "answer_value": value, "ref_id": refs, "explanation": "ctx"})),
            )
    return 200, {}, completion('```json\n{"answer_value": "is_blank", "ref_id": []}\n```')


def model(url: str, **api) -> ModelConfig:
    return ModelConfig(
        name="api-model",
        path="test-model",
        backend="openai",
        api={"base_url": url, "api_key_env": "RAG_TEST_KEY", "backoff_base_s": 0.01, "backoff_max_s": 0.5, **api},
        price={"input_per_mtok": 1.0, "output_per_mtok": 2.0},
    )


def test_generate_counts_tokens_limits_concurrency_and_backs_off(monkeypatch):
    monkeypatch.setenv("RAG_TEST_KEY", "k")

    def script(call):
        if call.index == 0:  # the first call is rate limited, with a Retry-After
            return 429, {"Retry-After": "0.2"}, {"error": {"message": "slow down"}}
        return None

    with ChatServer(script=script, delay_s=0.05, key="k") as server:
        backend = load_backend("openai", model(server.url, concurrency=2))
        gens = backend.generate(
            [Request(id=f"r{i}", prompt="Candidate answer:\nx\n\nReference answer:\nx") for i in range(6)]
        )
    assert [g.id for g in gens] == [f"r{i}" for i in range(6)]
    assert all(g.prompt_tokens == 10 and g.completion_tokens == 10 and g.error is None for g in gens)
    assert server.max_in_flight <= 2
    assert backend.stats.retries == 1 and backend.stats.waited_s >= 0.2
    assert model(server.url).price.cost(10, 10) == pytest.approx(30 / 1e6)


def test_bad_key_stops_and_4xx_is_recorded(monkeypatch):
    monkeypatch.setenv("RAG_TEST_KEY", "wrong")
    with ChatServer(key="k") as server:
        with pytest.raises(UserError, match="answered 401"):
            load_backend("openai", model(server.url)).generate([Request(id="a", prompt="p")])
    monkeypatch.setenv("RAG_TEST_KEY", "k")
    with ChatServer(script=lambda c: (400, {}, {"error": {"message": "prompt too long"}})) as server:
        (g,) = load_backend("openai", model(server.url)).generate([Request(id="a", prompt="p")])
    assert g.finish_reason == "error" and "400" in g.error
    monkeypatch.delenv("RAG_TEST_KEY")
    with pytest.raises(UserError, match=r"\$RAG_TEST_KEY is not set"):
        load_backend("openai", model("http://127.0.0.1:9/v1"))


def test_rag_run_with_an_api_model(rag_files, orch_home, tmp_path, monkeypatch):
    from orchestrator.core.spec import load_spec
    from orchestrator.kinds.rag import retrieval
    from orchestrator.kinds.rag.job import rag_answer

    monkeypatch.setenv("RAG_TEST_KEY", "k")
    with ChatServer(script=answer, key="k") as server:
        m = model(server.url).model_dump(mode="json")
        spec = tmp_path / "ragapi.yaml"
        spec.write_text(
            f"name: ragapi\nkind: rag\ncorpus: {rag_files['corpus']}\nquestions: {rag_files['questions']}\n"
            f"models: [{json.dumps(m)}]\nretrieval: {{top_k: 2}}\nprompt_file: {rag_files['prompt']}\n"
        )
        index, answer_stage = load_spec(spec).plan()
        assert answer_stage.name == "answer-cpu" and answer_stage.after == ("index",)  # API models need no GPU
        u = index.units[0].args
        retrieval.build(u.corpus, u.chunking, None, Path(u.index_dir))
        args = answer_stage.units[0].args
        run = tmp_path / "run"
        assert rag_answer(str(run), "ragapi", **args.kwargs()) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["score"]["value_accuracy"] == pytest.approx(4 / 6)  # q1, q3 and the two is_blank
    assert summary["score"]["na_recall"] == 1.0 and summary["malformed"] == 0
    assert summary["tokens"] == {"prompt": 60, "completion": 60, "missing": 0}
    assert summary["cost_usd"] == pytest.approx((60 * 1.0 + 60 * 2.0) / 1e6)
    assert summary["hardware"]["model_disk_gb"] is None and summary["api"]["calls"] == 6
