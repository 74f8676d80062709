"""Result contracts: every file a job writes reads back through the model its writer used; a file
of a newer (or no) schema_version is an error naming the file wherever it is read, never skipped;
files written before (schema 1, status.json without a version) still read."""

from __future__ import annotations

import json

import pytest

from orchestrator.core import paths
from orchestrator.core.checkpoints import read_checkpoint
from orchestrator.core.files import SCHEMA_VERSION, append_jsonl, read_jsonl
from orchestrator.core.plan import Unit, UnitArgs
from orchestrator.core.records import (
    CheckpointMeta,
    ExampleRecord,
    RecordError,
    SchemaVersionError,
    UnitStatus,
    check_version,
)
from orchestrator.core.runner import read_status, run_unit
from orchestrator.generation.pipeline import read_done
from orchestrator.kinds.judge.job import judge_run
from orchestrator.kinds.judge.records import JudgedRecord, JudgeSummary

NEWER = SCHEMA_VERSION + 1


def ok_entry(run_dir: str, experiment: str) -> int:
    return 0


def test_status_file_is_written_and_read_through_its_model(orch_home):
    unit = Unit(run="r", entry=f"{__name__}:ok_entry", args=UnitArgs())
    assert run_unit("e", unit) == 0
    raw = json.loads(paths.status_file("e", "r").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION and raw["state"] == "COMPLETED" and raw["exit_code"] == 0
    assert UnitStatus.read(paths.status_file("e", "r")).run == "r"
    assert read_status("e", "r")["state"] == "COMPLETED"


def test_status_file_from_before_versions_still_reads_and_a_newer_one_is_an_error(orch_home):
    f = paths.status_file("e", "old")
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps({"experiment": "e", "run": "old", "state": "FAILED", "exit_code": 3, "reason": "x"}))
    assert read_status("e", "old")["exit_code"] == 3  # no schema_version: version 1
    f.write_text(json.dumps({"schema_version": NEWER, "experiment": "e", "run": "old", "state": "FAILED"}))
    with pytest.raises(SchemaVersionError, match=rf"{f}: schema_version {NEWER} is newer than this orchestrator"):
        read_status("e", "old")
    f.write_text('{"experiment": "e", "ru')  # torn: no status (as before)
    assert read_status("e", "old") is None


@pytest.mark.parametrize("version", [NEWER, 0, "1", None, True])
def test_unknown_versions_are_refused_naming_the_file(version):
    with pytest.raises(SchemaVersionError, match=r"^some/file.json: schema_version"):
        check_version({"schema_version": version}, "some/file.json")


def test_a_record_that_is_not_its_model_names_file_and_keys(tmp_path):
    f = tmp_path / "meta.json"
    f.write_text(json.dumps({"schema_version": 1, "metrics": {}}))
    with pytest.raises(RecordError, match=rf"{f}: not a CheckpointMeta \(epoch: Field required\)"):
        CheckpointMeta.read(f)


def test_per_example_records_resume_only_from_a_schema_we_read(tmp_path):
    preds = tmp_path / "predictions.jsonl"
    rec = ExampleRecord(id="a", task="t", model="m", prompt="p", prediction="x", scores={"em": 1.0}, correct=True)
    append_jsonl(preds, [rec.dump()])
    assert read_done(preds)["a"]["scores"] == {"em": 1.0}
    assert "samples" not in read_jsonl(preds).records[0]  # written as before: only where it applies
    append_jsonl(preds, [{**rec.dump(), "id": "b", "schema_version": NEWER}])
    with pytest.raises(SchemaVersionError, match=rf"{preds}, record 2: schema_version {NEWER}"):
        read_done(preds)


def test_a_checkpoint_of_a_newer_schema_is_an_error_not_an_incomplete_checkpoint(orch_home):
    d = paths.checkpoint_dir("x", "a", 2)
    d.mkdir(parents=True)
    (d / paths.CHECKPOINT_META).write_text(json.dumps({"schema_version": 1, "epoch": 2, "step": 7}))
    assert read_checkpoint("a", d).step == 7
    (d / paths.CHECKPOINT_META).write_text(json.dumps({"schema_version": NEWER, "epoch": 2}))
    with pytest.raises(SchemaVersionError, match=str(d / paths.CHECKPOINT_META)):
        read_checkpoint("a", d)


def test_judge_files_read_back_through_their_models_and_newer_input_is_refused(tmp_path):
    preds = tmp_path / "predictions.jsonl"
    rows = [{"schema_version": 1, "id": f"q{i}", "task": "gsm8k", "prediction": "4", "gold": "4"} for i in range(3)]
    append_jsonl(preds, rows)
    run_dir = tmp_path / "run"
    assert judge_run(str(run_dir), "e", str(preds), {"type": "exact"}) == 0
    judged = [JudgedRecord.parse(r, "judged") for r in read_jsonl(run_dir / paths.JUDGED_FILE).records]
    assert [j.verdict.correct for j in judged] == [True] * 3
    summary = JudgeSummary.read(run_dir / paths.JUDGE_SUMMARY_FILE)
    assert summary.n == 3 and summary.accuracy == 1.0 and summary.by_domain["MATH"].correct == 3
    append_jsonl(preds, [{**rows[0], "id": "q9", "schema_version": NEWER}])
    with pytest.raises(SchemaVersionError, match=rf"predictions file {preds}, record 4"):
        judge_run(str(run_dir), "e", str(preds), {"type": "exact"})


def test_report_stops_at_a_result_file_of_a_newer_schema(cli, orch_home):
    from reporting.fixtures import training_experiment

    training_experiment("mtl")
    f = paths.eval_result("mtl", "pcgrad", "epoch_3", "gsm8k")
    f.write_text(json.dumps({**json.loads(f.read_text()), "schema_version": NEWER}))
    res = cli("report", "mtl")
    assert res.code == 2 and f"{f}: schema_version {NEWER} is newer" in res.err
