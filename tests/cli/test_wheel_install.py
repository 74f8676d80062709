"""The wheel alone, installed (non-editable) into a fresh virtual environment with the core
dependencies, runs the whole chain from an empty directory: init, list, render, submit, wait, report.
Nothing is written inside the environment; the state lives in the project."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


def _files(root: Path) -> set[str]:
    # compiled bytecode is Python's own cache (pip writes it at install; a first import may add some)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".pyc"}


@pytest.mark.slow
def test_wheel_install_runs_hello_from_an_empty_project(tmp_path):
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            tmp_path / "dist",
            REPO,
        ],
        check=True,
        timeout=600,
    )
    wheel = next((tmp_path / "dist").glob("orchestrator-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
    subprocess.run([venv / "bin" / "pip", "install", "--quiet", wheel], check=True, timeout=900)
    installed = time.monotonic() - t0
    before = _files(venv)

    project = tmp_path / "empty"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"

    def orchestrate(*args: str) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [venv / "bin" / "orchestrate", *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
        )
        assert res.returncode == 0, f"orchestrate {' '.join(args)}: {res.stdout}\n{res.stderr}"
        return res

    assert orchestrate("--version").stdout.startswith("orchestrate 0.")
    orchestrate("init")
    listed = orchestrate("list").stdout
    assert "hello" in listed and "built-in" in listed  # the project's copies and the shipped specs
    assert "#SBATCH" in orchestrate("render", "mtl-comparison-tiny").stdout
    orchestrate("submit", "hello", "--executor", "local")
    orchestrate("wait", "hello", "--timeout", "300")
    report = orchestrate("report", "hello").stdout.strip().splitlines()[-1]
    elapsed = time.monotonic() - t0
    print(f"\nwheel + venv + install: {installed:.1f} s; + init/list/render/submit/wait/report: {elapsed:.1f} s")

    assert Path(report).resolve().is_relative_to(project)
    assert (project / "logs" / "registry.sqlite").is_file()
    assert sorted(p.read_text() for p in (project / "logs" / "hello").glob("count-*/count.txt")) == ["1", "2", "3"]
    assert _files(venv) == before  # nothing written into the Python installation
