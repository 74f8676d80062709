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
    gpus = {name: load_model(name).gpus_needed(80) for name in SWEEP}
    phases = {name: load_model(name).phase for name in SWEEP}
    assert {n: g for n, g in gpus.items() if phases[n] in (1, 2)} == {n: 1 for n in SWEEP[:6]}
    assert {n: g for n, g in gpus.items() if phases[n] == 3} == {n: 4 for n in SWEEP[6:]}
    assert all(load_model(n).quantization == "4bit" for n in SWEEP[6:])
    assert all(load_model(n).quantization == "8bit" for n in SWEEP[:3])  # phase 1: 8-bit
    assert all((load_model(n).dtype, load_model(n).quantization) == ("float16", "none") for n in SWEEP[3:6])
    paths = [load_model(n).path for n in SWEEP]
    assert paths == [
        "meta-llama/Llama-3.2-1B",
        "Qwen/Qwen2.5-1.5B",
        "mistralai/Mistral-7B-v0.3",
        "meta-llama/Llama-3.1-8B",
        "Qwen/Qwen3-8B",
        "mistralai/Mistral-7B-Instruct-v0.3",
        "meta-llama/Llama-3.1-70B-Instruct",
        "Qwen/Qwen2.5-72B",
        "mistralai/Mistral-Large-Instruct-2407",  # Mistral Large 2
    ]


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
