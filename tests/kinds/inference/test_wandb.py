"""W&B logging of an inference run: offline by default, grouped by experiment, summary + table."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.kinds.inference.job import log_wandb

pytest.importorskip("wandb")


def test_offline_run_holds_the_summary_and_example_table(orch_home, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    summary = {
        "config": {"model": "tiny"},
        "metrics": {"em": 0.5, "f1": 0.75},
        "calibration": {"auroc": 0.6, "ece": 0.1},
        "hardware": {"gpu_name": None, "energy_wh": None},
        "n": 2,
        "throughput_tokens_per_s": 10.0,
        "wall_time_s": 1.0,
        "load_time_s": 0.5,
    }
    records = [
        {
            "id": str(i),
            "prediction": "a",
            "gold": ["a"],
            "correct": i == 0,
            "confidence": {"mean": 0.9},
            "latency_s": 0.1,
            "completion_tokens": 1,
        }
        for i in range(2)
    ]
    files_dir = log_wandb("exp", "tiny__coqa", summary, records, {})
    assert files_dir is not None
    run_dir = Path(files_dir).parent
    assert run_dir.parent == orch_home / "logs" / "wandb" / "wandb" and run_dir.name.startswith("offline-run-")
    (log,) = run_dir.glob("run-*.wandb")  # the offline record log that `wandb sync` uploads later
    # wandb's service process may still be writing it when finish() returns on a loaded machine
    deadline = time.monotonic() + 60
    while b"examples" not in (data := log.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    for key in (b"metrics/em", b"calibration/auroc", b"throughput_tokens_per_s", b"examples", b"tiny__coqa", b"exp"):
        assert key in data, key  # summary keys, the example table, run name and group are recorded
