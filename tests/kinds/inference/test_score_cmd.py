"""`orchestrate score`: official CoQA / SQuAD formats, our predictions files, the weighted scorer."""

from __future__ import annotations

import json

import pytest

from helpers import FIXTURES

FIX = FIXTURES / "inference"
S1 = "3dr23u6we5exclen4th8uq9rb42tel"


def score(cli, *args) -> dict:
    res = cli("score", *args, "--json")
    assert res.code == 0, res.err
    return json.loads(res.out)


def test_coqa_official_prediction_list_against_the_dataset_json(cli, tmp_path):
    preds = tmp_path / "coqa-preds.json"
    preds.write_text(
        json.dumps(
            [
                {"id": S1, "turn_id": 1, "answer": "White."},  # all golds say white → 1
                {"id": S1, "turn_id": 2, "answer": "purple"},  # → 0
                {"id": S1, "turn_id": 3, "answer": "No"},
            ]
        )
    )  # no / No / no / No. → 1
    out = score(cli, "--task", "coqa", "--predictions", preds, "--gold", FIX / "coqa-dev.json")
    # over the predicted turns only (what this command reported as em/f1 before): 2 of 3 right
    assert out["predicted"] == 3
    assert out["metrics"]["em_answered"] == pytest.approx(2 / 3) and out["metrics"]["f1_answered"] == pytest.approx(
        2 / 3
    )
    # the official headline: 7 gold turns, the 4 unpredicted ones count 0 -> 2/7; coverage 3/7 beside it
    assert out["n"] == 7
    assert out["metrics"] == {
        "em": pytest.approx(2 / 7),
        "f1": pytest.approx(2 / 7),
        "coverage": pytest.approx(3 / 7),
        "em_answered": pytest.approx(2 / 3),
        "f1_answered": pytest.approx(2 / 3),
    }
    assert sorted(out["missing"]) == [f"3azhrg4cu4ktme1zh7c2ro3pn2430d_{t}" for t in (1, 2, 3, 4)]
    text = cli("score", "--task", "coqa", "--predictions", preds, "--gold", FIX / "coqa-dev.json").out
    assert "em" in text and "0.6667" in text and "missing predictions: 4" in text
    assert "0.2857" in text and "coverage" in text and "3 of them predicted" in text


def test_coqa_our_records_get_the_official_headline_too(cli, tmp_path):
    recs = [
        {"id": f"{S1}_1", "prediction": "white"},  # 1
        {"id": f"{S1}_2", "prediction": "in a barn"},  # leave-one-out over 4 golds: 3 of 4 maxima are 1
    ]
    p = tmp_path / "predictions.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = score(cli, "--task", "coqa", "--predictions", p, "--gold", FIX / "coqa-dev.json")
    assert out["n"] == 7 and out["predicted"] == 2 and out["metrics"]["coverage"] == pytest.approx(2 / 7)
    assert out["metrics"]["em"] == pytest.approx(out["metrics"]["em_answered"] * 2 / 7)
    assert len(out["missing"]) == 5


def test_squad_style_id_to_answer(cli, tmp_path):
    gold = tmp_path / "squad.json"
    gold.write_text(
        json.dumps(
            {
                "version": "1.1",
                "data": [
                    {
                        "title": "t",
                        "paragraphs": [
                            {
                                "context": "c",
                                "qas": [
                                    {
                                        "id": "q0",
                                        "question": "?",
                                        "answers": [
                                            {"text": "William Shakespeare", "answer_start": 0},
                                            {"text": "Shakespeare", "answer_start": 8},
                                        ],
                                    },
                                    {"id": "q1", "question": "?", "answers": [{"text": "Paris", "answer_start": 0}]},
                                    {"id": "q2", "question": "?", "answers": [{"text": "eight", "answer_start": 0}]},
                                ],
                            }
                        ],
                    }
                ],
            }
        )
    )
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"q0": "shakespeare", "q1": "the city of Paris"}))
    out = score(cli, "--task", "qa", "--predictions", preds, "--gold", gold)
    # q0 exact; q1 F1 = 2·(1/3·1)/(1/3+1) = 0.5 ("city of paris" vs "paris"); q2 missing counts 0
    assert out["n"] == 3 and out["missing"] == ["q2"] and out["metrics"]["coverage"] == pytest.approx(2 / 3)
    assert out["metrics"]["em"] == pytest.approx(1 / 3) and out["metrics"]["f1"] == pytest.approx((1 + 0.5) / 3)
    jsonl_gold = FIX / "qa.jsonl"  # rows {id, answers: {text: [...]}} work as gold too
    out = score(cli, "--task", "qa", "--predictions", preds, "--gold", jsonl_gold)
    assert out["metrics"]["em"] == pytest.approx(1 / 4)


def test_our_predictions_file_rescored(cli, tmp_path):
    recs = [{"id": "a", "prediction": "The answer is (C).", "gold": "C"}, {"id": "b", "prediction": "B", "gold": "D"}]
    p = tmp_path / "predictions.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert score(cli, "--task", "medqa", "--predictions", p)["metrics"] == {"accuracy": 0.5}
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"schema_version": 1, "config": {}, "examples": recs}))
    assert score(cli, "--task", "mcq", "--predictions", results)["metrics"] == {"accuracy": 0.5}


def test_weighted_harness_scorer(cli, tmp_path):
    gold = [
        {"id": "1", "value": 100, "references": ["d1"], "answerable": True},
        {"id": "2", "value": "Paris", "references": ["d2", "d3"], "answerable": True},
        {"id": "3", "value": None, "answerable": False},
    ]
    preds = [
        {"id": "1", "value": "100.05", "references": ["d1"]},  # within 0.1 %
        {"id": "2", "value": "paris", "references": ["d2"]},  # Jaccard 1/2
        {"id": "3", "answerable": False},
    ]
    (tmp_path / "g.json").write_text(json.dumps(gold))
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preds))
    out = score(cli, "--task", "weighted", "--predictions", tmp_path / "p.jsonl", "--gold", tmp_path / "g.json")
    assert out["metrics"]["score"] == pytest.approx(0.75 * 1 + 0.15 * 0.75 + 0.10 * 1)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--task", "nope"], "no scorer"),
        (["--task", "weighted"], "needs --gold"),
        (["--task", "coqa", "--gold", "missing.json"], "cannot read"),
    ],
)
def test_bad_input_exits_2(cli, tmp_path, args, needle):
    p = tmp_path / "p.json"
    p.write_text(json.dumps([{"id": "s", "turn_id": 1, "answer": "x"}]))
    res = cli("score", "--predictions", p, *args)
    assert res.code == 2 and needle in res.err, res.err
