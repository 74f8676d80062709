"""8-/4-bit models through the transformers backend on CPU (bitsandbytes + accelerate), end to end
through the inference job; a vLLM quantization checked at submit against the methods the installed vLLM lists."""

from __future__ import annotations

import json
import math

import pytest

from orchestrator.generation.backends.base import Request
from orchestrator.generation.models import ModelConfig

PROMPTS = [f"Q: what is {w}?\nA:" for w in ("cat", "river", "seven", "blue sky", "x+y", "Paris")]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from orchestrator.generation.tiny import build_model

    return build_model(tmp_path_factory.mktemp("q") / "model", hidden=64, layers=2, heads=2, init_std=0.3)


def greedy(path, quantization: str):
    from orchestrator.generation.backends import load_backend

    backend = load_backend(
        "transformers", ModelConfig(name="q", path=str(path), quantization=quantization), device="cpu"
    )
    layer = type(backend.model.model.layers[0].self_attn.q_proj).__name__
    gens = backend.generate([Request(id=str(i), prompt=p, max_new_tokens=8) for i, p in enumerate(PROMPTS)])
    backend.close()
    return layer, gens


@pytest.mark.bnb
@pytest.mark.parametrize("quantization, layer", [("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")])
def test_quantized_models_load_and_generate_on_cpu(model, quantization, layer):
    _, full = greedy(model, "none")
    got_layer, gens = greedy(model, quantization)
    assert got_layer == layer
    assert all(g.completion_tokens == 8 == len(g.token_logprobs) for g in gens)
    assert all(math.isfinite(x) and x <= 0 for g in gens for x in g.token_logprobs)
    # quantized weights: close to the full model's log-probabilities, not equal to them
    first = [(g.token_logprobs[0], f.token_logprobs[0]) for g, f in zip(gens, full)]
    assert any(a != b for a, b in first)
    if quantization == "8bit":  # int8 keeps the first greedy token of most prompts
        assert sum(g.text[:1] == f.text[:1] for g, f in zip(gens, full)) >= len(PROMPTS) // 2


@pytest.mark.bnb
@pytest.mark.slow
def test_a_4bit_inference_run_writes_its_summary(model, tmp_path):
    from orchestrator.generation.tasks import load_task
    from orchestrator.kinds.inference.job import run_inference

    data = tmp_path / "qa.jsonl"
    data.write_text(
        "".join(json.dumps({"id": f"q{i}", "question": p, "answers": ["a"]}) + "\n" for i, p in enumerate(PROMPTS))
    )
    task = {"task": "qa", "dataset": {"data_files": str(data)}, "generation": {"max_new_tokens": 6, "stop": []}}
    cfg = ModelConfig(name="q4", path=str(model), quantization="4bit")
    code = run_inference(
        run_dir=str(tmp_path / "run"),
        experiment="e",
        model=cfg.model_dump(mode="json"),
        task=load_task(task).model_dump(mode="json"),
        device="cpu",
        wandb={"enabled": False},
    )
    assert code == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n"] == len(PROMPTS) and summary["config"]["model"]["quantization"] == "4bit"


@pytest.mark.vllm
def test_vllm_with_quantization_on_cpu_is_refused_at_submit(cli, spec_file, model, orch_home):
    path = spec_file(
        "qv",
        f"kind: inference\nmodels: [{{name: qv, path: {model}, backend: vllm, quantization: 8bit}}]\n"
        "tasks: [coqa]\ndevice: cpu\nwandb: {enabled: false}\n",
    )
    res = cli("submit", path, "--executor", "local")
    assert res.code == 2
    assert "quantization 8bit (bitsandbytes) with backend vllm needs GPUs" in res.err
    assert "use backend: transformers" in res.err and "awq, gptq, fp8, compressed-tensors" in res.err
    assert not (orch_home / "logs" / "qv").exists()  # nothing submitted


@pytest.mark.vllm
def test_a_method_vllm_does_not_list_is_refused_at_submit_naming_those_it_does(cli, spec_file, model, orch_home):
    path = spec_file(
        "qm",
        f"kind: inference\nmodels: [{{name: qm, path: {model}, backend: vllm, quantization: exl2}}]\n"
        "tasks: [coqa]\ndevice: cpu\nwandb: {enabled: false}\n",
    )
    res = cli("submit", path, "--executor", "local")
    assert res.code == 2 and "model qm: quantization exl2" in res.err and "has no such method" in res.err
    assert "it lists: awq," in res.err and "compressed-tensors" in res.err
    assert not (orch_home / "logs" / "qm").exists()
