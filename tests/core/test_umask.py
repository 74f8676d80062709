"""File modes on a shared cluster: every file the tool writes gets what open() would under the
caller's umask (a group directory under `umask 002` stays the group's), and the registry keeps
off SQLite's WAL on a network file system."""

from __future__ import annotations

import os
import stat

import pytest

from helpers import FIXTURES, REPO, wait_final
from orchestrator.core.files import filesystem_type, on_network_filesystem
from orchestrator.core.registry import Registry

INFER = f"""\
kind: inference
models: [tiny]
tasks:
  - {{task: boolq, dataset: {{data_files: {FIXTURES / "inference" / "boolq.jsonl"}}}, generation: {{max_new_tokens: 4}}}}
device: cpu
limit: 3
batch_size: 2
wandb: {{enabled: false}}
resources: {{time: "15", mem: 2G}}
"""


def modes(home) -> tuple[dict[str, int], dict[str, int]]:
    """The modes of every file and directory under `home`, with the registry open (as while a
    command runs: its -wal and -shm exist)."""
    registry = Registry()
    registry.tasks("any")
    found = {p.relative_to(home).as_posix(): p.lstat() for p in home.rglob("*")}
    registry.close()
    files = {name: stat.S_IMODE(st.st_mode) for name, st in found.items() if stat.S_ISREG(st.st_mode)}
    dirs = {name: stat.S_IMODE(st.st_mode) for name, st in found.items() if stat.S_ISDIR(st.st_mode)}
    return files, dirs


def not_group_rw(files: dict[str, int], dirs: dict[str, int]) -> dict[str, str]:
    return {n: oct(m) for n, m in files.items() if m & 0o660 != 0o660} | {
        n: oct(m) for n, m in dirs.items() if m & 0o770 != 0o770
    }


@pytest.mark.slow
@pytest.mark.parametrize("mask", [0o002, 0o077])
def test_a_chain_writes_every_file_with_the_callers_umask(cli, spec_file, orch_home, mask):
    """hello + a tiny inference (which builds the model: safetensors) + report, run locally:
    under 002 the group can read and write every file and enter every directory; under 077
    nothing is group- or world-readable."""
    old = os.umask(mask)
    try:
        assert cli("submit", REPO / "jobs" / "hello.yaml", "--executor", "local").code == 0
        assert cli("wait", "hello", "--timeout", "600").code == 0
        assert cli("submit", spec_file("inf", INFER), "--executor", "local").code == 0
        assert cli("wait", "inf", "--timeout", "600").code == 0
        assert cli("report", "inf").code == 0
        files, dirs = modes(orch_home)
    finally:
        os.umask(old)
    written = {
        "logs/registry.sqlite",
        "logs/registry.sqlite-wal",
        "logs/registry.sqlite-shm",
        "logs/hello/greet/status.json",
        "logs/hello/count-2/count.txt",
        "logs/inf/tiny__boolq/predictions.jsonl",
        "logs/inf/tiny__boolq/summary.json",
        "logs/inf/report/report.md",
        "models/tiny/model.safetensors",
    }
    assert written <= set(files), sorted(written - set(files))
    jobs = [name for name in files if "/_jobs/" in name]  # submitit's pickles and the units' logs
    assert any(n.endswith("_submitted.pkl") for n in jobs) and any(n.endswith("_0_log.out") for n in jobs)
    if mask == 0o002:
        assert not_group_rw(files, dirs) == {}
    else:
        assert {n: oct(m) for n, m in {**files, **dirs}.items() if m & 0o077} == {}


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_scripts_logs_and_results_get_the_submitters_umask(cli, slurm_home):
    """sbatch passes the submitting shell's umask to the job: its logs and what it writes follow
    it, and so does what submit writes (the rendered script, submitit's pickles)."""
    old = os.umask(0o002)
    try:
        assert cli("submit", REPO / "jobs" / "hello.yaml", "--executor", "slurm").code == 0
        final = wait_final("hello", timeout=300)
        files, dirs = modes(slurm_home)
    finally:
        os.umask(old)
    assert {t.state for t in final.values()} == {"COMPLETED"}
    jobs = [name for name in files if "/_jobs/" in name]
    assert any(n.endswith("_submission.sh") for n in jobs) and any(n.endswith("_log.out") for n in jobs)
    assert {"logs/registry.sqlite-wal", "logs/hello/count-1/status.json", "logs/hello/count-1/count.txt"} <= set(files)
    assert not_group_rw(files, dirs) == {}


MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
server:/export/groups /groups nfs4 rw,vers=4.2 0 0
/dev/sdb1 /groups/local ext4 rw 0 0
10.0.0.1@tcp:/lus /lus lustre rw,flock 0 0
gw:/team /mnt/team\\040share fuse.sshfs rw 0 0
/dev/fuse /mnt/keys fuse.gocryptfs rw 0 0
"""


@pytest.mark.parametrize(
    "path, fstype, network",
    [
        ("/groups/lab/orch", "nfs4", "nfs4"),
        ("/groups/local/orch", "ext4", None),  # the longest mount point wins
        ("/groupsx", "ext4", None),  # a prefix of the name is not a parent directory
        ("/lus/scratch/me", "lustre", "lustre"),
        ("/mnt/team share/orch", "fuse.sshfs", "fuse.sshfs"),  # \040 in /proc/mounts is a space
        ("/mnt/keys/orch", "fuse.gocryptfs", None),  # a local FUSE file system
        ("/home/me", "ext4", None),
    ],
)
def test_filesystem_type_reads_the_longest_mount_point(tmp_path, path, fstype, network):
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS)
    assert filesystem_type(path, mounts) == fstype
    assert on_network_filesystem(path, mounts) == network
    assert filesystem_type(path, tmp_path / "missing") is None


def test_registry_uses_a_rollback_journal_on_a_network_file_system(tmp_path, monkeypatch):
    """WAL needs shared memory on one host: on NFS the registry uses a rollback journal, and
    leaves no -wal/-shm beside it; on a local disk it keeps WAL."""
    from orchestrator.core import files

    home = tmp_path / "home"
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/export {home} nfs rw,vers=3 0 0\n")
    monkeypatch.setattr(files, "MOUNTS", mounts)
    registry = Registry(home / "logs" / "registry.sqlite")
    registry.add_experiment("e", "command", "e.yaml", "{}")
    assert registry.db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert sorted(p.name for p in (home / "logs").iterdir()) == ["registry.sqlite"]
    registry.close()
    local = Registry(tmp_path / "local" / "registry.sqlite")
    assert local.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    local.close()
