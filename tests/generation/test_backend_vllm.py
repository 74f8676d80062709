"""The vLLM backend: a clear user error without vLLM; CPU settings (KV cache, one core block per
tensor-parallel rank from the job's own cores); quantization checked against the methods the installed vLLM lists. The engine itself
runs in tests/generation/test_vllm_engine.py."""

from __future__ import annotations

import os
import sys

import pytest

from orchestrator.core.errors import UserError
from orchestrator.generation.backends.vllm import (
    BIND_ENV,
    check_quantization,
    cpu_engine,
    exported,
    thread_binding,
)
from orchestrator.generation.models import ModelConfig


def test_missing_vllm_is_a_user_error(monkeypatch):
    from orchestrator.generation.backends import load_backend

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, installed or not
    with pytest.raises(UserError, match=r"orchestrator\[vllm\]"):
        load_backend("vllm", ModelConfig(name="m", path="x", tensor_parallel_size=4))


def test_thread_binding_splits_the_allowed_cores_into_one_block_per_rank():
    assert thread_binding(2, {0, 1}) == "0|1"
    assert thread_binding(1, {4, 5}) == "4,5"
    assert thread_binding(2, {8, 9, 10, 11, 12}) == "8,9|10,11"  # equal blocks; the odd core stays free
    with pytest.raises(UserError, match="cpus_per_task >= 4"):
        thread_binding(4, {0, 1})


def test_cpu_engine_sizes_the_kv_cache_and_keeps_a_users_binding(monkeypatch):
    monkeypatch.delenv(BIND_ENV, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {3})
    kw, env = cpu_engine(1, kv_cache_gb=0.5)
    assert kw["kv_cache_memory_bytes"] == 2**29 and kw["enforce_eager"] and kw["dtype"] == "float32"
    assert env == {BIND_ENV: "3"}
    with exported(env):
        assert os.environ[BIND_ENV] == "3"
    assert BIND_ENV not in os.environ  # the next engine may have another tensor-parallel size
    monkeypatch.setenv(BIND_ENV, "0-1")
    assert cpu_engine(1)[1] == {}


def test_quantization_is_checked_against_the_methods_vllm_lists(monkeypatch):
    from orchestrator.generation.backends import vllm as backend

    monkeypatch.setattr(backend, "quantization_methods", lambda: ("9.9", ("awq", "gptq", "fp8", "bitsandbytes")))
    bnb = ModelConfig(name="q", path="x", quantization="8bit", backend="vllm")
    assert "needs GPUs: use backend: transformers" in check_quantization(bnb, "vllm", on_cpu=True)
    assert check_quantization(bnb, "vllm", on_cpu=False) is None  # in-flight bitsandbytes on GPUs
    assert check_quantization(bnb, "transformers", on_cpu=True) is None
    awq = ModelConfig(name="a", path="x", quantization="awq", backend="vllm")
    assert check_quantization(awq, "vllm", on_cpu=True) is None
    assert "backend: vllm" in check_quantization(awq, "transformers", on_cpu=False)
    odd = ModelConfig(name="o", path="x", quantization="exl2", backend="vllm")
    problem = check_quantization(odd, "vllm", on_cpu=False)
    assert "model o: quantization exl2" in problem and "(9.9) has no such method" in problem
    assert "it lists: awq, gptq, fp8, bitsandbytes" in problem
    monkeypatch.setattr(backend, "quantization_methods", lambda: ("0.32.0", ("awq", "gptq", "fp8")))
    problem = check_quantization(bnb, "vllm", on_cpu=False)
    assert "not a method of the vLLM installed here (0.32.0)" in problem and "use backend: transformers" in problem
    assert "(awq, gptq, fp8)" in problem  # the pre-quantized alternatives this vLLM has
    monkeypatch.setattr(backend, "quantization_methods", lambda: None)
    assert "no vLLM is installed here" in check_quantization(awq, "vllm", on_cpu=False)
    assert check_quantization(bnb.model_copy(update={"quantization": "none"}), "vllm", on_cpu=True) is None


@pytest.mark.vllm
def test_the_methods_come_from_the_installed_vllm():
    pytest.importorskip("vllm")
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    from orchestrator.generation.backends.vllm import quantization_methods

    version, methods = quantization_methods()
    assert set(methods) <= set(QUANTIZATION_METHODS) and {"awq", "gptq", "fp8", "compressed-tensors"} <= set(methods)
    assert "bitsandbytes" not in methods  # vLLM 0.32 (both builds) dropped it: 4bit/8bit go to transformers
    assert version.startswith("0.32")


def test_server_command_gets_the_cpu_settings_unless_given(monkeypatch):
    from orchestrator.generation.backends import vllm as backend

    monkeypatch.delenv(BIND_ENV, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(backend, "cpu_build_installed", lambda: True)
    cmd = ["py", "-m", "vllm.entrypoints.openai.api_server", "--model", "m", "--tensor-parallel-size", "2"]
    got, env = backend.cpu_command([*cmd, "--dtype=bfloat16"])
    assert got == [*cmd, "--dtype=bfloat16", "--kv-cache-memory-bytes", str(2**30), "--enforce-eager"]
    assert env == {BIND_ENV: "0|1"}
    monkeypatch.setattr(backend, "cpu_build_installed", lambda: False)
    assert backend.cpu_command(cmd) == (cmd, {})  # the GPU build: as given


def test_prefill_groups_fit_one_scheduler_step_each():
    from orchestrator.generation.backends.vllm import prefill_groups

    assert prefill_groups([3, 3, 3, 5, 9, 1], (6, 99)) == [[0, 1], [2], [3], [4], [5]]
    assert prefill_groups([1, 1, 1], (6, 2)) == [[0, 1], [2]]  # at most max_num_seqs each
    assert prefill_groups([], (6, 2)) == []
