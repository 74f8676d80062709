"""`make gpu-check` where there is no GPU (here, CI): one line, exit 2, no traceback; its table and
JSON in the labelled CPU dry run; missing packages reported as skipped; the wheel folder installs
only what the Python lacks. The GPU run itself is the command, on a GPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from orchestrator import gpu_check

torch = pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[2]


def gpu_check_sh(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPU_CHECK_PYTHON": sys.executable, "GPU_CHECK_OUT": str(tmp_path / "gc.json"), **env}
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu-check.sh")], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: make gpu-check checks it")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path):
    res = gpu_check_sh(tmp_path)
    assert res.returncode == 2
    assert res.stdout.splitlines() == [res.stdout.strip()] and res.stdout.startswith("gpu-check: no GPU here")
    assert "sees no CUDA device" in res.stdout and "Traceback" not in res.stdout + res.stderr
    assert not (tmp_path / "gc.json").exists()  # nothing checked, nothing written


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: make gpu-check checks it")
def test_cpu_dry_run_prints_the_table_and_writes_the_json(tmp_path):
    res = gpu_check_sh(
        tmp_path,
        GPU_CHECK_ALLOW_CPU="1",
        GPU_CHECK_ONLY="transformers-cuda,nvml,vllm-tp2",
        GPU_CHECK_WHEELS=str(tmp_path / "no-wheels"),
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "gpu-check DRY RUN ON CPU (not a GPU check)" in res.stdout
    report = json.loads((tmp_path / "gc.json").read_text())
    assert report["dry_run"] is True and report["device"].startswith("cpu (dry run")
    rows = {r["check"]: r for r in report["checks"]}
    assert list(rows) == ["wheels", "transformers-cuda", "nvml", "vllm-tp2"]
    assert rows["wheels"]["result"] == "skip" and "no wheel folder" in rows["wheels"]["figure"]
    assert rows["transformers-cuda"]["result"] == "pass"
    assert rows["transformers-cuda"]["figure"].startswith("8/8 texts equal to CPU")
    assert rows["nvml"] == {"check": "nvml", "result": "skip", "figure": "needs a GPU (CPU dry run)"}
    for r in rows.values():  # the table shows what the JSON holds
        assert f"{r['check']}" in res.stdout and r["figure"] in res.stdout
    assert (tmp_path / "gc.json.logs" / "transformers-cuda.log").is_file()


def test_a_missing_package_is_a_skip_with_its_reason(tmp_path, monkeypatch, capsys):
    real = gpu_check.importlib.util.find_spec
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name))
    monkeypatch.setattr(gpu_check, "run_check", lambda *a: pytest.fail("no check runs without its package"))
    for k, v in {
        "GPU_CHECK_ALLOW_CPU": "1",
        "GPU_CHECK_ONLY": "vllm-tp1",
        "GPU_CHECK_OUT": str(tmp_path / "gc.json"),
        "GPU_CHECK_WHEELS": str(tmp_path / "none"),
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(gpu_check, "cuda_device", lambda: ("cuda", "1 × test GPU"))
    assert gpu_check.main() == 0
    rows = json.loads((tmp_path / "gc.json").read_text())["checks"]
    assert rows[-1]["check"] == "vllm-tp1" and rows[-1]["result"] == "skip"
    assert "vLLM is not installed" in rows[-1]["figure"] and "64 MiB" in rows[-1]["figure"]
    assert "vLLM is not installed" in capsys.readouterr().out
    monkeypatch.setenv("GPU_CHECK_ONLY", "vllm-tp3")
    assert gpu_check.main() == 2  # a check name that does not exist


def wheel(folder: Path, project: str, version: str = "1.0") -> Path:
    """A minimal pure-Python wheel holding the package `project` (VALUE = 42)."""
    path = folder / f"{project}-{version}-py3-none-any.whl"
    info = f"{project}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{project}/__init__.py", "VALUE = 42\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def test_the_wheel_folder_installs_only_what_this_python_lacks(tmp_path):
    folder, target = tmp_path / "whl", tmp_path / "site"
    folder.mkdir()
    target.mkdir()
    wheel(folder, "gpucheck_probe")
    wheel(folder, "pytest", "0.0.1")  # importable here: a wheel folder never shadows what the Python has
    result, figure = gpu_check.install_wheels(folder, target)
    assert (result, figure) == ("pass", "installed 1 projects from whl/: gpucheck_probe")
    assert (target / "gpucheck_probe" / "__init__.py").read_text() == "VALUE = 42\n"
    assert not (target / "pytest").exists()
    assert gpu_check.install_wheels(tmp_path / "absent", target)[0] == "skip"
