"""The one set of job states, and SLURM's names for them (recorded in tests/executors/fixtures/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.states import (
    ACTIVE_STATES,
    CANCELLED,
    COMPLETED,
    FAILED_STATES,
    FINAL_STATES,
    PENDING,
    RUNNING,
    SLURM_STATES,
    TIMEOUT,
    normalise,
)

FIXTURES = Path(__file__).parent.parent / "executors" / "fixtures"


def test_every_state_is_active_or_final():
    assert not ACTIVE_STATES & FINAL_STATES
    assert set(SLURM_STATES.values()) <= ACTIVE_STATES | FINAL_STATES
    assert FAILED_STATES == FINAL_STATES - {COMPLETED}


@pytest.mark.parametrize(
    "text, ours",
    [
        ("PENDING", PENDING),
        ("RUNNING", RUNNING),
        ("COMPLETING", RUNNING),
        ("COMPLETED", COMPLETED),
        ("CANCELLED by 0", CANCELLED),  # sacct names who cancelled
        ("CANCELLED+", CANCELLED),  # squeue's short form
        ("TIMEOUT", TIMEOUT),
        ("DEADLINE", TIMEOUT),
        ("BOOT_FAIL", "NODE_FAIL"),
        ("OUT_OF_MEMORY", "OUT_OF_MEMORY"),
        ("REQUEUE_HOLD", "REQUEUED"),
        ("SOMETHING_NEW", PENDING),  # unknown: asked about again, never closed
        ("", PENDING),
        ("  ", PENDING),
    ],
)
def test_normalise(text, ours):
    assert normalise(text) == ours


def test_every_recorded_state_is_known():
    names = ("squeue_running.txt", "squeue_done.txt", "sacct_running.txt", "sacct_done.txt")
    texts = [line.split("|")[1] for name in names for line in (FIXTURES / name).read_text().splitlines()]
    assert all(t.split()[0] in SLURM_STATES for t in texts), texts
