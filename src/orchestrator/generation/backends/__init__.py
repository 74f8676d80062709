"""Inference backends behind one small contract (base.Backend); registered by import path so a
heavy backend (vllm) is imported only when asked for."""

from __future__ import annotations

from orchestrator.core.errors import UserError
from orchestrator.core.refs import load_ref
from orchestrator.generation.backends.base import Backend
from orchestrator.generation.models import ModelConfig

BACKENDS: dict[str, str] = {
    "transformers": "orchestrator.generation.backends.hf:TransformersBackend",
    "vllm": "orchestrator.generation.backends.vllm:VLLMBackend",
    "openai": "orchestrator.generation.backends.openai_api:OpenAIBackend",
}


def load_backend(name: str, model: ModelConfig, **options) -> Backend:
    if name not in BACKENDS:
        raise UserError(f"backend {name!r} is unknown; use one of: {', '.join(sorted(BACKENDS))}")
    return load_ref(BACKENDS[name])(model, **options)
