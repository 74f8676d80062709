"""A judge-tagging run end to end through the real SLURM test cluster: the job reaches a local
chat-completions server on 127.0.0.1 (the nodes are this host), gets 429s first, and receives the
API key only through the environment — which then appears in no script, pickle, log or output."""

from __future__ import annotations

import json
import subprocess

import pytest
from chat_server import ChatServer
from judge_data import mixed, prediction, read_jsonl, write_predictions

from helpers import wait_final
from orchestrator.core import paths
from orchestrator.core.registry import Registry

pytestmark = pytest.mark.slurm

KEY_ENV = "ORCH_TEST_JUDGE_KEY"
KEY = "sk-slurm-e2e-9d1b7a44c2"


def test_judge_tagging_through_slurm(cli, tmp_path, slurm_home, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    a = write_predictions(tmp_path / "tiny__mixed" / "predictions.jsonl", mixed(9))
    b = write_predictions(
        tmp_path / "tiny__gsm8k" / "predictions.jsonl", [prediction(i, correct=i % 2 == 0) for i in range(4)]
    )

    def script(call):  # the first requests are rate limited: the job must back off and go on
        return (429, {"Retry-After": "0.2"}, {"error": {"message": "rate limited"}}) if call.index < 2 else None

    with ChatServer(script=script, key=KEY) as server:
        res = cli(
            "submit",
            "judge-tagging",
            "--executor",
            "slurm",
            "--name",
            "judge-e2e",
            "--set",
            f"inputs={{files: [{a}, {b}]}}",
            "--set",
            f"judge.base_url={server.url}",
            "--set",
            "judge.model=judge-model",
            "--set",
            f"judge.api_key_env={KEY_ENV}",
            "--set",
            "judge.backoff_base_s=0.1",
            "--set",
            "num_workers=3",
            "--set",
            "resources.mem=300M",
            "--set",
            "resources.time=5",
        )
        assert res.code == 0, res.err
        assert "array of 2" in res.out
        tasks = wait_final("judge-e2e", timeout=240)
    assert {r: t.state for r, t in tasks.items()} == {"tiny__mixed": "COMPLETED", "tiny__gsm8k": "COMPLETED"}, {
        r: t.reason for r, t in tasks.items()
    }
    assert {t.node for t in tasks.values()} <= {"node1", "node2"}

    mixed_out = read_jsonl(paths.run_dir("judge-e2e", "tiny__mixed") / paths.JUDGED_FILE)
    gsm_out = read_jsonl(paths.run_dir("judge-e2e", "tiny__gsm8k") / paths.JUDGED_FILE)
    assert len(mixed_out) == 9 and len({r["id"] for r in mixed_out}) == 9
    assert [r["tagged_response"] for r in sorted(gsm_out, key=lambda r: r["id"])] == [
        "answer 0 <CN_MATH>",
        "wrong 1 <UN_MATH>",
        "answer 2 <CN_MATH>",
        "wrong 3 <UN_MATH>",
    ]
    assert [c.status for c in server.calls[:2]] == [429, 429]
    assert sum(1 for c in server.calls if c.status == 200) == 13  # each item judged exactly once
    summaries = [
        json.loads((paths.run_dir("judge-e2e", r) / paths.JUDGE_SUMMARY_FILE).read_text())
        for r in ("tiny__mixed", "tiny__gsm8k")
    ]
    assert sum(s["retries"] for s in summaries) == 2 and [s["correct"] for s in summaries] == [6, 2]

    # The key travelled only through the environment: not in the script sbatch received, the
    # submitit folder (pickles, logs), the registry (spec_json) or any result file.
    (job,) = [r[0] for r in Registry().db.execute("SELECT scheduler_id FROM jobs WHERE experiment = 'judge-e2e'")]
    in_slurm = subprocess.run(["scontrol", "write", "batch_script", job, "-"], capture_output=True).stdout
    assert KEY.encode() not in in_slurm
    files = [p for p in slurm_home.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".pkl") for p in files) and any(p.name.endswith("_log.out") for p in files)
    assert [p for p in files if KEY.encode() in p.read_bytes()] == []
