import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from orchestrator.scoring.metrics import (
    METRICS,
    auroc,
    confidence_from_logprobs,
    coqa_turn_scores,
    exact_match,
    expected_calibration_error,
    f1,
    normalize_answer,
    squad_f1,
    squad_scores,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("The  Quick, brown-fox!", "quick brownfox"),  # punctuation dropped before splitting
        ("An apple a day", "apple day"),
        ("theatre", "theatre"),  # articles only as whole words
        ("A.B.C.", "abc"),  # "a" is glued to "bc" once the dots go, so it stays
        ("  the  ", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_exact_match_ignores_case_articles_punctuation():
    assert exact_match("The Eiffel Tower.", "eiffel tower") == 1.0
    assert exact_match("Eiffel", "eiffel tower") == 0.0
    assert exact_match("", "") == 1.0


def test_f1_hand_computed():
    # pred -> [cat, sat, on, mat], gold -> [cat, on, mat]: overlap 3, P = 3/4, R = 1, F1 = 6/7
    assert f1("The cat sat on the mat.", "a cat on a mat") == pytest.approx(6 / 7)
    # overlap counts multiplicity: [cat, cat] vs [cat] -> overlap 1, P = 1/2, R = 1, F1 = 2/3
    assert f1("the cat cat", "cat") == pytest.approx(2 / 3)
    assert f1("dog", "cat") == 0.0


def test_f1_empty_answers_follow_coqa():
    assert f1("", "") == 1.0
    assert f1("the", "") == 1.0  # normalises to no tokens on both sides
    assert f1("cat", "") == 0.0
    assert f1("", "cat") == 0.0


def test_coqa_multi_gold_leave_one_out():
    pred = "the red car"  # -> "red car"
    golds = ["red car", "blue truck", "a blue car"]
    # Per gold: EM = 1, 0, 0;  F1 = 1, 0, 0.5  ("red car" vs "blue car": P = R = 1/2).
    # Leave out gold 0: max EM(0, 0) = 0, max F1(0, 0.5) = 0.5
    # Leave out gold 1: max EM(1, 0) = 1, max F1(1, 0.5) = 1
    # Leave out gold 2: max EM(1, 0) = 1, max F1(1, 0)   = 1
    # EM = (0 + 1 + 1) / 3 = 2/3;  F1 = (0.5 + 1 + 1) / 3 = 5/6
    scores = coqa_turn_scores(pred, golds)
    assert scores["em"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(5 / 6)
    # SQuAD takes the plain max over golds instead.
    assert squad_scores(pred, golds) == {"em": 1.0, "f1": 1.0}


def test_coqa_single_gold_is_plain_score():
    assert coqa_turn_scores("blue car", ["a red car"]) == {"em": 0.0, "f1": 0.5}
    with pytest.raises(ValueError):
        coqa_turn_scores("x", [])


def test_squad_f1_follows_evaluate_v11_when_a_side_normalises_to_nothing():
    # evaluate-v1.1.py: f1 is 0 when no token is shared, so an empty side gives 0 (both empty too);
    # its exact match compares the normalised strings, so "the" vs "a" is an exact match.
    assert squad_scores("a", "the") == {"em": 1.0, "f1": 0.0}
    assert squad_f1("", "the") == 0.0 == squad_f1("cat", "an")
    assert f1("a", "the") == 1.0  # CoQA's compute_f1: both empty is 1


def test_squad_accepts_single_string():
    assert squad_scores("Paris!", "paris") == {"em": 1.0, "f1": 1.0}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [7, 50, 1000])
def test_auroc_matches_sklearn_with_ties(seed, n):
    rng = np.random.default_rng(seed)
    correct = rng.random(n) < 0.4
    correct[:2] = [True, False]  # both classes present
    tied = rng.integers(0, 5, n) / 4  # heavy ties
    continuous = rng.random(n)
    for conf in (tied, continuous):
        assert abs(auroc(conf, correct) - roc_auc_score(correct, conf)) <= 1e-12


def test_auroc_hand_cases():
    assert auroc([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 0]) == 1.0
    assert auroc([0.9, 0.8, 0.7, 0.6], [0, 0, 1, 1]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [1, 0, 1]) == 0.5
    # pairs (pos, neg): (0.8, 0.8) tie = 1/2, (0.8, 0.2) = 1, (0.4, 0.8) = 0, (0.4, 0.2) = 1 -> 2.5/4
    assert auroc([0.8, 0.4, 0.8, 0.2], [True, True, False, False]) == 0.625


def test_auroc_one_class_is_nan():
    assert math.isnan(auroc([0.1, 0.9], [1, 1]))
    assert math.isnan(auroc([0.1, 0.9], [False, False]))


def test_auroc_rejects_bad_input():
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [1])
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [1, 2])


def test_ece_hand_worked():
    conf = [0.1, 0.25, 0.3, 0.8, 0.95]
    correct = [0, 1, 0, 1, 1]
    # 10 right-inclusive bins: 0.1 -> [0, 0.1]; 0.25 and 0.3 -> (0.2, 0.3]; 0.8 -> (0.7, 0.8];
    # 0.95 -> (0.9, 1].
    # [0, 0.1]:   n=1, acc 0,   conf 0.1   -> |gap| 0.1
    # (0.2, 0.3]: n=2, acc 0.5, conf 0.275 -> |gap| 0.225
    # (0.7, 0.8]: n=1, acc 1,   conf 0.8   -> |gap| 0.2
    # (0.9, 1]:   n=1, acc 1,   conf 0.95  -> |gap| 0.05
    # ECE = (1*0.1 + 2*0.225 + 1*0.2 + 1*0.05) / 5 = 0.8 / 5 = 0.16
    # (had 0.3 landed in (0.3, 0.4] it would be 1.4 / 5 = 0.28)
    assert expected_calibration_error(conf, correct) == pytest.approx(0.16)


def test_ece_edges_and_perfect_calibration():
    # 0 goes to the first bin and 1 to the last; both perfectly calibrated here.
    assert expected_calibration_error([0.0, 1.0], [0, 1]) == 0.0
    assert expected_calibration_error([0.0, 1.0], [1, 0]) == 1.0
    # one bin: |mean correct - mean conf| = |0.5 - 0.7|
    assert expected_calibration_error([0.6, 0.8], [1, 0], n_bins=1) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        expected_calibration_error([1.5], [1])


def test_confidence_from_logprobs():
    out = confidence_from_logprobs([math.log(0.5), math.log(0.25)])
    assert out["total"] == pytest.approx(0.125)
    assert out["mean"] == pytest.approx(math.sqrt(0.125))  # geometric mean of 0.5 and 0.25
    assert confidence_from_logprobs([]) == {"mean": None, "total": None}


def test_metric_registry_directions():
    assert set(METRICS) >= {"em", "f1", "accuracy", "auroc", "ece"}
    assert METRICS["em"].higher_is_better and METRICS["auroc"].higher_is_better
    assert not METRICS["ece"].higher_is_better
    assert METRICS["ece"].is_better(0.05, 0.1)
    assert METRICS["f1"].is_better(0.9, 0.5)
    assert METRICS["em"].aggregate([1.0, 0.0, 1.0, 1.0]) == 0.75
    assert METRICS["auroc"].aggregate is None  # corpus-level
    assert METRICS["f1"].fn("the cat", "cat") == 1.0
