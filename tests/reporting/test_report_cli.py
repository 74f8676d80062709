"""`orchestrate report`: prints the path, writes the files, exit 2 with where it looked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.core import paths
from reporting.fixtures import training_experiment


def test_report_prints_its_path(cli, orch_home):
    training_experiment("mtl")
    res = cli("report", "mtl")
    assert res.code == 0, res.err
    report = Path(res.out.strip())
    assert report == paths.report_dir("mtl") / "report.md" and report.is_file()
    assert {p.name for p in report.parent.iterdir()} >= {"report.md", "results.csv", "results.json", "plots"}
    assert "warning: logs/mtl/eval/baseline/epoch_4/gsm8k.json: not valid JSON" in res.err


def test_report_formats_and_out_dir(cli, orch_home, tmp_path):
    training_experiment("mtl")
    res = cli("report", "mtl", "--out", tmp_path / "o", "--format", "json")
    assert res.code == 0 and Path(res.out.strip()) == tmp_path / "o" / "results.json"
    assert json.loads((tmp_path / "o" / "results.json").read_text())["experiment"] == "mtl"
    res = cli("report", "mtl", "--out", tmp_path / "o", "--format", "csv")
    assert Path(res.out.strip()).read_text().startswith("source,experiment,arm,run,")


def test_unknown_experiment_exits_2(cli, orch_home):
    res = cli("report", "nope")
    assert res.code == 2 and res.out == ""
    assert "unknown experiment 'nope'" in res.err and str(paths.experiment_dir("nope")) in res.err


def test_experiment_without_results_exits_2(cli, orch_home):
    paths.experiment_dir("bare").mkdir(parents=True)
    res = cli("report", "bare")
    assert res.code == 2
    assert "no results for experiment 'bare'" in res.err and "eval/<arm>/<checkpoint>/<task>.json" in res.err
    assert not paths.report_dir("bare").exists()  # nothing half-written


def test_report_imports_no_heavy_modules(orch_home):
    training_experiment("mtl")
    code = (
        "import sys; from orchestrator.cli import main; assert main(['report', 'mtl']) == 0; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'ray', 'vllm', 'wandb')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
