"""Run untrusted (LLM-generated) Python in a throw-away sandbox, and score code tasks with it.

The API: `run_program` (one program → `ExecResult`), `check_candidate` (a candidate against its
tests, HumanEval or MBPP style), `run_many` (many in parallel), `pass_at_k` (unbiased estimator).
Each run starts `sandbox_supervisor.py` as a separate process, which sets up the isolation
(throw-away uid, mount/network/PID namespaces, rlimits; see that module for the layers and their
fallbacks); this side leases the uid, enforces the wall-clock timeout, collects the output and
kills whatever is left (the uid lease and the killing: `sandbox_procs.py`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from orchestrator.scoring import sandbox_supervisor
from orchestrator.scoring.sandbox_procs import SandboxError, UidLease, count_tasks, hard_kill, hidden_interpreter_dirs
from orchestrator.scoring.sandbox_supervisor import UID_RANGE

# Try namespaces at all (tests turn this off to exercise the fallback path).
_NAMESPACES = True

__all__ = ["UID_RANGE", "ExecResult", "SandboxError", "check_candidate", "pass_at_k", "run_many", "run_program"]


@dataclass
class ExecResult:
    returncode: int  # negative: killed by that signal (subprocess convention)
    stdout: str
    stderr: str
    timed_out: bool
    memory_exceeded: bool  # heuristic: MemoryError / ENOMEM seen in stderr
    duration_s: float
    status: str  # "ok" (exit 0), "error" (exit != 0), "timeout", "killed" (by a signal, e.g. RLIMIT_CPU)
    output_truncated: bool = False
    isolation: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------


def run_program(
    code: str,
    *,
    stdin: str = "",
    timeout_s: float = 10,
    memory_mb: int = 512,
    cpu_s: int | None = None,
    max_procs: int = 64,
    max_output_bytes: int = 1_000_000,
    disk_mb: int = 64,
) -> ExecResult:
    """Run `code` as `python -I main.py` in a fresh sandbox and return what happened.

    `disk_mb` caps each file (RLIMIT_FSIZE) and, with a mount namespace, the whole work dir.
    Raises SandboxError only when the sandbox could not run the program at all.
    """
    import shutil
    import subprocess
    import tempfile

    is_root = os.geteuid() == 0
    lease = UidLease() if is_root else None
    uid = lease.uid if lease else None
    root = None
    report_r = report_w = -1
    proc = None
    try:
        # root/ (0711, ours) holds stdin; root/box/ is the program's cwd, HOME and TMPDIR parent.
        # Private on purpose, unlike results: scratch in /tmp for untrusted code, removed after.
        root = tempfile.mkdtemp(prefix="orch-sandbox-")
        os.chmod(root, 0o711)
        box = os.path.join(root, "box")
        os.mkdir(box, 0o700)
        os.mkdir(os.path.join(box, "tmp"), 0o700)
        with open(os.path.join(box, "main.py"), "w", encoding="utf-8") as f:
            f.write(code)
        if uid is not None:
            for p in (box, os.path.join(box, "tmp"), os.path.join(box, "main.py")):
                os.chown(p, uid, uid)
        stdin_path = os.path.join(root, "stdin")
        with open(stdin_path, "wb") as f:
            f.write(stdin.encode())

        cfg = {
            "python": sys.executable,
            "uid": uid,
            "box": box,
            "disk_mb": int(disk_mb),
            "namespaces": _NAMESPACES,
            "reexpose": hidden_interpreter_dirs() if is_root else {},
            "limits": {
                # Memory: address space, so a huge allocation fails with MemoryError in-process.
                "AS": memory_mb * 1024 * 1024,
                # CPU seconds: a busy loop dies (SIGXCPU) even if the wall clock is generous.
                "CPU": int(cpu_s if cpu_s is not None else math.ceil(timeout_s) + 1),
                # Processes/threads of the uid: stops fork bombs (only enforced for non-root uids).
                "NPROC": max_procs if uid is not None else count_tasks(os.getuid()) + max_procs,
                # File size: no single file can fill the disk (Python then gets EFBIG).
                "FSIZE": disk_mb * 1024 * 1024,
                # Open files: bounded use of kernel file tables.
                "NOFILE": 1024,
                # No core dumps of crashed programs.
                "CORE": 0,
            },
            # A minimal environment: nothing of ours (API keys, tokens) leaks into the program.
            "env": {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": box,
                "TMPDIR": os.path.join(box, "tmp"),
                "LANG": "C.UTF-8",
            },
        }
        report_r, report_w = os.pipe()
        started = time.monotonic()
        with open(stdin_path, "rb") as stdin_f:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    os.path.abspath(sandbox_supervisor.__file__),
                    json.dumps(cfg),
                    str(report_w),
                ],
                stdin=stdin_f,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(report_w,),
                start_new_session=True,  # own process group: a last-resort killpg reaches all of it
                cwd=root,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        os.close(report_w)
        report_w = -1
        collected = _collect(proc, report_r, started + timeout_s, max_output_bytes, uid)
        duration = time.monotonic() - started
    finally:
        if proc is not None and proc.poll() is None:  # interrupted: never leave a sandbox behind
            hard_kill(proc, uid)
        for fd in (report_r, report_w):
            if fd >= 0:
                os.close(fd)
        if root:
            shutil.rmtree(root, ignore_errors=True)
        if lease:
            lease.release()
    return _result(*collected, duration, proc.returncode, uid)


def _collect(proc, report_r, deadline, limit, uid):
    """Read stdout/stderr (keeping the first `limit` bytes of each) and the supervisor's reports
    until all are closed, escalating if the deadline passes."""
    import selectors

    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    bufs = {out_fd: bytearray(), err_fd: bytearray(), report_r: bytearray()}
    seen = dict.fromkeys(bufs, 0)
    sel = selectors.DefaultSelector()
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    # At the deadline ask the supervisor to kill the run; 3 s later kill it all ourselves; 2 s
    # after that stop waiting for pipes that something out of our reach still holds open.
    steps = [(deadline, "term"), (deadline + 3, "kill"), (deadline + 5, "stop")]
    timed_out = False
    while sel.get_map():
        now = time.monotonic()
        if steps and now >= steps[0][0]:
            step = steps.pop(0)[1]
            if step == "term":
                timed_out = True
                proc.send_signal(signal.SIGTERM)  # no-op if the supervisor already exited
            elif step == "kill":
                hard_kill(proc, uid, _merge_reports(bufs[report_r]).get("pgid"))
            else:
                break
            continue
        for key, _ in sel.select(timeout=max(0.0, steps[0][0] - now) if steps else None):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fd)
                continue
            seen[key.fd] += len(chunk)
            room = (limit if key.fd != report_r else 1 << 20) - len(bufs[key.fd])
            if room > 0:
                bufs[key.fd] += chunk[:room]
    sel.close()
    proc.stdout.close()
    proc.stderr.close()
    try:
        proc.wait(timeout=5)
    except Exception:
        hard_kill(proc, uid)
        proc.wait()
    truncated = seen[out_fd] > limit or seen[err_fd] > limit
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), truncated, _merge_reports(bufs[report_r]), timed_out


def _merge_reports(raw: bytes) -> dict:
    """The supervisor's JSON lines → one dict ("applied" and "warnings" accumulate)."""
    merged: dict = {"applied": [], "warnings": []}
    for line in bytes(raw).splitlines():
        try:
            item = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        for k, v in item.items():
            if k == "applied":
                merged["applied"] += v
            elif k == "warning":
                merged["warnings"].append(v)
            else:
                merged[k] = v
    return merged


def _result(stdout, stderr, truncated, merged, timed_out, duration, sup_rc, uid) -> ExecResult:
    if "fatal" in merged:
        raise SandboxError(f"sandbox set-up failed: {merged['fatal']}")
    if "exec_error" in merged:
        raise SandboxError(
            f"could not start {sys.executable} in the sandbox: {merged['exec_error']} (is the "
            "interpreter readable by an unprivileged uid? without a mount namespace it must be)"
        )
    isolation = ("unprivileged-uid",) if uid is not None else ()
    isolation += tuple(merged["applied"]) + ("no-new-privs", "rlimits", "wall-timeout")

    text_out = stdout.decode("utf-8", "replace")
    text_err = stderr.decode("utf-8", "replace")
    raw = merged.get("status")
    if timed_out:
        status = "timeout"
        returncode = os.waitstatus_to_exitcode(raw) if raw is not None else -signal.SIGKILL
    elif raw is None:
        raise SandboxError(f"sandbox supervisor ended (rc {sup_rc}) without a status; stderr: {text_err[-500:]}")
    else:
        returncode = os.waitstatus_to_exitcode(raw)
        status = "ok" if returncode == 0 else "error" if returncode > 0 else "killed"
    low = text_err.lower()
    memory = "memoryerror" in low or "cannot allocate memory" in low
    return ExecResult(returncode, text_out, text_err, timed_out, memory, duration, status, truncated, isolation)


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def check_candidate(
    program: str,
    tests: str | list[str] | tuple[str, ...],
    entry_point: str | None = None,
    timeout_s: float = 10,
    **run_kwargs,
) -> dict:
    """Run a candidate against its tests; {"passed", "status", "detail", "duration_s"}.

    HumanEval style: `tests` defines `check(candidate)` and `entry_point` names the function, so
    `check(entry_point)` is appended. MBPP style: `tests` is assert lines (a string or a list) and
    `entry_point` is None. A token printed after the tests must reach stdout, so a program that
    exits early (`sys.exit(0)` at import) does not count as passing.
    """
    import secrets

    if not isinstance(tests, str):
        tests = "\n".join(tests)
    token = f"__sandbox_tests_done_{secrets.token_hex(8)}__"
    source = f"{program}\n\n{tests}\n\n"
    if entry_point:
        source += f"check({entry_point})\n"
    source += f"import os as _sandbox_os\n_sandbox_os.write(1, b'\\n{token}\\n')\n"
    res = run_program(source, timeout_s=timeout_s, **run_kwargs)
    passed = res.status == "ok" and token in res.stdout
    if passed:
        status, detail = "ok", ""
    elif res.status == "timeout":
        status, detail = "timeout", f"timed out after {timeout_s:g}s"
    elif res.status == "ok":
        status, detail = "error", "the program exited (code 0) before the tests finished"
    else:
        status = res.status
        detail = _tail(res.stderr) or f"exit code {res.returncode}"
        if res.returncode < 0:
            detail = f"killed by {signal.Signals(-res.returncode).name}\n{detail}".rstrip()
    return {"passed": passed, "status": status, "detail": detail, "duration_s": res.duration_s}


def _tail(text: str, lines: int = 20, chars: int = 2000) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, Codex paper):
    1 - C(n-c, k) / C(n, k), computed as a product to stay stable for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def run_many(items, workers: int | None = None) -> list:
    """Evaluate many items in parallel (threads; each item runs in its own sandbox process).

    An item is a dict of keyword arguments: for `run_program` if it has "code", else for
    `check_candidate` (program, tests, entry_point, ...); a plain string is code to run.
    Results come back in input order. SandboxError propagates.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(item):
        if isinstance(item, str):
            return run_program(item)
        item = dict(item)
        if "code" in item:
            return run_program(item.pop("code"), **item)
        return check_candidate(**item)

    items = list(items)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(one, items))
