"""The README's main command, end to end through the test cluster: tiny mtl-comparison →
eval-evolution → report."""

from __future__ import annotations

import pytest

from orchestrator.core.registry import Registry

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_demo_chain_through_slurm(cli, slurm_home):
    res = cli("demo", "--executor", "slurm")
    assert res.code == 0, res.out + res.err
    report = slurm_home / "logs" / "demo" / "report" / "report.md"
    assert str(report) in res.out
    text = report.read_text()
    for section in (
        "## Overview",
        "## baseline vs pcgrad",
        "## Evolution",
        "## Checkpoint choice",
        "## Gradient-conflict diagnostics",
        "## Recommendations",
    ):
        assert section in text
    plots = slurm_home / "logs" / "demo" / "report" / "plots"
    assert (plots / "evolution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    jobs = Registry().db.execute("SELECT n_tasks FROM jobs WHERE experiment = 'demo-eval'").fetchall()
    assert jobs and all(n > 1 for (n,) in jobs)  # checkpoint × task units went in as arrays
    for arm in ("baseline", "pcgrad"):
        assert (slurm_home / "logs" / "demo" / arm / "summary.json").exists()
