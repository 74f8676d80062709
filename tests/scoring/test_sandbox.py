"""The code-execution sandbox: scoring, containment (timeouts, fork bombs, memory, files, network,
secrets) and pass@k. Every test runs real programs; the whole file takes a few seconds."""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import REPO
from orchestrator.scoring import sandbox
from orchestrator.scoring.sandbox import check_candidate, pass_at_k, run_many, run_program

HUMANEVAL_PROMPT = '''
def add(a: int, b: int) -> int:
    """Return the sum of a and b."""
'''
HUMANEVAL_TEST = """
METADATA = {}

def check(candidate):
    assert candidate(1, 2) == 3
    assert candidate(-1, 1) == 0
"""


def sandbox_processes() -> list[str]:
    """`pid uid state` of every process owned by a sandbox uid (zombies included)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = int(fields["Uid"].split()[0])
        if uid in sandbox.UID_RANGE:
            found.append(f"{pid} {uid} {fields['State'].strip()}")
    return found


def process_count() -> int:
    return sum(1 for p in os.listdir("/proc") if p.isdigit())


# -- scoring ----------------------------------------------------------------------------------


def test_correct_humaneval_candidate_passes():
    res = check_candidate(HUMANEVAL_PROMPT + "    return a + b\n", HUMANEVAL_TEST, "add", timeout_s=10)
    assert res["passed"], res
    assert res["status"] == "ok"


def test_wrong_candidate_fails_with_the_assertion_in_detail():
    res = check_candidate(HUMANEVAL_PROMPT + "    return a - b\n", HUMANEVAL_TEST, "add", timeout_s=10)
    assert not res["passed"]
    assert res["status"] == "error"
    assert "AssertionError" in res["detail"]
    assert "assert candidate(1, 2) == 3" in res["detail"]


def test_mbpp_style_assert_lines():
    program = "def square(x):\n    return x * x\n"
    assert check_candidate(program, ["assert square(3) == 9", "assert square(-2) == 4"])["passed"]
    res = check_candidate(program, "assert square(3) == 9\nassert square(2) == 5\n")
    assert not res["passed"] and "assert square(2) == 5" in res["detail"]


def test_exiting_before_the_tests_is_not_a_pass():
    res = check_candidate("import sys\nsys.exit(0)\n", "assert False", timeout_s=10)
    assert not res["passed"]
    assert "before the tests finished" in res["detail"]


def test_stdin_and_exit_codes():
    res = run_program("import sys\nprint(input()[::-1])\nsys.exit(3)", stdin="abc\n")
    assert (res.stdout, res.returncode, res.status) == ("cba\n", 3, "error")


def test_output_is_truncated():
    res = run_program("print('x' * 3_000_000)", max_output_bytes=1000)
    assert res.status == "ok" and res.output_truncated and len(res.stdout) == 1000


# -- containment ------------------------------------------------------------------------------


def test_infinite_loop_is_killed_at_the_timeout():
    t0 = time.monotonic()
    res = check_candidate("while True:\n    pass\n", "assert True", timeout_s=1)
    elapsed = time.monotonic() - t0
    assert res["status"] == "timeout" and not res["passed"]
    assert elapsed < 5, elapsed
    assert not sandbox_processes()


def test_timeout_kills_setsid_grandchildren():
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(1000)\n"
        "time.sleep(1000)\n"
    )
    t0 = time.monotonic()
    res = run_program(code, timeout_s=1)
    assert res.status == "timeout" and res.timed_out
    assert time.monotonic() - t0 < 5
    assert not sandbox_processes()


def test_background_processes_do_not_outlive_the_program():
    res = run_program("import os, time\nif os.fork() == 0:\n    os.setsid(); time.sleep(1000)\nprint('done')")
    assert res.status == "ok" and res.stdout == "done\n"
    assert res.duration_s < 5
    assert not sandbox_processes()


def test_fork_bomb_is_contained():
    before = process_count()
    t0 = time.monotonic()
    res = run_program("import os\nwhile True:\n    os.fork()\n", timeout_s=5)
    assert time.monotonic() - t0 < 10
    assert res.status in ("error", "timeout")
    assert not sandbox_processes(), "sandbox processes (or zombies) left behind"
    # Loose, as other work runs on this machine too; the uid check above is the exact one.
    assert process_count() < before + 50


def test_fork_bomb_that_ignores_errors_is_killed():
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    res = run_program(code, timeout_s=2)
    assert res.status == "timeout"
    assert time.monotonic() - t0 < 7
    assert not sandbox_processes()


def test_large_allocation_fails_with_memory_error():
    res = run_program("x = bytearray(4 * 1024**3)\nprint('allocated')", memory_mb=512)
    assert res.returncode != 0 and "allocated" not in res.stdout
    assert res.memory_exceeded and "MemoryError" in res.stderr


def test_cpu_limit_kills_a_busy_loop():
    # Generous wall clock: on a loaded machine 1 CPU-second can take several seconds.
    res = run_program("while True:\n    pass\n", timeout_s=30, cpu_s=1)
    assert res.status == "killed" and not res.timed_out
    assert res.returncode == -signal.SIGXCPU


def test_writes_outside_the_work_dir_fail():
    name = f"sandbox-escape-{uuid.uuid4().hex}"
    targets = [f"/tmp/{name}", str(REPO / name), f"/var/tmp/{name}"]
    code = (
        "import os\n"
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('WROTE', path)\n"
        "    except OSError as e:\n"
        "        print('refused', path, e.errno)\n"
        "open('inside.txt', 'w').write('ok')\n"  # the work dir itself is writable
        "print('inside ok')\n"
    )
    try:
        res = run_program(code)
        if "readonly-fs" not in res.isolation:
            pytest.skip(f"no mount namespace here; /tmp stays world-writable ({res.isolation})")
        assert res.status == "ok", res.stderr
        assert "WROTE" not in res.stdout, res.stdout
        assert "inside ok" in res.stdout
        for t in targets:
            assert not os.path.exists(t), t
    finally:
        for t in targets:
            if os.path.exists(t):
                os.remove(t)


def test_work_dir_is_deleted_afterwards(tmp_path):
    res = run_program("import os\nprint(os.getcwd())\nprint(os.environ['TMPDIR'])")
    cwd, tmpdir = res.stdout.split()
    assert tmpdir.startswith(cwd) and tmpdir != "/tmp"
    assert not os.path.exists(cwd)


def test_host_mounts_are_untouched():
    before = Path("/proc/self/mountinfo").read_text()
    run_program("print(1)")
    assert Path("/proc/self/mountinfo").read_text() == before
    probe = REPO / f".sandbox-probe-{uuid.uuid4().hex}"
    probe.write_text("still writable")  # the host's file systems were not made read-only
    probe.unlink()


def test_network_is_blocked():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # reachable from here
        code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('CONNECTED')\n"
        res = run_program(code, timeout_s=10)
    finally:
        server.close()
    if not {"net-ns", "socket-blocked"} & set(res.isolation):
        pytest.skip(f"no network isolation available here ({res.isolation})")
    assert "CONNECTED" not in res.stdout
    assert res.returncode != 0
    assert "OSError" in res.stderr or "PermissionError" in res.stderr


def test_network_namespace_is_used_as_root():
    if os.geteuid() != 0:
        pytest.skip("not root")
    res = run_program("import socket\nsocket.socket().connect(('127.0.0.1', 9))")
    if "net-ns" not in res.isolation:
        pytest.skip(f"unshare(CLONE_NEWNET) refused here; only the weak socket block applies ({res.isolation})")
    assert "Network is unreachable" in res.stderr


def test_parent_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    code = (
        "import os\n"
        "print(dict(os.environ))\n"
        "for path in ['/proc/1/environ', '/proc/%d/environ' % " + str(os.getpid()) + "]:\n"
        "    try:\n"
        "        print(open(path, 'rb').read())\n"
        "    except OSError as e:\n"
        "        print('unreadable', path, e.errno)\n"
    )
    res = run_program(code)
    assert res.status == "ok", res.stderr
    assert "sk-test" not in res.stdout and "OPENAI_API_KEY" not in res.stdout


def test_runs_as_unprivileged_uid():
    if os.geteuid() != 0:
        pytest.skip("not root")
    res = run_program("import os\nprint(os.getuid(), os.geteuid(), os.getgroups())")
    uid, euid, groups = res.stdout.split(maxsplit=2)
    assert int(uid) in sandbox.UID_RANGE and uid == euid and groups.strip() == "[]"


def test_fallback_without_namespaces(monkeypatch):
    """Root without namespaces (e.g. in a seccomp-restricted container): uid, rlimits and the
    uid sweep must still contain fork bombs and timeouts; the socket block stands in for net-ns."""
    if os.geteuid() != 0:
        pytest.skip("not root")
    python = "/usr/bin/python3"  # must be usable by an unprivileged uid without a mount namespace
    if not os.access(python, os.X_OK):
        pytest.skip(f"{python} not available")
    monkeypatch.setattr(sandbox, "_NAMESPACES", False)
    monkeypatch.setattr(sys, "executable", python)
    res = run_program("import socket\nsocket.socket()")
    assert "socket-blocked" in res.isolation and "net-ns" not in res.isolation
    assert "PermissionError" in res.stderr
    t0 = time.monotonic()
    res = run_program("import os, time\nif os.fork() == 0:\n    os.setsid()\nwhile True:\n    pass\n", timeout_s=1)
    assert res.status == "timeout" and time.monotonic() - t0 < 5
    res = run_program("import os\nwhile True:\n    os.fork()\n", timeout_s=5)
    assert res.status in ("error", "timeout")
    assert not sandbox_processes()


# -- parallel evaluation ----------------------------------------------------------------------


def test_run_many_is_parallel_and_ordered():
    items = [
        {"program": "import time\ntime.sleep(1.5)\ndef f():\n    return %d\n" % i, "tests": f"assert f() == {i}"}
        for i in range(4)
    ]
    items.append({"program": "def f():\n    return 0\n", "tests": "assert f() == 1"})
    items.append({"code": "print('plain')", "timeout_s": 5})
    t0 = time.monotonic()
    results = run_many(items, workers=4)
    elapsed = time.monotonic() - t0
    assert [r["passed"] for r in results[:5]] == [True, True, True, True, False]
    assert results[5].stdout == "plain\n"
    assert elapsed < 4.5, f"4 × 1.5 s sleeps took {elapsed:.1f}s with 4 workers (serial: 6 s)"
    assert not sandbox_processes()


# -- pass@k -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (10, 0, 1, 0.0),
        (10, 10, 5, 1.0),
        (10, 1, 1, 0.1),  # c/n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (5, 4, 2, 1.0),  # fewer than k failures: every k-subset has a pass
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_matches_binomials_and_is_stable():
    for n, c, k in [(20, 7, 1), (20, 7, 10), (100, 13, 50), (200, 1, 100)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))
    assert 0.0 < pass_at_k(100_000, 1, 1) == pytest.approx(1e-5)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 6)
