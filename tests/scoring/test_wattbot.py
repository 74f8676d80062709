"""The WattBot 2025 competition metric on CSVs in the competition's format (tests/scoring/data/wattbot:
one row per rule, expected figures worked out by hand from the metric's definition), the reply
parser, and `orchestrate score --task wattbot`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.scoring import wattbot
from orchestrator.scoring.registry import get_scorer

DATA = Path(__file__).parent / "data" / "wattbot"
# (value credit, ref overlap, abstained on a gold-blank row) per row of submission.csv vs gold.csv
EXPECTED_ROWS = {
    "q01": (1, 1, None),  # "1,000" = 1000; ['a'] = ['A'] (ids lower-cased)
    "q02": (1, 0.5, None),  # "Yes" → 1; Jaccard {b} vs {b, c}
    "q03": (1, 1, None),  # "about 2B" → 2000000000
    "q04": (1, 0, None),  # 85 inside the gold range [80, 90]; wrong ref
    "q05": (1, 1, None),  # "from 80 to 90" → [80,90]
    "q06": (1, 1, None),  # [3, 1, 2.0005] = [1, 2, 3]: any order, rel_tol 1e-3
    "q07": (1, 1, None),  # [cpu, gpu] = {GPU, CPU}
    "q08": (0, 1, None),  # "Paris." ≠ "Paris": free text is strip + lower-case only
    "q09": (1, 1, None),  # 0.0005 = 0 (abs_tol 1e-3)
    "q10": (0, 1, None),  # 1002 ≠ 1000 (|Δ| 2 > 1e-3 × 1002)
    "q11": (1, 1, 0),  # gold blank: value credit whatever the answer; "is_blank" refs equal; no abstention
    "q12": (1, 1, 1),  # "Unable to answer with confidence ..." is blank
    "q13": (1, 0, 1),  # "n/a" is blank; cites ['a'] where the gold says is_blank
    "q14": (0, 1, None),  # "12%" is text, not 12
    "q15": (1, 1, None),  # "more than 500" → 500
}
# value 12/15, ref (12 + 0.5)/15, na recall 2/3 (q11-q13)
EXPECTED = {
    "value_accuracy": 12 / 15,
    "ref_overlap": 12.5 / 15,
    "na_recall": 2 / 3,
    "overall": 0.75 * 12 / 15 + 0.15 * 12.5 / 15 + 0.10 * 2 / 3,  # 0.791667
}


def _score_files():
    return wattbot.score_rows(wattbot.read_rows(DATA / "submission.csv"), wattbot.read_rows(DATA / "gold.csv"))


def test_competition_figures_on_the_test_files():
    r = _score_files()
    got = {p["id"]: (p["value_accuracy"], p["ref_overlap"], p["na_recall"]) for p in r["per_question"]}
    assert got == EXPECTED_ROWS
    assert r["metrics"] == pytest.approx(EXPECTED)
    assert r["metrics"]["overall"] == pytest.approx(0.7917, abs=5e-5)
    for name in wattbot.METRICS:
        lo, hi = r["ci"][name]
        assert lo <= r["metrics"][name] <= hi


@pytest.mark.parametrize(
    ("pred", "gold", "same"),
    [
        ("999", "1000", True),  # |Δ| 1 <= 1e-3 × 1000
        ("998.9", "1000", False),
        ("0.001", "0", True),  # absolute tolerance
        ("0.0011", "0", False),
        ("1.2e3", "1200", True),
        ("1,234,567", "1234567", True),
        ("True", "1", True),
        ("no", "0", True),
        ("~40", "40", True),
        ("at least 3", "3", True),
        ("1.5k", "1500", True),
        ("3 M", "3000000", True),
        ("80-90", "[80, 90]", True),
        ("90–80", "[80,90]", True),  # en dash; the bounds are ordered
        ("90.001", "[80, 90]", True),  # the range's ± tolerance
        ("90.01", "[80, 90]", False),
        ("85", "[80, 85, 90]", False),  # only a two-number list is a range
        ("[b, a]", "['a', 'b']", True),
        ("[a]", "['a', 'b']", False),
        ("{Water, Energy}", "[energy, water]", True),
        ("energy", "[energy, water]", False),
        ("  Water Consumption ", "water consumption", True),
        ("12 kWh", "12", False),  # a number with a unit is text
        ("is_blank", "12", False),
        ("anything", "is_blank", True),  # a blank gold: value credit whatever the answer
    ],
)
def test_value_rules(pred, gold, same):
    assert wattbot.values_match(pred, gold) is same


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  ",
        "NA",
        "n/a",
        "IS_BLANK",
        "Unable to answer with confidence based on the provided documents, sorry",
        None,
    ],
)
def test_blank_tokens(value):
    assert wattbot.is_blank(value)


@pytest.mark.parametrize("value", ["nan", "none", "0", "unable"])
def test_not_blank(value):
    assert not wattbot.is_blank(value)


def test_ref_sets():
    assert wattbot.ref_set("['A', 'b']") == {"a", "b"}
    assert (
        wattbot.ref_set("is_blank") == {"is_blank"} == wattbot.ref_set([])
    )  # an empty citation list is written is_blank
    assert wattbot.ref_set("a; b") == {"a; b"}  # not a list: one id
    assert wattbot.ref_set("") == set() == wattbot.ref_set("[]")
    assert wattbot.jaccard(wattbot.ref_set("is_blank"), wattbot.ref_set("[]")) == 0.0
    assert wattbot.jaccard(set(), set()) == 1.0


def test_no_blank_gold_means_full_na_recall_and_missing_rows_score_zero():
    gold = [{"id": "a", "answer_value": "5", "ref_id": "['x']"}, {"id": "b", "answer_value": "6", "ref_id": "['y']"}]
    r = wattbot.score_rows([{"id": "a", "answer_value": "5", "ref_id": "['x']"}], gold)
    assert r["missing"] == ["b"]
    assert r["metrics"] == pytest.approx(
        {"value_accuracy": 0.5, "ref_overlap": 0.5, "na_recall": 1.0, "overall": 0.75 * 0.5 + 0.15 * 0.5 + 0.10}
    )


def test_three_unanswerable_rows_answered_anyway():
    # Gold-blank rows get the value credit; only na_recall sees that nobody abstained.
    gold = [{"id": str(i), "answer_value": "is_blank", "ref_id": "is_blank"} for i in range(3)]
    pred = [{"id": str(i), "answer_value": str(i + 7), "ref_id": "is_blank"} for i in range(3)]
    assert wattbot.score_rows(pred, gold)["metrics"]["overall"] == pytest.approx(0.90)


def test_parse_reply_forms():
    j = wattbot.parse_reply(
        '{"answer": "about 5", "answer_value": 5, "answer_unit": "kWh", "ref_id": ["d1"], "explanation": "x"}'
    )
    assert (j["answer_value"], j["ref_id"], j["format"], j["malformed"]) == (5, ["d1"], "json", False)
    f = wattbot.parse_reply('Sure!\n```json\n{"answer_value": "is_blank", "ref_id": []}\n```')
    assert (f["answer_value"], f["format"]) == ("is_blank", "fenced_json")
    lab = wattbot.parse_reply("answer_value: 7\nref_id: ['a', 'b']\nexplanation: because")
    assert (lab["answer_value"], lab["ref_id"], lab["format"]) == ("7", ["a", "b"], "labelled")
    s = get_scorer("wattbot").scores("nonsense", {"id": "q", "answer_value": "5", "ref_id": "['a']"})
    assert s["malformed"] == 1.0 and s["value_accuracy"] == 0.0


@pytest.mark.parametrize("reply", ["}{ garbage \x00", "", "   "])
def test_a_failed_parse_says_why_in_the_explanation(reply):
    bad = wattbot.parse_reply(reply)
    assert bad["malformed"] and bad["answer_value"] == "is_blank"
    assert bad["explanation"].strip() and (
        "unparsed reply" in bad["explanation"] or bad["explanation"] == "empty reply"
    )


def test_score_command_json_and_empty_explanation_warning(cli):
    args = ("score", "--task", "wattbot", "--predictions", DATA / "submission.csv", "--gold", DATA / "gold.csv")
    r = cli(*args, "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["n"] == 15 and out["missing"] == []
    assert {k: out[k] for k in EXPECTED} == pytest.approx(EXPECTED)
    assert out["metrics"] == pytest.approx(EXPECTED)
    assert [p["id"] for p in out["per_question"]] == list(EXPECTED_ROWS)
    assert out["empty_explanations"] == ["q13"]
    assert "q13" in r.err and "explanation" in r.err
    r = cli(*args)
    assert r.code == 0 and "overall" in r.out and "95% CI" in r.out and "q13" in r.err


def test_jsonl_rows_and_run_records(tmp_path):
    golds = wattbot.read_rows(DATA / "gold.csv")
    subs = wattbot.read_rows(DATA / "submission.csv")
    records = tmp_path / "predictions.jsonl"
    records.write_text(
        "".join(
            json.dumps(
                {"id": p["id"], "prediction": json.dumps({"answer_value": p["answer_value"], "ref_id": p["ref_id"]})}
            )
            + "\n"
            for p in subs
        )
    )
    r = wattbot.score_rows(wattbot.read_rows(records), golds)
    # "['b', 'c']" parses to the list [b, c], written back as the same ids: the same figures
    assert r["metrics"] == pytest.approx(EXPECTED)
