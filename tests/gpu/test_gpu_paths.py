"""GPU paths: the transformers backend on CUDA and NVML hardware readings. They skip without a
GPU (CI machines have none); run them on a GPU machine with `pytest tests/gpu`."""

from __future__ import annotations

import json
import time

import pytest

from helpers import FIXTURES

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]

FIX = FIXTURES / "inference"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from orchestrator.generation.tiny import build_model

    return build_model(tmp_path_factory.mktemp("tiny") / "tiny-model")


def _generate(path, device):
    from orchestrator.generation.backends import load_backend
    from orchestrator.generation.backends.base import Request
    from orchestrator.generation.models import ModelConfig

    backend = load_backend("transformers", ModelConfig(name="tiny", path=str(path)), batch_size=4, device=device)
    try:
        reqs = [Request(id=str(i), prompt=p, max_new_tokens=6) for i, p in enumerate(["1+2=", "hello", "Q: x?\nA:"])]
        return backend, backend.generate(reqs)
    finally:
        backend.close()


def test_transformers_backend_on_cuda_matches_cpu(tiny):
    backend, gpu = _generate(tiny, "cuda")
    _, cpu = _generate(tiny, "cpu")
    assert [g.text for g in gpu] == [g.text for g in cpu]  # greedy, float32: same tokens
    for a, b in zip(gpu, cpu):
        assert len(a.token_logprobs) == a.completion_tokens > 0
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-3)


def test_nvml_readings_while_the_gpu_works():
    pytest.importorskip("pynvml", reason="NVML readings need nvidia-ml-py")
    from orchestrator.generation.hardware import HardwareMonitor

    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    with HardwareMonitor(interval=0.2) as hw:
        end = time.time() + 3
        while time.time() < end:
            x = (x @ x).clamp_(-1, 1)
        torch.cuda.synchronize()
    m = hw.metrics()
    print(json.dumps(m))
    assert "NVIDIA" in m["gpu_name"] and m["gpu_count"] >= 1
    assert m["gpu_memory_total_gb"] > 10 and m["gpu_memory_peak_gb"] > 0.1
    assert m["power_peak_w"] > m["power_avg_w"] * 0.5 > 0 and m["energy_wh"] > 0


def test_inference_run_on_gpu_records_hardware(tiny, tmp_path, monkeypatch):
    pytest.importorskip("datasets", reason="task rows are read through datasets")
    from orchestrator.generation.models import ModelConfig
    from orchestrator.generation.tasks import load_task
    from orchestrator.kinds.inference.job import run_inference

    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    task = load_task({"task": "coqa", "dataset": {"data_files": str(FIX / "coqa-dev.json")}})
    assert (
        run_inference(
            run_dir=str(tmp_path / "run"),
            experiment="gpu",
            model=ModelConfig(name="tiny", path=str(tiny)).model_dump(mode="json"),
            task=task.model_dump(mode="json"),
            batch_size=4,
            device="cuda",
            wandb={"enabled": False},
        )
        == 0
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    print(json.dumps(summary["hardware"]), summary["throughput_tokens_per_s"])
    assert "NVIDIA" in summary["hardware"]["gpu_name"] and summary["hardware"]["energy_wh"] is not None
    assert summary["n"] == 7 and summary["throughput_tokens_per_s"] > 0
