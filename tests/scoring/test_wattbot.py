"""The WattBot score against hand-computed values, the reply parser, and `orchestrate score --task wattbot`."""

from __future__ import annotations

import csv
import json

import pytest

from orchestrator.scoring import wattbot
from orchestrator.scoring.registry import get_scorer

GOLD = [
    {"id": "q1", "answer_value": "1000", "ref_id": "['a']"},
    {"id": "q2", "answer_value": "Paris", "ref_id": "['b', 'c']"},
    {"id": "q3", "answer_value": "is_blank", "ref_id": "is_blank"},
    {"id": "q4", "answer_value": "[10, 20]", "ref_id": "['a']"},
    {"id": "q5", "answer_value": "is_blank", "ref_id": "is_blank"},
]
PRED = [
    {"id": "q1", "answer_value": "1,000.5", "ref_id": "['a', 'b']"},  # within 0.1%; Jaccard 1/2
    {"id": "q2", "answer_value": "paris", "ref_id": "['c']"},  # normalised text; Jaccard 1/2
    {"id": "q3", "answer_value": "is_blank", "ref_id": "is_blank"},  # all right, NA caught
    {"id": "q4", "answer_value": "[10, 21]", "ref_id": "['a']"},  # one element off; refs exact
    {"id": "q5", "answer_value": "42", "ref_id": "['a']"},  # answered an unanswerable one
]


def test_score_by_hand():
    r = wattbot.score_rows(PRED, GOLD)
    m = r["metrics"]
    assert m["value_accuracy"] == pytest.approx(3 / 5)
    assert m["ref_overlap"] == pytest.approx((0.5 + 0.5 + 1 + 1 + 0) / 5)
    assert m["na_recall"] == pytest.approx(1 / 2)
    assert m["overall"] == pytest.approx(0.75 * 0.6 + 0.15 * 0.6 + 0.10 * 0.5)
    for name in wattbot.METRICS:
        lo, hi = r["ci"][name]
        assert lo <= m[name] <= hi


def test_missing_prediction_scores_zero_and_no_na_questions_reweights():
    r = wattbot.score_rows(PRED[:1], GOLD[:2])
    assert r["missing"] == ["q2"]
    assert r["metrics"]["value_accuracy"] == 0.5 and r["metrics"]["na_recall"] is None
    assert r["metrics"]["overall"] == pytest.approx((0.75 * 0.5 + 0.15 * 0.25) / 0.9)


@pytest.mark.parametrize(
    ("pred", "gold", "same"),
    [
        ("1002", "1000", False),
        ("999.0", "1000", True),
        ("0", "0", True),
        ("0.0001", "0", False),
        ("12%", "12", True),
        ("~40", "40", True),
        ("1.2e3", "1200", True),
        ("True", "true", True),
    ],
)
def test_values(pred, gold, same):
    assert wattbot.values_match(pred, gold) is same


def test_parse_reply_forms():
    j = wattbot.parse_reply(
        '{"answer": "about 5", "answer_value": 5, "answer_unit": "kWh", "ref_id": ["d1"], "explanation": "x"}'
    )
    assert (j["answer_value"], j["ref_id"], j["format"], j["malformed"]) == (5, ["d1"], "json", False)
    f = wattbot.parse_reply('Sure!\n```json\n{"answer_value": "is_blank", "ref_id": []}\n```')
    assert (f["answer_value"], f["format"]) == ("is_blank", "fenced_json")
    lab = wattbot.parse_reply("answer_value: 7\nref_id: ['a', 'b']\nexplanation: because")
    assert (lab["answer_value"], lab["ref_id"], lab["format"]) == ("7", ["a", "b"], "labelled")
    bad = wattbot.parse_reply("}{ garbage \x00")
    assert bad["malformed"] and bad["answer_value"] == "is_blank"
    s = get_scorer("wattbot").scores("nonsense", GOLD[0])
    assert s["malformed"] == 1.0 and s["value_accuracy"] == 0.0


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(wattbot.CSV_COLUMNS), extrasaction="ignore")
        w.writeheader()
        w.writerows([{c: r.get(c, "") for c in wattbot.CSV_COLUMNS} for r in rows])


def test_score_command(cli, tmp_path):
    _write(tmp_path / "submission.csv", PRED)
    _write(tmp_path / "train_QA.csv", GOLD)
    r = cli(
        "score",
        "--task",
        "wattbot",
        "--predictions",
        tmp_path / "submission.csv",
        "--gold",
        tmp_path / "train_QA.csv",
        "--json",
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["n"] == 5 and out["metrics"]["overall"] == pytest.approx(0.59)
    assert set(out["ci"]) == set(wattbot.METRICS)
    r = cli(
        "score", "--task", "wattbot", "--predictions", tmp_path / "submission.csv", "--gold", tmp_path / "train_QA.csv"
    )
    assert "overall" in r.out and "95% CI" in r.out


def test_jsonl_rows_and_run_records(tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        "".join(json.dumps({**g, "ref_id": sorted(wattbot.parse_refs(g["ref_id"])) or "is_blank"}) + "\n" for g in GOLD)
    )
    records = tmp_path / "predictions.jsonl"
    records.write_text(
        "".join(
            json.dumps(
                {"id": p["id"], "prediction": json.dumps({"answer_value": p["answer_value"], "ref_id": p["ref_id"]})}
            )
            + "\n"
            for p in PRED
        )
    )
    r = wattbot.score_rows(wattbot.read_rows(records), wattbot.read_rows(gold))
    assert r["metrics"]["overall"] == pytest.approx(0.59)
