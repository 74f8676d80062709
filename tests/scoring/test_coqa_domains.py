"""CoQA by domain, as the official evaluate-v1.0 reports it, on files in the official formats
(tests/scoring/data/coqa: a dataset JSON with stories from four sources and a prediction list;
expected figures worked out by hand below)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.generation.examples import coqa_turns
from orchestrator.generation.tasks import load_task
from orchestrator.kinds.eval.job import eval_result
from orchestrator.scoring.registry import get_scorer

DATA = Path(__file__).parent / "data" / "coqa"
# Per gold turn (em, f1):
#   mc1 t1 "white", 4 golds (white, white, White., a white cat): every leave-one-out max is 1 → 1, 1
#   mc1 t2 "red barn" vs (in a barn, barn, the barn, a red barn): F1 per gold 1/2, 2/3, 2/3, 1;
#          leaving out gold 4 leaves max EM 0, max F1 2/3 → em 3/4, f1 (1 + 1 + 1 + 2/3) / 4 = 11/12
#   cnn1 t1 "Barack Obama" vs "Obama": em 0, f1 2/3;  cnn1 t2 not predicted: 0, 0
#   red1 t1 "Yes!" vs "yes": 1, 1;  sci1 t1 "respiration": 0, 0;  sci1 t2 "sun" vs "the sun": 1, 1
EXPECTED = {
    "in_domain": {"em": (1 + 3 / 4) / 4, "f1": (1 + 11 / 12 + 2 / 3) / 4, "turns": 4},
    "out_domain": {"em": 2 / 3, "f1": 2 / 3, "turns": 3},
    "overall": {"em": (1 + 3 / 4 + 2) / 7, "f1": (1 + 11 / 12 + 2 / 3 + 2) / 7, "turns": 7},
}
DOMAINS = {
    "children_stories": {"em": 7 / 8, "f1": 23 / 24, "turns": 2},
    "literature": {"em": 0.0, "f1": 0.0, "turns": 0},
    "mid-high_school": {"em": 0.0, "f1": 0.0, "turns": 0},
    "news": {"em": 0.0, "f1": 1 / 3, "turns": 2},
    "wikipedia": {"em": 0.0, "f1": 0.0, "turns": 0},
    "reddit": {"em": 1.0, "f1": 1.0, "turns": 1},
    "science": {"em": 0.5, "f1": 0.5, "turns": 2},
}


def test_score_json_gives_the_official_breakdown(cli):
    r = cli(
        "score", "--task", "coqa", "--predictions", DATA / "predictions.json", "--gold", DATA / "dev.json", "--json"
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    for split, want in EXPECTED.items():
        assert out[split] == {"em": pytest.approx(want["em"]), "f1": pytest.approx(want["f1"]), "turns": want["turns"]}
    assert list(out["domains"]) == list(DOMAINS)  # the official order
    for name, want in DOMAINS.items():
        assert out["domains"][name] == pytest.approx(want)
    # the official figures (×100, one decimal): in 43.8 / 64.6, out 66.7 / 66.7, overall 53.6 / 65.5
    assert [round(out[s][m] * 100, 1) for s in EXPECTED for m in ("em", "f1")] == [43.8, 64.6, 66.7, 66.7, 53.6, 65.5]
    assert out["metrics"]["em"] == pytest.approx(out["overall"]["em"]) and out["missing"] == ["cnn1_2"]
    text = cli("score", "--task", "coqa", "--predictions", DATA / "predictions.json", "--gold", DATA / "dev.json").out
    assert "out_domain" in text and "0.6458" in text and "children_stories" in text and "literature" not in text


def test_our_records_get_the_breakdown_too(cli, tmp_path):
    preds = json.loads((DATA / "predictions.json").read_text())
    records = tmp_path / "predictions.jsonl"
    records.write_text(
        "".join(json.dumps({"id": f"{p['id']}_{p['turn_id']}", "prediction": p["answer"]}) + "\n" for p in preds)
    )
    r = cli("score", "--task", "coqa", "--predictions", records, "--gold", DATA / "dev.json", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["out_domain"]["f1"] == pytest.approx(2 / 3)


def test_an_unknown_source_is_refused(cli, tmp_path):
    gold = json.loads((DATA / "dev.json").read_text())
    gold["data"][0]["source"] = "blogs"
    (tmp_path / "dev.json").write_text(json.dumps(gold))
    r = cli("score", "--task", "coqa", "--predictions", DATA / "predictions.json", "--gold", tmp_path / "dev.json")
    assert r.code == 2 and "mc1" in r.err and "blogs" in r.err


def _records():
    """Per-example records of a run (what the inference and eval jobs aggregate), predicted turns only."""
    preds = {(p["id"], p["turn_id"]): p["answer"] for p in json.loads((DATA / "predictions.json").read_text())}
    scorer = get_scorer("coqa")
    out = []
    for row in coqa_turns(json.loads((DATA / "dev.json").read_text())["data"]):
        if (row["story_id"], row["turn_id"]) in preds:
            pred = preds[(row["story_id"], row["turn_id"])]
            out.append({"id": row["id"], "scores": scorer.scores(pred, row["answers"], record=row), "correct": True})
    return out


def test_run_records_carry_the_split_so_reports_show_it():
    records = _records()
    in_f1 = [r["scores"]["f1_in_domain"] for r in records if "f1_in_domain" in r["scores"]]
    assert in_f1 == pytest.approx([1, 11 / 12, 2 / 3])  # mc1 t1, t2, cnn1 t1 (cnn1 t2 was never predicted)
    assert all(("f1_in_domain" in r["scores"]) != ("f1_out_domain" in r["scores"]) for r in records)
    task = load_task("coqa")
    result = eval_result(
        "exp",
        "arm",
        type("C", (), {"name": "epoch_1", "epoch": 1, "step": 1})(),
        task,
        [{**r, "completion_tokens": 1} for r in records],
        1,
    )
    assert result.metrics["f1_in_domain"] == pytest.approx((1 + 11 / 12 + 2 / 3) / 3)
    assert result.metrics["em_out_domain"] == pytest.approx(2 / 3)


def test_a_story_without_a_known_source_scores_without_a_split():
    s = get_scorer("coqa").scores("white", ["white"], record={"source": "my-own-data"})
    assert s == {"em": 1.0, "f1": 1.0}


def test_the_sweep_report_shows_the_split():
    from orchestrator.kinds.inference import sweep
    from orchestrator.reporting.table import Results, Row

    res = Results("exp")
    metrics = {
        "em": 0.5,
        "f1": 0.6,
        "em_in_domain": 0.4,
        "f1_in_domain": 0.55,
        "em_out_domain": 0.7,
        "f1_out_domain": 0.8,
    }
    res.rows = [
        Row("inference", "exp", arm="m", run="m__coqa", task="coqa", metric=k, value=v, n=7) for k, v in metrics.items()
    ]
    res.inference_runs[("m", "coqa")] = ["m__coqa"]
    section = sweep.section(res)
    assert section is not None
    assert section["columns"][:6] == ["em", "f1", "em_in_domain", "f1_in_domain", "em_out_domain", "f1_out_domain"]
    assert section["table"][0]["values"][:6] == [0.5, 0.6, 0.4, 0.55, 0.7, 0.8]


def test_the_eval_report_shows_the_split(orch_home):
    from orchestrator.reporting.report import assemble, render_markdown
    from orchestrator.reporting.table import Results, Row

    res = Results("exp")
    metrics = {
        "em": 0.5,
        "f1": 0.6,
        "em_in_domain": 0.4,
        "f1_in_domain": 0.55,
        "em_out_domain": 0.7,
        "f1_out_domain": 0.8,
    }
    res.rows = [
        Row(
            "eval",
            "exp",
            arm="a",
            checkpoint="epoch_2",
            epoch=2,
            domain="qa",
            task="coqa",
            metric=k,
            value=v,
            primary=k == "f1",
            n=7,
        )
        for k, v in metrics.items()
    ]
    text = render_markdown(*assemble(res))
    assert "## In-domain and out-of-domain scores" in text
    assert "| a | epoch_2 | coqa | 0.500 | 0.600 | 0.400 | 0.550 | 0.700 | 0.800 |" in text
