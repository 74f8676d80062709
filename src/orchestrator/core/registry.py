"""Experiment registry (stdlib sqlite3 at logs/registry.sqlite): experiments, jobs, and one row
per array task (= run), with script and log paths, states, exit codes and timestamps."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.errors import StorageError
from orchestrator.core.files import on_network_filesystem
from orchestrator.core.states import FINAL_STATES, PENDING

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY, kind TEXT, spec_path TEXT, spec_json TEXT, created REAL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scheduler_id TEXT NOT NULL,          -- sbatch job id, or the local controller's pid
    executor TEXT NOT NULL,              -- slurm | local
    experiment TEXT NOT NULL, stage TEXT NOT NULL,
    folder TEXT NOT NULL, script TEXT,   -- submitit folder; rendered script (slurm)
    n_tasks INTEGER NOT NULL, depends_on TEXT, submitted REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    job INTEGER NOT NULL REFERENCES jobs(id), task INTEGER NOT NULL,
    experiment TEXT NOT NULL, run TEXT NOT NULL, outputs TEXT NOT NULL,
    state TEXT NOT NULL, exit_code INTEGER, reason TEXT, node TEXT,
    started REAL, ended REAL, updated REAL,
    PRIMARY KEY (job, task));
CREATE INDEX IF NOT EXISTS tasks_by_run ON tasks(experiment, run);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks(state);
"""


@dataclass
class Task:
    job: int
    task: int
    experiment: str
    run: str
    outputs: list[str]
    state: str
    exit_code: int | None
    reason: str | None
    node: str | None
    started: float | None
    ended: float | None
    # from the job row
    scheduler_id: str
    executor: str
    stage: str
    folder: str
    n_tasks: int
    depends_on: list[str]  # what its job waits for: job ids / keys (slurm), runs (local)
    submitted: float  # when its job was submitted (time.time())

    @property
    def key(self) -> str:
        """The scheduler's name for this task: '123' for a job, '123_4' for an array task."""
        return f"{self.scheduler_id}_{self.task}" if self.n_tasks > 1 else self.scheduler_id

    @property
    def log(self) -> Path:
        return paths.job_log(Path(self.folder), self.key)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


class RegistryUnwritable(StorageError):
    """The registry could not be written (a full disk, a read-only filesystem); nothing changed."""


class RegistryLocked(RegistryUnwritable):
    """Another process held the registry's write lock for longer than the connection waits."""


# sqlite's primary result codes that are about the storage, not about our SQL
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR = 5, 6, 8, 10
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26
_STORAGE_CODES = {_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB}
_NEARLY_FULL_BYTES = 1 << 20  # an I/O error with less free than this is a full disk


def storage_error(path: Path, e: BaseException) -> RegistryUnwritable | None:
    """What a failed registry write means for the user, or None for a programming error (bad SQL,
    a nested transaction), which must surface as it is, not as advice about the disk."""
    code = getattr(e, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    what = f"could not write the job registry {path}"
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return RegistryLocked(
            f"{what}: it is locked by {_lock_holders(path)}; wait for that command to finish "
            "(or stop it if it hangs) and run the command again"
        )
    # sqlite reports a write that failed with ENOSPC as SQLITE_FULL; a failed WAL-index or sync
    # as an I/O error, which is the full disk when nothing is left on it
    full = primary == _SQLITE_FULL or (primary == _SQLITE_IOERR and _free_bytes(path) < _NEARLY_FULL_BYTES)
    if full:
        return RegistryUnwritable(
            f"{what}: its filesystem is full ({_free_bytes(path) / 2**20:.1f} MiB free); "
            "free space on its filesystem and run the command again"
        )
    if primary == _SQLITE_READONLY:
        return RegistryUnwritable(
            f"{what}: {e} (a read-only filesystem or file); make it writable, or set ORCH_HOME to a writable "
            "directory, and run the command again"
        )
    if primary in _STORAGE_CODES:
        return RegistryUnwritable(f"{what}: {e}")
    return None


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return 0


def _lock_holders(path: Path) -> str:
    """Who holds a write lock on the database or its WAL index (/proc/locks: sqlite's fcntl
    locks), as "pid N (command line)"; 'another process' where that cannot be read."""
    inodes = set()
    for f in (path, path.with_name(path.name + "-shm")):
        try:
            st = f.stat()
        except OSError:
            continue
        inodes.add(f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}")
    pids = []
    try:
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()  # "1: POSIX ADVISORY WRITE <pid> <maj:min:inode> <start> <end>"
            if (
                "->" not in fields
                and len(fields) >= 6
                and fields[3] == "WRITE"
                and fields[5] in inodes
                and fields[4] not in pids
            ):
                pids.append(fields[4])
    except OSError:
        pass
    if not pids:
        return "another process"
    return ", ".join(f"pid {pid} ({_command(pid)})" for pid in pids)


def _command(pid: str) -> str:
    if pid == str(os.getpid()):
        return "this process"
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "command unknown"


class Registry:
    def __init__(self, path: Path | None = None):
        self.path = path or paths.registry_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite creates a database 0644 whatever the umask, and its -wal/-shm/-journal with the
        # database's mode: created here as open() would, the group can read and write all of them.
        if not self.path.exists():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
            except FileExistsError:
                pass  # another command created it first
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        # WAL's shared memory works on one host only: on NFS/Lustre a rollback journal, fsynced fully.
        self.network_fs = on_network_filesystem(self.path.parent)
        self.db.execute(f"PRAGMA journal_mode={'DELETE' if self.network_fs else 'WAL'}")
        self.db.execute(f"PRAGMA synchronous={'FULL' if self.network_fs else 'NORMAL'}")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: one writer at a time, so two submits cannot both decide to submit.
        All or nothing. A registry that cannot be written raises RegistryUnwritable saying why (a
        full disk, a read-only file, RegistryLocked: who holds the lock); a programming error
        (bad SQL, a transaction inside a transaction) is raised as it is."""
        if self.db.in_transaction:
            raise RuntimeError(
                "Registry.transaction() inside another transaction: sqlite has no nested transactions, and "
                "each Registry method opens its own; call it outside the `with registry.transaction()` block"
            )
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise (storage_error(self.path, e) or e) from e
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as e:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                err = storage_error(self.path, e)
                if err is not None:
                    raise err from e
            raise

    def add_experiment(self, name: str, kind: str, spec_path: str, spec_json: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO experiments VALUES (?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                "kind=excluded.kind, spec_path=excluded.spec_path, spec_json=excluded.spec_json",
                (name, kind, spec_path, spec_json, time.time()),
            )

    def add_job(
        self,
        scheduler_id: str,
        executor: str,
        experiment: str,
        stage: str,
        folder: str,
        script: str | None,
        runs: list[tuple[str, list[str]]],
        depends_on: list[str],
    ) -> int:
        now = time.time()
        with self.transaction() as db:  # the job and its tasks, or neither
            cur = db.execute(
                "INSERT INTO jobs (scheduler_id, executor, experiment, stage, folder, script, n_tasks, depends_on, "
                "submitted) VALUES (?,?,?,?,?,?,?,?,?)",
                (scheduler_id, executor, experiment, stage, folder, script, len(runs), ",".join(depends_on), now),
            )
            job = cur.lastrowid
            assert job is not None  # set by every INSERT
            db.executemany(
                "INSERT INTO tasks (job, task, experiment, run, outputs, state, updated) VALUES (?,?,?,?,?,?,?)",
                [(job, i, experiment, run, json.dumps(outs), PENDING, now) for i, (run, outs) in enumerate(runs)],
            )
        return job

    _TASKS = (
        "SELECT t.*, j.scheduler_id, j.executor, j.stage, j.folder, j.n_tasks, j.depends_on, j.submitted"
        " FROM tasks t JOIN jobs j ON j.id = t.job"
    )

    def tasks(self, experiment: str | None = None, only_open: bool = False, latest: bool = True) -> list[Task]:
        """Tasks, newest submission per run when `latest` (a resubmitted run replaces its old row)."""
        where, args = [], []
        if experiment:
            where.append("t.experiment = ?")
            args.append(experiment)
        if only_open:
            where.append(f"t.state NOT IN ({','.join('?' * len(FINAL_STATES))})")
            args += sorted(FINAL_STATES)
        if latest:
            where.append(
                "t.job = (SELECT MAX(t2.job) FROM tasks t2 WHERE t2.experiment = t.experiment AND t2.run = t.run)"
            )
        sql = self._TASKS + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY t.job, t.task"
        return [self._task(r) for r in self.db.execute(sql, args)]

    def find_job(self, ref: str) -> list[Task]:
        """Tasks of a job given as '123', '123_4' (one array task) or a local pid."""
        base, _, index = ref.partition("_")
        rows = self.db.execute(
            self._TASKS + " WHERE j.id = (SELECT MAX(id) FROM jobs WHERE scheduler_id = ?) ORDER BY t.task", (base,)
        ).fetchall()
        tasks = [self._task(r) for r in rows]
        if index:
            tasks = [t for t in tasks if str(t.task) == index]
        return tasks

    def update_tasks(self, updates: list[tuple[Task, dict]]) -> None:
        now = time.time()
        with self.transaction() as db:
            for t, fields in updates:
                cols = ", ".join(f"{k} = ?" for k in fields)
                db.execute(
                    f"UPDATE tasks SET {cols}, updated = ? WHERE job = ? AND task = ?",
                    (*fields.values(), now, t.job, t.task),
                )

    def experiments(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM experiments ORDER BY created").fetchall()

    def kind_of(self, experiment: str) -> str | None:
        """The kind recorded when the experiment was submitted (None: never submitted here)."""
        row = self.db.execute("SELECT kind FROM experiments WHERE name = ?", (experiment,)).fetchone()
        return row["kind"] if row else None

    @staticmethod
    def _task(r: sqlite3.Row) -> Task:
        d = dict(r)
        d["outputs"] = json.loads(d["outputs"])
        d["depends_on"] = [x for x in (d["depends_on"] or "").split(",") if x]
        d.pop("updated", None)
        return Task(**d)
