"""Small helpers shared by the integration tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

from orchestrator.core.monitor import refresh
from orchestrator.core.registry import Registry

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"  # small data files in the real formats


def wait_final(experiment: str, timeout: float = 180, interval: float = 0.5) -> dict[str, object]:
    """Poll until every unit of `experiment` has a final state; run name → Task."""
    reg = Registry()
    deadline = time.monotonic() + timeout
    while True:
        tasks = refresh(reg, experiment)
        if tasks and all(t.final for t in tasks):
            return {t.run: t for t in tasks}
        if time.monotonic() > deadline:
            raise AssertionError(f"{experiment} not finished after {timeout}s: {[(t.run, t.state) for t in tasks]}")
        time.sleep(interval)


def status_json(cli, experiment: str) -> list[dict]:
    res = cli("status", experiment, "--json")
    assert res.code == 0, res.err
    return json.loads(res.out)
