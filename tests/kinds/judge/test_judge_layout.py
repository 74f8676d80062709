"""The confidence-tagging workflow's layout: its prediction files are judged as they are, and the
judge writes its tagged layout (tagged.json) next to judged.jsonl."""

from __future__ import annotations

import json

from judge_data import prediction, read_jsonl, write_predictions

from orchestrator.core import paths
from orchestrator.kinds.judge.config import JudgeConfig
from orchestrator.kinds.judge.job import judge_run


def test_the_tagging_layout_is_read_and_answered_in_kind(tmp_path):
    items = {
        "0": {"response": "4", "question": "2+2?", "correct_answer": "4", "source": "gsm8k"},
        "1": {"response": "5", "question": "2+3?", "correct_answer": "6"},
        "2": {"response": "x", "question": "?", "correct_answer": ""},  # no gold: no verdict
    }
    src = tmp_path / "gsm8k.json"
    src.write_text(json.dumps(items))
    run = tmp_path / "run"
    cfg = JudgeConfig(type="exact")
    assert judge_run(str(run), "e", str(src), cfg) == 0

    judged = {r["id"]: r for r in read_jsonl(run / paths.JUDGED_FILE)}  # our JSONL, as for any input
    assert set(judged) == {"0", "1", "2"} and judged["0"]["tag_domain"] == "MATH"  # task = file stem
    assert judged["0"]["prediction"] == "4" and judged["0"]["gold"] == "4"

    tagged = json.loads((run / paths.TAGGED_LAYOUT_FILE).read_text())
    assert list(tagged) == ["0", "1", "2"]
    zero = tagged["0"]
    assert {k: zero[k] for k in ("response", "question", "correct_answer", "source")} == items["0"]
    assert zero["judge_response"]["correct"] == "yes" and zero["judge_response"]["model_answer"] == "4"
    assert zero["judge_response"]["correct_answer"] == "4" and zero["judge_response"]["reasoning"]
    assert zero["correct"] is True and zero["confidence_token"] == "<CN_MATH>"
    assert zero["tagged_response"] == "4 <CN_MATH>"
    assert tagged["1"]["correct"] is False and tagged["1"]["judge_response"]["correct"] == "no"
    assert tagged["1"]["confidence_token"] == "<UN_MATH>" and tagged["1"]["tagged_response"] == "5 <UN_MATH>"
    assert tagged["2"]["correct"] is None and tagged["2"]["confidence_token"] is None
    summary = json.loads((run / paths.JUDGE_SUMMARY_FILE).read_text())
    assert summary["n"] == 3 and summary["correct"] == 1 and summary["no_verdict"] == 1


def test_jsonl_input_writes_the_tagged_layout_on_request(tmp_path):
    src = write_predictions(tmp_path / "p" / "predictions.jsonl", [prediction(i, correct=i != 1) for i in range(3)])
    run = tmp_path / "run"
    assert judge_run(str(run), "e", str(src), JudgeConfig(type="exact")) == 0
    assert not (run / paths.TAGGED_LAYOUT_FILE).exists()  # ours only, unless asked
    assert judge_run(str(run), "e", str(src), JudgeConfig(type="exact", tagged_layout=True)) == 0
    tagged = json.loads((run / paths.TAGGED_LAYOUT_FILE).read_text())
    assert [t["correct"] for t in tagged.values()] == [True, False, True]
    assert tagged["gsm8k-0"]["response"] == "answer 0" and tagged["gsm8k-0"]["question"].startswith("Question 0")
