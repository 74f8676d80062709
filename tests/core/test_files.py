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
