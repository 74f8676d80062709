"""The vLLM backend without vLLM installed: a clear user error naming the extra, not a crash."""

from __future__ import annotations

import importlib.util

import pytest

from orchestrator.core.errors import UserError
from orchestrator.generation.models import ModelConfig


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_missing_vllm_is_a_user_error():
    from orchestrator.generation.backends import load_backend

    with pytest.raises(UserError, match=r"orchestrator\[vllm\]"):
        load_backend("vllm", ModelConfig(name="m", path="x", tensor_parallel_size=4))
