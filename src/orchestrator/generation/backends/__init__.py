"""Inference backends behind one small contract (base.Backend); registered by import path so a
heavy backend (vllm) is imported only when asked for."""

from __future__ import annotations

import importlib

BACKENDS: dict[str, str] = {
    "transformers": "orchestrator.generation.backends.hf:TransformersBackend",
    "vllm": "orchestrator.generation.backends.vllm:VLLMBackend",
}


def load_backend(name: str, model: base.ModelConfig, **options):  # noqa: F821
    if name not in BACKENDS:
        from orchestrator.core.errors import UserError

        raise UserError(f"backend {name!r} is unknown; use one of: {', '.join(sorted(BACKENDS))}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(model, **options)
