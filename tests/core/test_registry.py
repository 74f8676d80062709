"""What the registry says when it cannot be written: a full disk, a lock another process holds,
and a programming error (a transaction inside a transaction) each told as what it is."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from orchestrator.core.registry import Registry, RegistryLocked, RegistryUnwritable

HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@pytest.fixture
def registry(orch_home):
    reg = Registry()
    yield reg
    reg.close()


def add(reg: Registry, n_runs: int = 1, job: str = "1") -> int:
    return reg.add_job(job, "slurm", "exp", "s", "/tmp/f", None, [(f"r{i}", []) for i in range(n_runs)], [])


def jobs(reg: Registry) -> int:
    return reg.db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]


def test_full_disk_says_so_and_writes_nothing(registry):
    add(registry)
    # sqlite's own limit on the file's size fails a write the way a full disk does (SQLITE_FULL)
    pages = registry.db.execute("PRAGMA page_count").fetchone()[0]
    registry.db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(RegistryUnwritable) as err:
        add(registry, n_runs=5000, job="2")
    assert "its filesystem is full" in str(err.value)
    assert "free space on its filesystem" in str(err.value)
    assert not isinstance(err.value, RegistryLocked)
    assert jobs(registry) == 1 and len(registry.tasks()) == 1  # the job and its tasks, or neither


def test_locked_registry_names_the_process_holding_it(registry):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(registry.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        registry.db.execute("PRAGMA busy_timeout=100")  # instead of the minute a command waits
        with pytest.raises(RegistryLocked) as err:
            add(registry)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    message = str(err.value)
    assert f"locked by pid {holder.pid} (" in message and "-c" in message
    assert "free space" not in message
    add(registry)  # the lock released: the same write goes through
    assert jobs(registry) == 1


def test_nested_transaction_is_a_programming_error_not_a_disk_problem(registry):
    with pytest.raises(RuntimeError, match="inside another transaction") as err:
        with registry.transaction():
            add(registry)
    assert not isinstance(err.value, OSError)  # not a StorageError: no advice about the disk
    assert "free space" not in str(err.value)
    assert jobs(registry) == 0
    add(registry)  # the connection is usable afterwards
    assert jobs(registry) == 1


def test_bad_sql_is_raised_as_it_is(registry):
    add(registry)
    with pytest.raises(sqlite3.OperationalError, match="no such column") as err:
        registry.update_tasks([(registry.tasks()[0], {"no_such_column": 1})])
    assert not isinstance(err.value, RegistryUnwritable)
