"""The LLM judge against a local chat-completions server: back-off, retries, aborts, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from chat_server import ChatServer, completion
from judge_data import TASK_TAG, mixed, prediction, read_jsonl, write_predictions

from orchestrator.core import paths
from orchestrator.core.errors import UserError
from orchestrator.kinds.judge.client import JudgeAbort
from orchestrator.kinds.judge.job import judge_run

KEY_ENV = "ORCH_TEST_JUDGE_KEY"
KEY = "sk-test-7f3a9c-do-not-leak"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def config(server: ChatServer, **over) -> dict:
    return {
        "type": "llm",
        "base_url": server.url,
        "model": "judge-model",
        "api_key_env": KEY_ENV,
        "backoff_base_s": 0.02,
        "backoff_max_s": 0.5,
        "num_workers": 4,
        "flush_every": 4,
        **over,
    }


def run(tmp_path: Path, records: list[dict], cfg: dict) -> tuple[list[dict], dict]:
    preds = write_predictions(tmp_path / "in" / "predictions.jsonl", records)
    run_dir = tmp_path / "run"
    assert judge_run(str(run_dir), "exp", str(preds), cfg) == 0
    summary = json.loads((run_dir / paths.JUDGE_SUMMARY_FILE).read_text())
    return read_jsonl(run_dir / paths.JUDGED_FILE), summary


def successes(server: ChatServer) -> Counter:
    return Counter(c.candidate for c in server.calls if c.status == 200)


def test_judges_every_item_once_with_structured_verdict_and_tags(tmp_path):
    records = mixed(12)
    with ChatServer(delay_s=0.05) as server:
        judged, summary = run(tmp_path, records, config(server, num_workers=4))
    assert sorted(r["id"] for r in judged) == sorted(r["id"] for r in records)
    assert all(n == 1 for n in successes(server).values()) and len(server.calls) == 12
    assert server.max_in_flight == 4  # num_workers requests in flight, no more
    assert {c.auth for c in server.calls} == {f"Bearer {KEY}"}  # the key from the environment was sent
    assert {c.body["model"] for c in server.calls} == {"judge-model"}
    by_id = {r["id"]: r for r in judged}
    for rec in records:
        out = by_id[rec["id"]]
        expected = rec["prediction"] == rec["gold"]
        v = out["verdict"]
        assert v["correct"] is expected and v["judge"] == "judge-model" and v["error"] is None
        assert json.loads(v["raw"])["correct"] is expected  # the raw reply is kept
        assert v["explanation"] in ("matches the reference", "differs from the reference")
        domain = TASK_TAG[rec["task"]]
        assert out["tag_domain"] == domain and out["domain"] == rec["domain"]  # the record's own is kept
        assert out["tagged_response"] == rec["prediction"] + (f" <CN_{domain}>" if expected else f" <UN_{domain}>")
        assert out["prediction"] == rec["prediction"] and out["scores"] == rec["scores"]  # the record is kept
    assert summary["n"] == 12 and summary["correct"] == 8 and summary["incorrect"] == 4
    assert summary["by_domain"]["READ"] == {"n": 4, "correct": 0, "no_verdict": 0}
    assert summary["config"]["api_key_env"] == KEY_ENV and KEY not in json.dumps(summary)


def test_429_backs_off_exponentially_and_judges_each_item_exactly_once(tmp_path):
    def script(call):
        return (429, {}, {"error": {"message": "rate limited", "type": "rate_limit"}}) if call.index < 3 else None

    records = [prediction(i) for i in range(5)]
    with ChatServer(script=script) as server:
        judged, summary = run(tmp_path, records, config(server, num_workers=1, backoff_base_s=0.1, backoff_max_s=5))
    assert [c.status for c in server.calls[:4]] == [429, 429, 429, 200]
    gaps = [b.t - a.t for a, b in zip(server.calls, server.calls[1:4])]
    # base·2^k with jitter in [d/2, d]: at least 0.05, 0.1, 0.2 s, growing
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2, gaps
    assert len(judged) == 5 and len({r["id"] for r in judged}) == 5
    assert all(n == 1 for n in successes(server).values()) and len(successes(server)) == 5
    assert judged[0]["verdict"]["attempts"] == 4
    assert summary["retries"] == 3 and summary["calls"] == 8


def test_retry_after_is_honoured(tmp_path):
    def script(call):
        return (429, {"Retry-After": "0.4"}, {"error": {"message": "slow down"}}) if call.index == 0 else None

    with ChatServer(script=script) as server:
        judged, _ = run(tmp_path, [prediction(0)], config(server, num_workers=1, backoff_base_s=0.001))
    assert server.calls[1].t - server.calls[0].t >= 0.4  # not the 1 ms of our own schedule
    assert judged[0]["verdict"]["correct"] is True


def test_500_then_success(tmp_path):
    def script(call):
        return (500, {}, {"error": {"message": "boom"}}) if call.index == 0 else None

    with ChatServer(script=script) as server:
        judged, summary = run(tmp_path, [prediction(0, correct=False)], config(server))
    assert [c.status for c in server.calls] == [500, 200]
    assert judged[0]["verdict"]["correct"] is False and judged[0]["tagged_response"] == "wrong 0 <UN_MATH>"
    assert summary["retries"] == 1


def test_gives_up_after_max_attempts_and_records_no_verdict(tmp_path):
    with ChatServer(script=lambda call: (503, {}, {"error": {"message": "overloaded"}})) as server:
        judged, summary = run(tmp_path, [prediction(0)], config(server, max_attempts=3))
    assert len(server.calls) == 3
    v = judged[0]["verdict"]
    assert v["correct"] is None and "gave up after 3 attempts" in v["error"] and judged[0]["tagged_response"] is None
    assert summary["no_verdict"] == 1 and summary["accuracy"] is None


def test_other_4xx_is_not_retried(tmp_path):
    def script(call):
        if call.candidate == "answer 1":
            return 400, {}, {"error": {"message": "prompt too long"}}
        return None

    with ChatServer(script=script) as server:
        judged, summary = run(tmp_path, [prediction(i) for i in range(3)], config(server))
    assert sum(1 for c in server.calls if c.status == 400) == 1  # asked once, not again
    by_id = {r["id"]: r["verdict"] for r in judged}
    assert by_id["gsm8k-1"]["correct"] is None and "HTTP 400" in by_id["gsm8k-1"]["error"]
    assert by_id["gsm8k-0"]["correct"] is True and summary["no_verdict"] == 1


def test_bad_key_aborts_the_run_without_retrying(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with ChatServer(key=KEY) as server:
        with pytest.raises(JudgeAbort, match="401"):
            run(tmp_path, [prediction(i) for i in range(20)], config(server, num_workers=2))
    assert len(server.calls) <= 2  # one per worker at most, then everything stops


def test_missing_key_fails_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with ChatServer() as server:
        with pytest.raises(UserError, match=KEY_ENV):
            run(tmp_path, [prediction(0)], config(server))
    assert server.calls == []


def test_reply_without_verdict_is_asked_again_then_recorded_unjudged(tmp_path):
    seen: Counter = Counter()

    def script(call):
        seen[call.candidate] += 1
        if call.candidate == "answer 0":
            return 200, {}, completion("I am not sure what to make of this.")
        if call.candidate == "answer 1" and seen["answer 1"] == 1:
            return 200, {}, completion("hmm")
        return None

    with ChatServer(script=script) as server:
        judged, summary = run(tmp_path, [prediction(0), prediction(1)], config(server, num_workers=1, parse_attempts=2))
    by_id = {r["id"]: r for r in judged}
    v0 = by_id["gsm8k-0"]["verdict"]
    assert v0["correct"] is None and v0["raw"] == "I am not sure what to make of this." and "no verdict" in v0["error"]
    assert by_id["gsm8k-0"]["tagged_response"] is None
    assert sum(1 for c in server.calls if c.candidate == "answer 0") == 2  # parse_attempts
    assert by_id["gsm8k-1"]["verdict"]["correct"] is True  # "hmm" once, then a verdict on the re-ask
    assert by_id["gsm8k-1"]["verdict"]["attempts"] == 2
    assert summary["no_verdict"] == 1


def test_broken_response_body_is_retried(tmp_path):
    def script(call):
        if call.index == 0:
            return 200, {}, b'{"id": "x", "choices": [{"message": '  # cut off mid-body
        if call.index == 1:
            return 200, {}, {"id": "y", "object": "chat.completion", "choices": []}  # no choices
        return None

    with ChatServer(script=script) as server:
        judged, summary = run(tmp_path, [prediction(0)], config(server, num_workers=1))
    assert len(server.calls) == 3
    assert judged[0]["verdict"]["correct"] is True and summary["retries"] == 2


def test_plain_text_verdict_fallback(tmp_path):
    replies = {
        "answer 0": "Yes, that is right.",
        "answer 1": "The answer is not correct.",
        "answer 2": '```json\n{"correct": "false", "explanation": "off by one"}\n```',
    }
    with ChatServer(script=lambda call: (200, {}, completion(replies[call.candidate]))) as server:
        judged, _ = run(tmp_path, [prediction(i) for i in range(3)], config(server))
    by_id = {r["id"]: r["verdict"] for r in judged}
    assert [by_id[f"gsm8k-{i}"]["correct"] for i in range(3)] == [True, False, False]
    assert by_id["gsm8k-2"]["explanation"] == "off by one"


RESUME_SCRIPT = """
import json, sys
from orchestrator.kinds.judge.client import JudgeAbort
from orchestrator.kinds.judge.job import judge_run
judge_run(sys.argv[1], "exp", sys.argv[2], json.loads(sys.argv[3]))
"""


def test_resume_after_kill_judges_only_the_rest_without_duplicates(tmp_path):
    n = 40
    records = [prediction(i) for i in range(n)]
    preds = write_predictions(tmp_path / "in" / "predictions.jsonl", records)
    run_dir = tmp_path / "run"
    out = run_dir / paths.JUDGED_FILE
    with ChatServer(delay_s=0.05) as server:
        cfg = config(server, num_workers=2, flush_every=2)
        proc = subprocess.Popen(
            [sys.executable, "-c", RESUME_SCRIPT, str(run_dir), str(preds), json.dumps(cfg)],
            env=dict(os.environ),
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 6):
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = {r["id"] for r in read_jsonl(out)}
        assert 6 <= len(before) < n  # interrupted part way
        first_calls = len(server.calls)
        assert judge_run(str(run_dir), "exp", str(preds), cfg) == 0
        second = [c.candidate for c in server.calls[first_calls:]]
    judged = read_jsonl(out)
    ids = [r["id"] for r in judged]
    assert len(ids) == n and len(set(ids)) == n  # everything once, no duplicates
    assert not {f"gsm8k-{c.split()[1]}" for c in second} & before  # judged items were not asked again
    assert len(second) == n - len(before)
    summary = json.loads((run_dir / paths.JUDGE_SUMMARY_FILE).read_text())
    assert summary["n"] == n and summary["skipped_already_judged"] == len(before)


def test_partial_last_line_is_cut_and_rejudged(tmp_path):
    records = [prediction(i) for i in range(3)]
    preds = write_predictions(tmp_path / "in" / "predictions.jsonl", records)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = {
        **records[0],
        "tag_domain": "MATH",
        "verdict": {"correct": True, "explanation": "", "judge": "j", "raw": None, "attempts": 1, "error": None},
        "tagged_response": "answer 0 <CN_MATH>",
    }
    (run_dir / paths.JUDGED_FILE).write_text(json.dumps(first) + "\n" + '{"id": "gsm8k-1", "verd')
    with ChatServer() as server:
        assert judge_run(str(run_dir), "exp", str(preds), config(server)) == 0
    assert sorted(c.candidate for c in server.calls) == ["answer 1", "answer 2"]
    assert [r["id"] for r in read_jsonl(run_dir / paths.JUDGED_FILE)].count("gsm8k-1") == 1


def test_rerun_of_a_finished_run_makes_no_requests(tmp_path):
    records = [prediction(i) for i in range(4)]
    with ChatServer() as server:
        run(tmp_path, records, config(server))
        calls = len(server.calls)
        judged, summary = run(tmp_path, records, config(server))
    assert len(server.calls) == calls and len(judged) == 4 and summary["skipped_already_judged"] == 4
