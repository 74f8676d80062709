"""Small helpers shared by the integration tests."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections.abc import Callable
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


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def timed_run(start: Callable[[], subprocess.Popen], records: Path, batches: int) -> tuple[float, float]:
    """An uninterrupted run: (seconds to its first batch on disk, seconds per batch after it)."""
    proc, t0 = start(), time.monotonic()
    while count_lines(records) == 0 and proc.poll() is None:
        time.sleep(0.002)
    first = time.monotonic()
    assert proc.wait(timeout=600) == 0
    return first - t0, (time.monotonic() - first) / max(1, batches - 1)


def kill_at_random_points(
    start: Callable[[], subprocess.Popen], records: Path, kills: int, seed: int, startup_s: float, batch_s: float
) -> list[tuple[int, int]]:
    """Start the in-job runner with `start()` again and again and SIGKILL it at `kills` random
    points (seeded): during start-up (import, model load, first batch), or a random number of
    records later plus a random part of a batch (`timed_run` measures both). After every kill,
    what an earlier run wrote is still the file's prefix. Returns (records before, records at
    the kill) per kill."""
    rng = random.Random(seed)
    done: list[tuple[int, int]] = []
    kept = b""
    for _ in range(3 * kills):
        if len(done) == kills:
            break
        before = count_lines(records)
        in_startup = rng.random() < 0.3
        more = 0 if in_startup else rng.randint(1, 4)
        delay = rng.uniform(0, startup_s) if in_startup else rng.uniform(0, batch_s)
        proc = start()
        while proc.poll() is None and count_lines(records) < before + more:
            time.sleep(0.002)
        deadline = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is not None:
            raise AssertionError(f"the run ended by itself (exit {proc.returncode}) before kill {len(done) + 1}")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        done.append((before, count_lines(records)))
        data = records.read_bytes() if records.exists() else b""
        assert data.startswith(kept), "a killed run rewrote what an earlier one had written"
        kept = data[: data.rfind(b"\n") + 1]
    return done
