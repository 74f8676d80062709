"""`orchestrate score --json` on SQuAD v1.1 and math files (tests/scoring/data), figures worked out by
hand from evaluate-v1.1.py's definitions and math-verify's equivalence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def _score(cli, *args) -> dict:
    r = cli("score", *args, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_squad_v11_figures(cli):
    out = _score(
        cli,
        "--task",
        "squad",
        "--predictions",
        DATA / "squad" / "predictions.json",
        "--gold",
        DATA / "squad" / "dev-v1.1.json",
    )
    # q1 "a" vs "the": both normalise to nothing → EM 1, F1 0 (no common token)
    # q2 "the Broncos" vs (Denver Broncos, Broncos) → 1, 1;  q3 "in 1990" vs "1990" → 0, 2/3
    # q4 not predicted → 0, 0;  q5 "California" vs "Santa Clara, California" → 0, 1/2
    assert out["n"] == 5 and out["missing"] == ["q4"]
    assert out["em"] == pytest.approx(2 / 5) and out["f1"] == pytest.approx((1 + 2 / 3 + 1 / 2) / 5)
    assert (round(100 * out["em"], 3), round(100 * out["f1"], 3)) == (40.0, 43.333)  # evaluate-v1.1's print


def test_math_records_accuracy(cli):
    out = _score(cli, "--task", "math", "--predictions", DATA / "math" / "predictions.jsonl")
    # m1 \boxed{1 2} ≠ 12; m2 \frac{1}{2} = 0.5; m3 x^2+2x+1 = (x+1)^2; m4 "#" is no math: wrong;
    # m5 cut off inside its box: no answer; m6 10\% = 10
    assert out["n"] == 6 and out["accuracy"] == pytest.approx(3 / 6) == out["metrics"]["accuracy"]
