"""How every result file is written and read: the one implementation of each.

- `write_atomic` / `write_json_atomic`: temp file in the same directory, fsync, rename, fsync of
  the directory. A reader sees the old file or the new one, never a mix; a kill leaves no file.
- `append_jsonl`: a batch of JSON lines in ONE write, then fsync. A kill mid-write can leave a torn
  last line and nothing else; a write that fails (a full disk) is cut back off the file.
- Either raises `WriteFailed` (an OSError) naming the file, the filesystem's free space and that
  what was written before is intact, so a job on a full disk fails with a message that says so.
- `read_jsonl`: the one rule for a torn last line: a last line without its newline was never
  finished, so it is not a record. A writer about to append again passes `repair=True`, which
  cuts it off the file so the next batch starts on a fresh line. A complete line that is not a
  JSON object is damage someone should look at: `JsonlContent.bad_lines` lists it.
- `SCHEMA_VERSION`: the version every result file carries.
- Modes: every file gets what a plain `open()` would under the caller's umask (0666 minus it), so
  a group directory under `umask 002` stays readable and writable by the group. Nothing written
  is secret. `honour_umask` fixes what libraries create private (safetensors: a 0600 temp file).
- `filesystem_type` / `on_network_filesystem`: which file system holds a path (`/proc/mounts`),
  for the registry, which cannot use SQLite's WAL on NFS/Lustre.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.core.errors import StorageError

SCHEMA_VERSION = 1


def jsonable(x: Any) -> Any:
    """json.dumps default: numpy/torch scalars and arrays, paths, sets."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, (set, frozenset)):
        return sorted(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteFailed(StorageError):
    """A result file could not be written (typically ENOSPC); the file is as it was before."""


def _write_failed(path: Path, e: OSError, kept: str) -> WriteFailed:
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return WriteFailed(
        e.errno,
        f"could not write {path}: {e.strerror or e} ({free} on its filesystem); {kept}. Free space and run again",
    )


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` all at once (temp file + fsync + rename)."""
    path = Path(path)
    try:
        _write_atomic(path, data.encode() if isinstance(data, str) else data)
    except OSError as e:
        raise _write_failed(path, e, "the previous version, if any, is intact") from e


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new temp file beside `path`, created 0666 minus the umask as open() would create `path`
    (tempfile.mkstemp makes it 0600, and the rename would give the result that mode)."""
    for _ in range(100):  # 2**32 names: a clash is another writer's temp file, try the next
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def _write_atomic(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def dumps(data: Any, indent: int | None = 2) -> str:
    return json.dumps(data, indent=indent, ensure_ascii=False, default=jsonable)


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, dumps(data) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def append_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Append records as JSON lines with one write, then fsync: the batch is on disk or not
    started (a kill mid-write leaves at most a torn last line). Returns how many were written."""
    lines = [json.dumps(r, ensure_ascii=False, default=jsonable) + "\n" for r in records]
    if not lines:
        return 0
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise _write_failed(path, e, "nothing was written") from e
    start = os.fstat(fd).st_size
    try:
        view = memoryview("".join(lines).encode())
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as e:
        try:  # a part of the batch may be in: cut it off, so the file ends on a whole record
            os.ftruncate(fd, start)
            os.fsync(fd)
        except OSError:
            pass  # then the reader's torn-line rule drops it
        raise _write_failed(path, e, f"its {start} bytes written before are intact") from e
    finally:
        os.close(fd)
    return len(lines)


@dataclass
class JsonlContent:
    records: list[dict] = field(default_factory=list)
    torn: bool = False  # the last line had no newline: a write that never finished
    bad_lines: list[int] = field(default_factory=list)  # complete lines that are not JSON objects


def read_jsonl(path: Path, repair: bool = False) -> JsonlContent:
    """The records of a JSON-lines file (see the module docstring for the torn-line rule)."""
    path = Path(path)
    out = JsonlContent()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    end = data.rfind(b"\n") + 1
    if end < len(data):
        out.torn = True
        if repair:
            with open(path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
    for i, line in enumerate(data[:end].split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            out.records.append(rec)
        else:
            out.bad_lines.append(i)
    return out


def first_by_id(records: Iterable[dict], key: str = "id") -> list[dict]:
    """One record per id, the first written (a resumed writer never rewrites a finished one)."""
    seen, out = set(), []
    for r in records:
        if r.get(key) not in seen:
            seen.add(r.get(key))
            out.append(r)
    return out


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if needed) for the `with` block; released
    by the kernel if the process dies, so a killed holder never blocks the next one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def umask() -> int:
    """The process's umask, read without changing it (os.umask sets it, a race with other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(root: Path) -> None:
    """Give every file under `root` (or `root` itself) the mode open() would have given it: for
    libraries that write through a private temp file (safetensors' `save_file` makes 0600 files)."""
    root = Path(root)
    mask = umask()
    for p in [root, *root.rglob("*")] if root.is_dir() else [root]:
        st = p.lstat()
        mode = (0o777 if st.st_mode & 0o111 else 0o666) & ~mask  # an executable stays one
        if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != mode:
            os.chmod(p, mode)


# File systems whose SQLite WAL is unsafe (its shared memory works on one host only): network and
# cluster file systems, where group directories live. `fuse.<name>` for the FUSE clients of them.
NETWORK_FILESYSTEMS = frozenset(
    "nfs nfs4 lustre gpfs cifs smb3 smbfs beegfs ceph cephfs glusterfs afs 9p panfs pvfs2 orangefs wekafs "
    "ocfs2 gfs2".split()
)
NETWORK_FUSE = frozenset("sshfs glusterfs ceph cephfs s3fs gcsfuse juicefs lizardfs moosefs rclone beegfs".split())
MOUNTS = Path("/proc/mounts")


def filesystem_type(path: Path, mounts: Path | None = None) -> str | None:
    """The type of the file system holding `path` (its real path's longest mount-point prefix in
    `mounts`, /proc/mounts by default; the last mount wins on one mount point); None if unknown."""
    real = Path(os.path.realpath(path))
    try:
        lines = Path(mounts or MOUNTS).read_text().splitlines()
    except OSError:
        return None
    best, found = -1, None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes space, tab, newline and backslash in octal (\040)
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        if real.is_relative_to(point) and len(point) >= best:
            best, found = len(point), fields[2]
    return found


def on_network_filesystem(path: Path, mounts: Path | None = None) -> str | None:
    """The network file system's type if `path` is on one (see NETWORK_FILESYSTEMS), else None."""
    fstype = filesystem_type(path, mounts)
    if fstype is None:
        return None
    name = fstype.removeprefix("fuse.")
    network = name in NETWORK_FUSE if fstype.startswith("fuse.") else fstype in NETWORK_FILESYSTEMS
    return fstype if network else None
