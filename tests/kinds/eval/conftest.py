"""Fixture experiments for evaluation tests: tiny-model checkpoints in the documented layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "suites"
TINY_SUITE = FIXTURES / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from orchestrator.generation.tiny import build_model

    return build_model(tmp_path_factory.mktemp("tiny") / "model", hidden=32, layers=1, heads=2)


def write_checkpoint(model_dir: Path, experiment: str, arm: str, epoch: int, reward: float) -> Path:
    """What the trainer leaves: epoch_<N>/ (HF files + meta.json), then `latest` last."""
    from orchestrator.core import paths

    d = paths.checkpoint_dir(experiment, arm, epoch)
    shutil.copytree(model_dir, d)
    (d / "meta.json").write_text(
        json.dumps({"epoch": epoch, "step": epoch * 10, "metrics": {"val/reward_mean": reward}, "config": {}})
    )
    (paths.arm_checkpoints_dir(experiment, arm) / "latest").write_text(d.name)
    return d


@pytest.fixture
def make_experiment(orch_home, tiny_model_dir):
    """make_experiment("exp", {"a": [0.1, 0.5], "b": [0.3, 0.2]}): arm → reward per epoch 1..N."""

    def make(experiment: str, arms: dict[str, list[float]]) -> None:
        for arm, rewards in arms.items():
            for epoch, reward in enumerate(rewards, start=1):
                write_checkpoint(tiny_model_dir, experiment, arm, epoch, reward)

    return make
