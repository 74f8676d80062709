"""core.files: atomic writes, JSONL appends and the one rule for a torn last line."""

from __future__ import annotations

import json
import os

import pytest

from orchestrator.core.files import append_jsonl, first_by_id, read_jsonl, write_atomic, write_json_atomic


def test_write_atomic_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2, "path": tmp_path, "set": {2, 1}})
    assert json.loads(target.read_text()) == {"a": 2, "path": str(tmp_path), "set": [1, 2]}
    assert os.listdir(target.parent) == ["out.json"]


def test_write_atomic_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    write_atomic(target, "old")
    with pytest.raises(TypeError):
        write_json_atomic(target, {"x": object()})  # not serialisable: nothing is replaced
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_torn_last_line_is_not_a_record_and_repair_cuts_it(tmp_path):
    path = tmp_path / "p.jsonl"
    assert append_jsonl(path, [{"id": 1}, {"id": 2}]) == 2
    with open(path, "a") as f:
        f.write('{"id": 3, "pred')  # a kill mid-write
    content = read_jsonl(path)
    assert [r["id"] for r in content.records] == [1, 2] and content.torn
    assert path.read_text().endswith('"pred')  # reading alone changes nothing
    assert read_jsonl(path, repair=True).torn
    append_jsonl(path, [{"id": 3}])
    content = read_jsonl(path)
    assert [r["id"] for r in content.records] == [1, 2, 3] and not content.torn and not content.bad_lines


def test_bad_complete_lines_are_reported_not_dropped_silently(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1}\nnot json\n[1, 2]\n\n{"id": 2}\n')
    content = read_jsonl(path)
    assert [r["id"] for r in content.records] == [1, 2] and content.bad_lines == [2, 3]
    assert read_jsonl(tmp_path / "missing.jsonl").records == []


def test_first_by_id_keeps_the_first_written():
    records = [{"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "a", "v": 3}]
    assert first_by_id(records) == [{"id": "a", "v": 1}, {"id": "b", "v": 2}]


def test_a_failed_append_is_cut_back_and_says_what_is_kept(tmp_path, monkeypatch):
    """A full disk mid-batch: the part of the batch that went in is cut off again, the file ends
    on the last whole record, and the error names the file and that earlier records are intact."""
    import errno

    from orchestrator.core import files

    path = tmp_path / "p.jsonl"
    append_jsonl(path, [{"id": 1}])
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 4:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "write", half_then_full)
    with pytest.raises(OSError) as failed:
        append_jsonl(path, [{"id": 2, "text": "x" * 100}, {"id": 3}])
    monkeypatch.undo()
    assert failed.value.errno == errno.ENOSPC
    message = str(failed.value)
    assert str(path) in message and f"its {len(before)} bytes written before are intact" in message
    assert "Free space and run again" in message
    assert path.read_bytes() == before  # no half batch left behind
    append_jsonl(path, [{"id": 2}])
    assert [r["id"] for r in read_jsonl(path).records] == [1, 2]


def test_a_failed_atomic_write_keeps_the_old_file_and_names_it(tmp_path, monkeypatch):
    import errno

    from orchestrator.core import files

    target = tmp_path / "summary.json"
    write_json_atomic(target, {"v": 1})

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError, match="could not write .*summary.json: No space left on device"):
        write_json_atomic(target, {"v": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1} and os.listdir(tmp_path) == ["summary.json"]


@pytest.mark.parametrize("mask", [0o002, 0o022, 0o077])
def test_writes_get_the_mode_open_would_under_the_umask(tmp_path, mask):
    """Atomic writes, appends and files fixed after a library wrote them private (safetensors)
    end 0666 minus the umask, like a plain open(); an executable keeps its x bits."""
    from orchestrator.core.files import honour_umask

    old = os.umask(mask)
    try:
        write_json_atomic(tmp_path / "a" / "out.json", {"a": 1})
        append_jsonl(tmp_path / "a" / "p.jsonl", [{"id": 1}])
        private = tmp_path / "a" / "model.safetensors"
        private.write_bytes(b"w")
        private.chmod(0o600)
        tool = tmp_path / "a" / "run.sh"
        tool.write_text("true")
        tool.chmod(0o700)
        honour_umask(tmp_path / "a")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "a").iterdir()}
    want = 0o666 & ~mask
    assert modes == {"out.json": want, "p.jsonl": want, "model.safetensors": want, "run.sh": 0o777 & ~mask}
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o777 & ~mask
