"""Fixtures for inference tests: one tiny random-weight model built locally per session."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    from orchestrator.tiny import build_model

    return build_model(tmp_path_factory.mktemp("tiny") / "tiny-model")


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_path):
    from orchestrator.backends import load_backend
    from orchestrator.models import ModelConfig

    backend = load_backend("transformers", ModelConfig(name="tiny", path=str(tiny_model_path)), batch_size=4)
    yield backend
    backend.close()
