"""Model configs: loading, memory estimate → GPU count, fit check with a reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.core.errors import SpecError
from orchestrator.generation.models import ModelConfig, list_models, load_model

SWEEP = [  # the original CoQA study's nine (jobs/coqa-sweep.yaml)
    "llama-3.2-1b-8bit",
    "qwen2.5-1.5b-8bit",
    "mistral-7b-v0.3-8bit",
    "llama-3.1-8b-fp16",
    "qwen3-8b",
    "mistral-7b-instruct-v0.3",
    "llama-3.1-70b",
    "qwen2.5-72b-4bit",
    "mistral-large-2407",
]


def test_minimal_config_has_defaults():
    m = ModelConfig(name="epoch_3", path="/x/epoch_3")
    assert m.quantization == "none" and m.tensor_parallel_size == 1 and m.memory_gb() is None
    assert m.gpus_needed(80) == 1
    with pytest.raises(ValidationError):
        m.name = "other"  # frozen


def test_memory_estimate_and_gpu_count():
    m = ModelConfig(name="m", path="x", params_b=8, dtype="bfloat16")
    assert m.memory_gb() == pytest.approx(8 * 2 * 1.2 + 1)
    assert m.gpus_needed(80) == 1 and m.gpus_needed(16) == 2
    assert ModelConfig(name="m", path="x", params_b=8, quantization="8bit").memory_gb() == pytest.approx(8 * 1.2 + 1)
    assert ModelConfig(name="m", path="x", params_b=70, quantization="4bit").memory_gb() == pytest.approx(35 * 1.2 + 1)
    # tensor parallelism sets a floor even when memory would fit on fewer GPUs
    assert (
        ModelConfig(name="m", path="x", params_b=70, quantization="4bit", tensor_parallel_size=4).gpus_needed(80) == 4
    )


def test_fit_gives_a_reason():
    big = ModelConfig(name="big", path="x", params_b=123, dtype="float16")
    n, reason = big.fit(gpu_memory_gb=80, max_gpus=2)  # 246 GB × 1.2 + 1 → 4 GPUs of 80 GB
    assert n == 4 and "big" in reason and "at most 2" in reason
    assert big.fit(gpu_memory_gb=80, max_gpus=4) == (4, None)


def test_the_nine_sweep_models_and_their_gpus():
    assert set(SWEEP) <= set(list_models())
    models = {name: load_model(name) for name in SWEEP}
    gpus = {name: m.gpus_needed(80) for name, m in models.items()}
    assert [m.phase for m in models.values()] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert gpus == {**{n: 1 for n in SWEEP[:6]}, "llama-3.1-70b": 4, "qwen2.5-72b-4bit": 1, "mistral-large-2407": 4}
    assert all(models[n].quantization == "8bit" for n in SWEEP[:3])  # phase 1: 8-bit
    assert all((models[n].dtype, models[n].quantization) == ("float16", "none") for n in SWEEP[3:6])
    # phase 3 in 4-bit on today's engines: published AWQ checkpoints on vLLM (TP 4), or bitsandbytes nf4
    # through transformers for the base Qwen2.5-72B, which has no published 4-bit checkpoint
    phase3 = {n: (models[n].backend, models[n].quantization, models[n].tensor_parallel_size) for n in SWEEP[6:]}
    assert phase3 == {
        "llama-3.1-70b": ("vllm", "awq", 4),
        "qwen2.5-72b-4bit": ("transformers", "4bit", 1),
        "mistral-large-2407": ("vllm", "awq", 4),
    }
    assert [m.path for m in models.values()] == [
        "meta-llama/Llama-3.2-1B",
        "Qwen/Qwen2.5-1.5B",
        "mistralai/Mistral-7B-v0.3",
        "meta-llama/Llama-3.1-8B",
        "Qwen/Qwen3-8B",
        "mistralai/Mistral-7B-Instruct-v0.3",
        "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",  # of meta-llama/Llama-3.1-70B-Instruct
        "Qwen/Qwen2.5-72B",
        "TechxGenus/Mistral-Large-Instruct-2407-AWQ",  # of mistralai/Mistral-Large-Instruct-2407 (Mistral Large 2)
    ]
    # 4-bit weights: 70.6B × 0.5 bytes × 1.2 + 1 GB; the 123B fits 4 × 80 GB with room for the KV cache
    assert models["llama-3.1-70b"].memory_gb() == pytest.approx(70.6 * 0.5 * 1.2 + 1)
    assert models["mistral-large-2407"].memory_gb() < 4 * 80 / 2


@pytest.mark.vllm
def test_every_vllm_model_names_a_method_the_installed_vllm_lists():
    from orchestrator.generation.backends.vllm import check_quantization, quantization_methods

    methods = quantization_methods()[1]
    vllm_models = [m for m in map(load_model, list_models()) if m.backend == "vllm" and m.quantization != "none"]
    assert {m.name for m in vllm_models} >= {"llama-3.1-70b", "mistral-large-2407", "qwen2.5-72b"}
    assert all(m.quantization in methods for m in vllm_models)
    assert [p for m in vllm_models if (p := check_quantization(m, "vllm", on_cpu=False))] == []


def test_quantization_names_by_backend(tmp_path):
    assert ModelConfig(name="m", path="x", quantization="awq", backend="vllm").quantization == "awq"
    with pytest.raises(ValidationError, match="backend transformers takes none, 8bit or 4bit"):
        ModelConfig(name="m", path="x", quantization="awq")
    with pytest.raises(ValidationError, match="quantization"):
        ModelConfig(name="m", path="x", quantization="AWQ; rm", backend="vllm")
    # pre-quantized widths for the estimate: AWQ/GPTQ 4-bit, FP8 8-bit; an unknown method at the dtype's width
    est = {
        q: ModelConfig(name="m", path="x", params_b=10, dtype="bfloat16", quantization=q, backend="vllm")
        for q in ("awq", "gptq", "fp8", "compressed-tensors")
    }
    assert [est[q].bytes_per_param for q in est] == [0.5, 0.5, 1.0, 2.0]


def test_inline_override_and_errors(tmp_path):
    m = load_model({"config": "llama-3.1-8b", "quantization": "8bit"})
    assert m.name == "llama-3.1-8b" and m.quantization == "8bit" and m.path == "meta-llama/Llama-3.1-8B-Instruct"
    with pytest.raises(SpecError, match="no model config"):
        load_model("does-not-exist")
    bad = tmp_path / "bad.yaml"
    bad.write_text("path: x\nquantization: 3bit\n")
    with pytest.raises(SpecError, match="quantization") as e:
        load_model(str(bad))
    assert "bad.yaml" in str(e.value)


def test_tiny_entry_builds_under_home(orch_home):
    from orchestrator.generation.models import ensure_built

    m = load_model("tiny")
    assert m.path == str(orch_home / "models" / "tiny")
    ensure_built(m)
    assert (orch_home / "models" / "tiny" / "config.json").exists()
