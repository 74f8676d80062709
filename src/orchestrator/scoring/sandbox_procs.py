"""The parent side's process housekeeping for the sandbox (scoring/sandbox.py): leasing a
throw-away uid, finding and killing whatever runs under it, and the interpreter directories the
supervisor re-exposes to that uid.
"""

from __future__ import annotations

import os
import signal
import sys

from orchestrator.scoring.sandbox_supervisor import UID_BASE, UID_COUNT


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program in it): set-up error, interpreter unreachable."""


def hard_kill(proc, uid, pgid=None) -> None:
    """Last resort, from the parent: SIGKILL the supervisor's and the program's process groups
    and everything of the run's uid."""
    for group in (proc.pid, pgid):
        try:
            if group:
                os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if uid is not None:
        _kill_uid_from_parent(uid)


def _kill_uid_from_parent(uid: int) -> None:
    # kill(-1) from a process of that uid reaches every process of the uid, atomically w.r.t.
    # fork. A helper does it (the parent is multi-threaded and must not setuid itself); /bin/sh,
    # because our own interpreter may not be executable by that uid.
    import subprocess

    try:
        subprocess.run(
            ["/bin/sh", "-c", "kill -KILL -1"],
            user=uid,
            group=uid,
            extra_groups=[],
            env={},
            cwd="/",
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        pass


def _pids_of(uid: int):
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                yield pid
        except OSError:  # exited meanwhile
            pass


def count_tasks(uid: int) -> int:
    n = 0
    for pid in _pids_of(uid):
        try:
            n += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return n


class UidLease:
    """Exclusive use of one uid from UID_RANGE, across threads and processes (flock)."""

    def __init__(self):
        import fcntl
        import random
        import tempfile

        # private on purpose: the sandbox's uid leases in /tmp, not results; nobody else may take one
        d = os.path.join(tempfile.gettempdir(), "orchestrator-sandbox-uids")
        os.makedirs(d, mode=0o700, exist_ok=True)
        if os.stat(d).st_uid != os.geteuid():
            raise SandboxError(f"{d} is not owned by us; refusing to use it for uid locks")
        start = random.randrange(UID_COUNT)
        for i in range(UID_COUNT):
            uid = UID_BASE + (start + i) % UID_COUNT
            fd = os.open(os.path.join(d, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            if any(_pids_of(uid)):  # left over from a crashed evaluator: clear them first
                _kill_uid_from_parent(uid)
            return
        raise SandboxError(f"all {UID_COUNT} sandbox uids are in use")

    def release(self) -> None:
        os.close(self._fd)  # closing drops the flock


_hidden_cache: dict | None = None


def hidden_interpreter_dirs() -> dict[str, list[str]]:
    """Interpreter dirs under a parent the sandbox uid cannot traverse (e.g. pyenv in /root, 0700).

    Maps that parent → the dirs to re-expose; the supervisor hides the parent behind an empty tmpfs
    and bind-mounts just those dirs back, so the program can run this interpreter and read nothing
    else there.
    """
    global _hidden_cache
    if _hidden_cache is None:
        wanted = sorted(
            {
                os.path.realpath(p)
                for p in (
                    sys.prefix,
                    sys.base_prefix,
                    sys.exec_prefix,
                    sys.base_exec_prefix,
                    os.path.dirname(os.path.realpath(sys.executable)),
                )
            }
        )
        tops: list[str] = []
        for p in wanted:  # keep only outermost dirs
            if not any(p == t or p.startswith(t + "/") for t in tops):
                tops.append(p)
        hidden: dict[str, list[str]] = {}
        for p in tops:
            parts = p.split("/")
            for i in range(2, len(parts)):
                anc = "/".join(parts[:i])
                if not os.stat(anc).st_mode & 0o001:
                    hidden.setdefault(anc, []).append(p)
                    break
        _hidden_cache = hidden
    return _hidden_cache
