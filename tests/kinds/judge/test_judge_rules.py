"""Verdict parsing, tagging, domains, back-off schedule and the rule-based judges (no network)."""

from __future__ import annotations

import json
import random

import pytest
from judge_data import prediction, read_jsonl, write_predictions

from orchestrator.core import paths
from orchestrator.core.errors import UserError
from orchestrator.generation.backends import retry
from orchestrator.kinds.judge.client import judge_model
from orchestrator.kinds.judge.config import JudgeConfig
from orchestrator.kinds.judge.job import judge_run
from orchestrator.kinds.judge.verdicts import domain_of, parse_verdict, tag


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"correct": true, "explanation": "same number"}', (True, "same number")),
        ('Sure!\n```json\n{"correct": false, "explanation": "wrong unit"}\n```', (False, "wrong unit")),
        ('{"correct": "yes"}', (True, "")),
        ('{"score": 3} then {"correct": 0, "explanation": "no"}', (False, "no")),
        ("Correct. The candidate gives 42.", (True, "Correct. The candidate gives 42.")),
        ("This is not correct: 41 vs 42", (False, "This is not correct: 41 vs 42")),
        ("Incorrect", (False, "Incorrect")),
        ("NO", (False, "NO")),
    ],
)
def test_parse_verdict(reply, expected):
    assert parse_verdict(reply) == expected


@pytest.mark.parametrize("reply", ["", "   ", "I cannot tell.", '{"correct": "maybe"}', "Nobody knows; notable."])
def test_parse_verdict_without_verdict(reply):
    correct, why = parse_verdict(reply)
    assert correct is None and why


def test_tag():
    assert tag("42", True, "MATH") == "42 <CN_MATH>"
    assert tag("42", False, "MED") == "42 <UN_MED>"
    assert tag("42", None, "READ") is None


def test_domain_from_record_mapping_and_errors():
    cfg = JudgeConfig(domains={"pubmedqa": "MED", "trivia": "READ"})
    assert domain_of(prediction(0, "gsm8k", domain="math"), cfg) == "MATH"  # the record's own domain, upper-cased
    assert domain_of(prediction(0, "pubmedqa", domain="read"), cfg) == "MED"  # the spec's mapping wins
    assert domain_of(prediction(0, "x", domain="trivia"), cfg) == "READ"  # mapped by the record's domain
    # the task configs' fine-grained domains map to the tags by default
    assert [domain_of(prediction(0, t, domain=t), cfg) for t in ("medqa", "coqa", "boolq", "math")] == [
        "MED",
        "READ",
        "READ",
        "MATH",
    ]
    with pytest.raises(ValueError, match="maps to none of the tags"):
        domain_of({**prediction(0, "foo"), "domain": None}, cfg)
    with pytest.raises(ValueError, match=r"domains: \{foo: MATH\}"):
        domain_of(prediction(0, "foo", domain="code"), cfg)
    assert domain_of(prediction(0, "foo", domain="code"), JudgeConfig(tags=("CODE",))) == "CODE"
    with pytest.raises(ValueError, match="maps to 'MATH', which is not"):
        domain_of(prediction(0, "gsm8k", domain="math"), JudgeConfig(tags=("CODE",)))


def test_backoff_schedule_grows_is_capped_and_honours_retry_after():
    # the shared schedule (the OpenAI-compatible backend's) with the judge config's base and cap
    api = judge_model(JudgeConfig(backoff_base_s=1.0, backoff_max_s=10.0, base_url="http://x/v1", model="j")).api
    rng = random.Random(0)

    def backoff_delay(attempt, _api, retry_after, rng):
        return retry.backoff_delay(attempt, _api.backoff_base_s, _api.backoff_max_s, retry_after, rng)

    for attempt, (lo, hi) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8), (5, 10), (5, 10)]):
        delays = [backoff_delay(attempt, api, None, rng) for _ in range(200)]
        assert lo <= min(delays) and max(delays) <= hi
        assert max(delays) - min(delays) > (hi - lo) / 4  # jittered, not lockstep
    assert backoff_delay(0, api, 7.0, rng) >= 7.0
    assert backoff_delay(0, api, 3600.0, rng) == 10.0  # Retry-After is capped too


def rule_run(tmp_path, records, rule, **over):
    preds = write_predictions(tmp_path / "in" / "predictions.jsonl", records)
    run_dir = tmp_path / f"run-{rule}"
    assert judge_run(str(run_dir), "exp", str(preds), {"type": rule, **over}) == 0
    return {r["id"]: r for r in read_jsonl(run_dir / paths.JUDGED_FILE)}, json.loads(
        (run_dir / paths.JUDGE_SUMMARY_FILE).read_text()
    )


def test_exact_rule(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # no network, no key needed
    records = [
        {**prediction(0, "coqa"), "prediction": "The Answer 0.", "gold": "answer 0"},
        {**prediction(1, "coqa"), "prediction": "answer 2", "gold": ["answer 1", "answer 2"]},
        {**prediction(2, "coqa"), "prediction": "answer", "gold": "answer 2"},
        {**prediction(3, "coqa"), "gold": None},
    ]
    judged, summary = rule_run(tmp_path, records, "exact")
    assert [judged[f"coqa-{i}"]["verdict"]["correct"] for i in range(4)] == [True, True, False, None]
    assert judged["coqa-0"]["tagged_response"] == "The Answer 0. <CN_READ>"
    assert judged["coqa-2"]["tagged_response"] == "answer <UN_READ>"
    assert judged["coqa-3"]["verdict"]["error"] == "the record has no gold answer"
    assert judged["coqa-0"]["verdict"]["judge"] == "rule:exact" and summary["judge"] == "rule:exact"
    assert summary["correct"] == 2 and summary["incorrect"] == 1 and summary["no_verdict"] == 1


def test_math_rule_uses_math_verify(tmp_path):
    records = [
        {**prediction(0), "prediction": "so x = \\boxed{\\frac{1}{2}}", "gold": "0.5"},
        {**prediction(1), "prediction": "The result is \\boxed{(x+1)^2}", "gold": "x^2+2x+1"},
        {**prediction(2), "prediction": "\\boxed{3}", "gold": "4"},
    ]
    judged, summary = rule_run(tmp_path, records, "math")
    assert [judged[f"gsm8k-{i}"]["verdict"]["correct"] for i in range(3)] == [True, True, False]
    assert judged["gsm8k-0"]["tagged_response"].endswith(" <CN_MATH>")
    assert judged["gsm8k-2"]["tagged_response"] == "\\boxed{3} <UN_MATH>"
    assert "\\frac{1}{2}" in judged["gsm8k-0"]["verdict"]["explanation"]


def test_bad_domain_fails_before_writing_anything(tmp_path):
    records = [prediction(0), prediction(1, "foo", domain="code")]
    preds = write_predictions(tmp_path / "p.jsonl", records)
    with pytest.raises(UserError, match="foo"):
        judge_run(str(tmp_path / "run"), "exp", str(preds), {"type": "exact"})
    assert not (tmp_path / "run" / paths.JUDGED_FILE).exists()


def test_input_file_problems(tmp_path):
    good = json.dumps(prediction(0))
    (tmp_path / "dup.jsonl").write_text(good + "\n" + good + "\n" + '{"id": "gsm8k-9", "predic')  # dup + partial
    run_dir = tmp_path / "run"
    judge_run(str(run_dir), "exp", str(tmp_path / "dup.jsonl"), {"type": "exact"})
    summary = json.loads((run_dir / paths.JUDGE_SUMMARY_FILE).read_text())
    assert summary["n"] == 1 and summary["duplicates_in_input"] == 1
    (tmp_path / "bad.jsonl").write_text("not json\n" + good + "\n")
    with pytest.raises(UserError, match="line 1"):
        judge_run(str(tmp_path / "run2"), "exp", str(tmp_path / "bad.jsonl"), {"type": "exact"})
    with pytest.raises(UserError, match="cannot read"):
        judge_run(str(tmp_path / "run3"), "exp", str(tmp_path / "missing.jsonl"), {"type": "exact"})
