"""The sandbox's isolation mechanics: the supervisor that `sandbox.run_program` starts for each run.

Layout of one run::

    parent (`sandbox.run_program`, any thread)
     └─ supervisor  `python -I -S sandbox_supervisor.py CFG FD`, root, new session; sets up isolation
         └─ ns-init   PID 1 of a new PID namespace; reaps everything; when it exits the kernel
             │        kills whatever is left in the namespace
             └─ program  `python -I main.py` as a throw-away uid, rlimited, in the work dir

Containment, strongest first (each layer degrades on its own; `ExecResult.isolation` lists what
applied to a run). As root:

* unprivileged uid: every run gets its own uid from `UID_RANGE` (locked with flock, so parallel
  runs and parallel processes never share one). This makes RLIMIT_NPROC bite (the kernel does not
  enforce it for root), makes every root-owned file unwritable, and lets us kill "everything of
  that uid" at the end. no_new_privs stops setuid binaries from handing root back.
* mount namespace: the whole file system is re-mounted read-only for the program; the work dir is
  a size-capped tmpfs (its only writable place besides a private /dev/shm), so world-writable
  /tmp and /var/tmp are read-only too and nothing it writes reaches the disk.
* network namespace: only a downed loopback device, so any connect() fails (ENETUNREACH).
* PID namespace: the program sees (with a private /proc) and can signal only its own processes,
  and killing ns-init tears all of them down, including ones that setsid()/double-fork.
* rlimits: address space (memory), CPU seconds, processes, file size, open files, no core dumps.
* wall-clock timeout enforced by the parent, which then kills the whole tree.

Fallbacks, where namespaces are refused (e.g. a container's seccomp profile) or we are not root:

* root without namespaces: the uid, rlimits and the uid sweep still hold, but world-writable
  dirs (/tmp, /dev/shm) are writable, the network is blocked only by replacing `socket` in
  Python (weak: ctypes/_posixsubprocess get around it), and the interpreter must be readable by
  an unprivileged uid (else SandboxError; a pyenv under /root is not).
* not root: an unprivileged user namespace gives net/ipc/pid isolation where the kernel allows
  one, else the `socket` block; rlimits (NPROC counted on top of the caller's own processes);
  killing the process group and, as a subreaper, every orphan. Writes are limited only by the
  caller's own permissions.

Only the standard library is used: this file doubles as the supervisor script, so it must not
import from the package.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

# The throw-away uids: far above any real account (and above the usual 100000+ subuid ranges).
UID_BASE = 2_100_000_000
UID_COUNT = 1024
UID_RANGE = range(UID_BASE, UID_BASE + UID_COUNT)

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18

# Fallback when no network namespace is possible: a weak, Python-level block.
_NO_NET_PRELUDE = """\
import runpy, socket, _socket, sys
def _no_network(*args, **kwargs):
    raise PermissionError("network access is disabled in this sandbox")
for _m in (socket, _socket):
    _m.socket = _m.socketpair = _no_network
socket.create_connection = socket.create_server = socket.getaddrinfo = _no_network
sys.argv = ["main.py"]
runpy.run_path("main.py", run_name="__main__")
"""


def _supervise(argv: list[str]) -> None:
    import ctypes

    cfg = json.loads(argv[1])
    report_fd = int(argv[2])
    os.set_inheritable(report_fd, False)  # the program itself never gets it

    def report(**kv) -> None:
        os.write(report_fd, (json.dumps(kv) + "\n").encode())

    libc = ctypes.CDLL(None, use_errno=True)
    uid = cfg["uid"]
    try:
        # Orphaned grandchildren are re-parented to us and reaped here, not left as zombies
        # under a PID 1 that may never reap them.
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

        def unshare(flags: int, names: list[str]) -> bool:
            if libc.unshare(flags) == 0:
                report(applied=names)
                return True
            report(warning=f"unshare {'+'.join(names)}: {os.strerror(ctypes.get_errno())}")
            return False

        if not cfg["namespaces"]:
            mount_ns = net_ns = pid_ns = False
        elif uid is not None:
            mount_ns = unshare(_CLONE_NEWNS, ["mount-ns"])
            net_ns = unshare(_CLONE_NEWNET, ["net-ns"])
            unshare(_CLONE_NEWIPC, ["ipc-ns"])
            pid_ns = unshare(_CLONE_NEWPID, ["pid-ns"])
        else:  # unprivileged: a user namespace is the ticket to the others
            mount_ns = False
            net_ns = pid_ns = unshare(
                _CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWPID,
                ["user-ns", "net-ns", "ipc-ns", "pid-ns"],
            )
        if mount_ns:
            _setup_filesystem(libc, cfg, report)
        if not net_ns:
            report(applied=["socket-blocked"])
        argv_user = [cfg["python"], "-I", "main.py"] if net_ns else [cfg["python"], "-I", "-c", _NO_NET_PRELUDE]
    except Exception as e:  # noqa: BLE001 - reported to the parent as SandboxError
        report(fatal=f"{type(e).__name__}: {e}")
        os._exit(70)

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        if pid_ns:
            _ns_init(libc, cfg, argv_user, mount_ns, report)
        _exec_program(libc, cfg, argv_user, report)

    def on_timeout(*_):  # SIGTERM from the parent: the wall-clock timeout
        try:  # with a PID namespace, killing ns-init takes down everything in it
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, on_timeout)
    if not pid_ns:
        report(pgid=child)  # the program's process group, for the parent's last-resort kill
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    status = _wait_for(child)
    if not pid_ns:
        if status is not None:
            report(status=status)
        # Whatever the program left running: everything of its uid (atomic, fork-bomb proof),
        # its process group, then anything re-parented to us. (With a PID namespace all of it
        # is already gone, and no fork() would be possible here anyway.)
        if uid is not None:
            _kill_uid(uid)
        try:
            os.killpg(child, signal.SIGKILL)
        except OSError:
            pass
    _kill_descendants()
    os._exit(0)


def _ns_init(libc, cfg, argv_user, mount_ns, report) -> None:
    """PID 1 of the new PID namespace: start the program, reap, exit when it exits."""
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # supervisor gone → namespace gone
    if mount_ns:  # a /proc of this namespace: the program sees only its own processes
        if _mount(libc, "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC) == 0:
            report(applied=["private-proc"])
    pid = os.fork()
    if pid == 0:
        _exec_program(libc, cfg, argv_user, report)
    status = _wait_for(pid)
    report(status=status)
    os._exit(0)  # PID 1 exiting SIGKILLs every process left in the namespace


def _exec_program(libc, cfg, argv_user, report) -> None:
    """In the forked child: limits, drop to the sandbox uid, exec the program. Never returns."""
    import resource

    try:
        os.setsid()  # own session/group, detached from the supervisor's
        os.chdir(cfg["box"])
        for name, value in cfg["limits"].items():
            resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, value + (name == "CPU")))
        uid = cfg["uid"]
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # setuid binaries cannot give root back
        os.execve(cfg["python"], argv_user, cfg["env"])
    except BaseException as e:  # noqa: BLE001
        report(exec_error=f"{type(e).__name__}: {e}")
    os._exit(127)


def _wait_for(pid: int) -> int | None:
    """Reap children (orphans included) until `pid` exits; its raw wait status."""
    while True:
        try:
            got, status = os.wait()
        except ChildProcessError:
            return None
        if got == pid:
            return status


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid`: kill(-1) from a helper running as that uid reaches exactly
    those, and the kernel does it atomically with respect to fork (a fork bomb cannot outrun it)."""
    helper = os.fork()  # the supervisor is single-threaded, so a plain fork is safe
    if helper == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)  # everything this uid may signal, except the helper
        except OSError:
            pass
        os._exit(0)
    os.waitpid(helper, 0)


def _kill_descendants(grace_s: float = 5.0) -> None:
    """Kill and reap everything below us: as a subreaper we inherit every orphan of the program
    (double-forked, setsid'd...), so "no children left" means nothing of the run survives."""
    me = str(os.getpid())
    end = time.monotonic() + grace_s
    while time.monotonic() < end:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            return
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = f.read().rsplit(")", 1)[1].split()[1]
                if ppid == me:
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
        time.sleep(0.005)


def _mount(libc, source, target, fstype, flags, data=None) -> int:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    return libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data))


def _must_mount(libc, source, target, fstype, flags, data=None) -> None:
    import ctypes

    if _mount(libc, source, target, fstype, flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _mountpoints() -> list[str]:
    import re

    unescape = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), s)  # noqa: E731
    with open("/proc/self/mountinfo") as f:
        return list(dict.fromkeys(unescape(line.split()[4]) for line in f))


def _setup_filesystem(libc, cfg, report) -> None:
    """In the new mount namespace (as root): everything read-only except a tmpfs work dir."""
    box, uid = cfg["box"], cfg["uid"]
    _must_mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing propagates to the host
    with open(os.path.join(box, "main.py"), "rb") as f:
        code = f.read()

    # Interpreter dirs behind untraversable parents: hide the parent, bind just those dirs back.
    for parent, dirs in cfg["reexpose"].items():
        fds = [os.open(d, os.O_PATH | os.O_DIRECTORY) for d in dirs]
        _must_mount(libc, "tmpfs", parent, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
        for d, fd in zip(dirs, fds):
            os.makedirs(d, exist_ok=True)
            _must_mount(libc, f"/proc/self/fd/{fd}", d, None, _MS_BIND | _MS_REC)
            os.close(fd)

    # Read-only everywhere. MS_BIND|MS_REMOUNT changes this namespace's mount flags only; the
    # host's file systems stay writable.
    for mp in _mountpoints():
        try:
            keep = os.statvfs(mp).f_flag & (os.ST_NODEV | os.ST_NOEXEC)
        except OSError:
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | keep
        if _mount(libc, None, mp, None, flags) != 0:
            report(warning=f"could not make {mp} read-only")
    report(applied=["readonly-fs"])

    # The writable places: the work dir (tmpfs owned by the run's uid, capped at disk_mb, gone
    # with the namespace) and a private /dev/shm (multiprocessing needs one).
    size = f"size={cfg['disk_mb']}m"
    _must_mount(libc, "tmpfs", box, "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode=0700,uid={uid},gid={uid}")
    with open(os.path.join(box, "main.py"), "wb") as f:
        f.write(code)
    os.mkdir(os.path.join(box, "tmp"), 0o700)
    for p in ("main.py", "tmp"):
        os.chown(os.path.join(box, p), uid, uid)
    if os.path.isdir("/dev/shm"):
        _must_mount(libc, "tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, f"{size},mode=1777")
    report(applied=["tmpfs-workdir"])


if __name__ == "__main__":
    _supervise(sys.argv)
