import math
import sys
import threading

import pytest

from orchestrator.core.errors import UserError
from orchestrator.scoring.registry import SCORERS, get_scorer, register_scorer
from orchestrator.scoring.scorers import (
    extract_boxed,
    extract_choice,
    extract_yes_no,
    math_equal,
    score_boolq,
    score_math,
    score_mcq,
)
from orchestrator.scoring.weighted import values_equal, weighted_score

# --------------------------------------------------------------------------- BoolQ


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes.", "yes"),
        ("no, it is not", "no"),
        ("True", "yes"),
        ("FALSE - the passage says otherwise", "no"),
        ("Not really. No.", "no"),  # "not" is not "no"
        ("Yesterday it was, so yes", "yes"),  # whole words only
        ("I cannot tell", None),
    ],
)
def test_extract_yes_no(text, expected):
    assert extract_yes_no(text) == expected


def test_score_boolq_gold_forms():
    assert score_boolq("Yes, it is.", True) == {"accuracy": 1.0}
    assert score_boolq("yes", "no") == {"accuracy": 0.0}
    assert score_boolq("false", "False") == {"accuracy": 1.0}
    assert score_boolq("dunno", True) == {"accuracy": 0.0}


# --------------------------------------------------------------------------- multiple choice


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Answer: C", "C"),
        ("The answer is (B).", "B"),
        ("the correct answer is: D.", "D"),
        ("**Answer:** **E**", "E"),
        ("C. Metformin", "C"),
        ("(A)", "A"),
        ("B", "B"),
        ("\\boxed{D}", "D"),
        ("A 45-year-old man presents... so the answer is E", "E"),  # article "A" ignored
        ("Option (A) is wrong because ...; option C fits.", "C"),
        ("The answer is a beta blocker", None),  # lower-case "a" is the article
        ("Answer: I think so", None),  # pronoun, not option I
        ("No idea", None),
    ],
)
def test_extract_choice(text, expected):
    assert extract_choice(text) == expected


def test_extract_choice_respects_allowed_letters():
    assert extract_choice("Answer: E", letters="ABCD") is None
    assert extract_choice("Answer: E", letters="ABCDE") == "E"


def test_score_mcq():
    assert score_mcq("I'd go with (C).", "C") == {"accuracy": 1.0}
    assert score_mcq("Answer: B", "(c)") == {"accuracy": 0.0}
    with pytest.raises(ValueError):
        score_mcq("A", "Metformin")


# --------------------------------------------------------------------------- MATH


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),  # nested braces
        ("\\boxed{1} first, finally \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # last box; escaped braces
        ("\\boxed{x^{2^{3}}}", "x^{2^{3}}"),
        ("\\fbox{7}", "7"),
        ("The final answer is $\\boxed 5$.", "5"),  # MATH's brace-less form
        ("\\boxed{2} and then \\boxed{3", "2"),  # truncated last box skipped
        ("no box here", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\dfrac{1}{2}"),
        ("2", "2.0"),
        ("(x+1)^2", "x^2+2x+1"),
        ("\\boxed{\\frac{1}{2}}", "\\frac12"),
        ("10\\%", "10"),
        ("\\text{Monday}", "Monday"),
    ],
)
def test_math_equal_true(pred, gold):
    assert math_equal(pred, gold)


@pytest.mark.parametrize(
    "pred, gold",
    [("3", "2"), ("\\frac{1}{3}", "0.5"), ("x+1", "x-1"), ("", "2"), ("\\sqrt{2}", "2")],
)
def test_math_equal_false(pred, gold):
    assert not math_equal(pred, gold)


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("\\boxed{1 2}", "12"),  # no whitespace joining inside a number
        ("1 2", "12"),
        ("#", "#"),  # math-verify reads no math in it: wrong, even against itself
        ("\\unknowncmd{1}", "\\unknowncmd{1}"),
        ("\\frac{1}{2", "0.5"),  # unbalanced: never wrapped in a box
    ],
)
def test_unparseable_or_spaced_answers_are_wrong(pred, gold):
    assert not math_equal(pred, gold)


def test_boxed_fraction_equals_its_decimal():
    assert (
        math_equal("\\boxed{\\frac{1}{2}}", "0.5") and score_math("so \\boxed{\\frac{1}{2}}", "0.5")["accuracy"] == 1.0
    )


def test_no_fallback_without_math_verify(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # as if it were not installed
    with pytest.raises(ImportError):
        math_equal("2", "2.0")


def test_a_parser_crash_is_a_wrong_answer(monkeypatch):
    import math_verify

    def crash(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(math_verify, "parse", crash)
    assert not math_equal("2", "2")


def test_math_equal_in_worker_thread():
    # math_verify's default timeout uses signal.alarm, which fails off the main thread.
    result = []
    t = threading.Thread(target=lambda: result.append(math_equal("\\frac{1}{2}", "0.5")))
    t.start()
    t.join()
    assert result == [True]


def test_score_math_uses_last_box_of_both():
    gold_solution = "Half of it is left, so the answer is $\\boxed{\\frac{1}{2}}$."
    assert score_math("First \\boxed{3}... no wait, \\boxed{0.5}", gold_solution) == {"accuracy": 1.0}
    assert score_math("\\boxed{3}", gold_solution) == {"accuracy": 0.0}
    assert score_math("0.5", "\\frac{1}{2}") == {"accuracy": 1.0}  # bare answer, no box


# --------------------------------------------------------------------------- plain QA


def test_registry_qa_scorers():
    assert SCORERS["exact"].scores("The Nile", ["nile", "Amazon"]) == {"em": 1.0}
    assert SCORERS["squad"].scores("red car", "the red car!") == {"em": 1.0, "f1": 1.0}
    assert SCORERS["coqa"].scores("blue car", ["a red car"]) == {"em": 0.0, "f1": 0.5}


# --------------------------------------------------------------------------- weighted


def test_values_equal_tolerance_edges():
    assert values_equal(100.09, 100)  # 0.09% off
    assert values_equal("100.09", 100)
    assert not values_equal(100.2, 100)  # 0.2% off
    assert values_equal(0, 0.0) and not values_equal(1e-9, 0)  # relative to gold: 0 is exact
    assert values_equal("1,234", 1234)
    assert values_equal("The Paris.", "paris")
    assert not values_equal(True, 1)  # bools are not numbers


GOLD = [
    {"id": "q1", "value": 100, "references": ["a", "b"], "answerable": True},
    {"id": "q2", "value": "Paris", "references": ["c"], "answerable": True},
    {"id": "q3", "value": 100, "references": [], "answerable": True},
    {"id": "q4", "value": None, "references": [], "answerable": False},
    {"id": "q5", "value": None, "references": [], "answerable": False},
]
PRED = [
    {"id": "q1", "value": 100.09, "references": ["a"]},  # value ok (0.09%), Jaccard 1/2
    {"id": "q2", "value": "paris.", "references": ["c"]},  # value ok, Jaccard 1
    {"id": "q3", "value": 100.2, "references": []},  # value wrong (0.2%), Jaccard 1 (both empty)
    {"id": "q4", "answerable": False},  # unanswerable flagged
    {"id": "q5", "value": 42, "answerable": True},  # unanswerable missed
    {"id": "extra", "value": 1},  # not in gold: ignored
]


def test_weighted_score_hand_worked():
    # value accuracy = 2/3; Jaccard = (1/2 + 1 + 1) / 3 = 5/6; unanswerable recall = 1/2
    # score = 0.75 * 2/3 + 0.15 * 5/6 + 0.10 * 1/2 = 0.5 + 0.125 + 0.05 = 0.675
    out = weighted_score(PRED, GOLD)
    assert out["value_accuracy"] == pytest.approx(2 / 3)
    assert out["reference_jaccard"] == pytest.approx(5 / 6)
    assert out["unanswerable_recall"] == 0.5
    assert out["score"] == pytest.approx(0.675)
    assert SCORERS["weighted"].fn(PRED, GOLD) == out


def test_weighted_score_custom_weights():
    out = weighted_score(PRED, GOLD, weights={"value": 1.0, "references": 0.0, "unanswerable": 0.0})
    assert out["score"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        weighted_score(PRED, GOLD, weights={"value": 1.0})


def test_weighted_score_missing_and_absent_components():
    answerable = GOLD[:3]
    # q2 missing: value 1/3 (q1 only), Jaccard (1/2 + 0 + 1) / 3 = 1/2; no unanswerable gold
    # rows -> that weight is shared out: (0.75 * 1/3 + 0.15 * 1/2) / 0.9 = 0.325 / 0.9
    out = weighted_score([PRED[0], PRED[2]], answerable)
    assert math.isnan(out["unanswerable_recall"])
    assert out["value_accuracy"] == pytest.approx(1 / 3)
    assert out["reference_jaccard"] == pytest.approx(0.5)
    assert out["score"] == pytest.approx(0.325 / 0.9)


def test_weighted_score_unanswerable_claim_on_answerable_is_wrong():
    gold = [{"id": "q", "value": 5, "references": ["r"], "answerable": True}]
    out = weighted_score([{"id": "q", "value": "unanswerable", "references": ["r"]}], gold)
    assert out["value_accuracy"] == 0.0


def test_weighted_score_rejects_duplicate_ids():
    with pytest.raises(ValueError):
        weighted_score(PRED + PRED[:1], GOLD)


# --------------------------------------------------------------------------- registry


def test_registry_names():
    assert {"coqa", "squad", "boolq", "mcq", "math", "exact", "weighted"} <= set(SCORERS)


def test_register_and_get_scorer():
    def always_one(prediction, gold):
        return {"accuracy": 1.0}

    try:
        register_scorer("always_one", always_one)
        assert get_scorer("always_one").fn is always_one
        with pytest.raises(ValueError):
            register_scorer("always_one", always_one)
        register_scorer("always_one", always_one, replace=True)
    finally:
        SCORERS.pop("always_one", None)


def test_get_scorer_by_path_and_errors():
    assert get_scorer("boolq") is SCORERS["boolq"]
    assert get_scorer("orchestrator.scoring.scorers:score_mcq").fn is score_mcq
    for bad in ("nope", "orchestrator.no_such_module:f", "orchestrator.scoring.scorers:no_such_fn"):
        with pytest.raises(UserError):
            get_scorer(bad)


# --------------------------------------------------------------------------- one name, one behaviour


def test_every_scorer_declares_direction_and_headline():
    for name, scorer in SCORERS.items():
        assert scorer.name == name and scorer.higher_is_better is True and scorer.metric and scorer.description


@pytest.mark.parametrize(
    "prediction, gold, expected",
    [
        ("The Nile", ["nile", "Amazon"], 1.0),  # normalised (case, article)
        ("Alice is in 2, so Answer: Bob.", "Bob", 1.0),  # the stated final answer
        ("so \\boxed{Bob}", "Bob", 1.0),
        (" x ", "x", 1.0),
        ("xy", "x", 0.0),
        ("C.", "c", 1.0),
        ("", "a", 0.0),  # "a" normalises to nothing: compared as written, an empty reply never matches
        ("the", "a", 0.0),
        ("A", "a", 1.0),
    ],
)
def test_exact_is_one_behaviour_for_tasks_suites_and_rewards(prediction, gold, expected):
    from orchestrator.scoring.registry import score
    from orchestrator.scoring.rewards import load_reward

    assert SCORERS["exact"].scores(prediction, gold) == {"em": expected}
    assert score("exact", prediction, gold) == expected
    if isinstance(gold, str):
        assert load_reward("exact")(prediction, gold) == expected


def test_math_reward_unboxes_the_gold_like_the_scorer():
    from orchestrator.scoring.rewards import load_reward

    solution = "Half of it is left, so the answer is $\\boxed{\\frac{1}{2}}$."
    assert load_reward("math")("\\boxed{0.5}", solution) == 1.0 == SCORERS["math"].value("\\boxed{0.5}", solution)
    assert load_reward("math")("\\boxed{3}", solution) == 0.0


@pytest.mark.parametrize(
    "reply",
    [
        "The answer is \\boxed{42",  # cut off inside the box
        "So we get \\boxed{\\frac{1}{2",  # inside a nested group
        "\\boxed{",
    ],
)
def test_a_reply_cut_off_inside_its_box_is_no_answer(reply):
    gold = "42" if "42" in reply else "\\frac{1}{2}"
    assert score_math(reply, gold) == {"accuracy": 0.0}
    assert not math_equal(reply, gold)  # the fallback never wraps it so that the added brace closes the box
    assert SCORERS["exact"].value(reply, "42") == 0.0
    from orchestrator.scoring.rewards import load_reward

    assert load_reward("math")(reply, gold) == 0.0


def test_complete_box_before_a_truncated_one_still_counts():
    assert score_math("\\boxed{42} and then \\boxed{4", "42") == {"accuracy": 1.0}


def test_user_scorer_conventions(tmp_path, monkeypatch):
    (tmp_path / "my_scorers.py").write_text(
        "def bare(prediction, gold):\n    return float(prediction == gold)\n"
        "def with_record(prediction, gold, *, record):\n    return {'score': float(record['ok'])}\n"
        "def lower(prediction, gold):\n    return {'loss': 0.3}\n"
        "lower.higher_is_better = False\nlower.metric = 'loss'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    bare = get_scorer("my_scorers:bare")
    assert bare.value("a", "a") == 1.0 and bare.scores("a", "b") == {"score": 0.0} and not bare.needs_record
    rec = get_scorer("my_scorers:with_record")
    assert rec.needs_record and rec.value("x", None, record={"ok": True}) == 1.0
    low = get_scorer("my_scorers:lower")
    assert low.higher_is_better is False and low.value("x", "y") == 0.3
    from orchestrator.scoring.rewards import load_reward

    with pytest.raises(UserError, match="lower-is-better"):
        load_reward("my_scorers:lower")
    with pytest.raises(UserError, match="whole set"):
        SCORERS["weighted"].value("x", "y")


def test_check_scorer_ref_imports_nothing():
    from orchestrator.scoring.registry import check_scorer_ref

    assert check_scorer_ref("math") == "math" and check_scorer_ref("no_such_pkg.mod:f") == "no_such_pkg.mod:f"
    with pytest.raises(ValueError, match="livecodebench"):
        check_scorer_ref("fuzzy")


@pytest.mark.parametrize(
    ("name", "higher"),
    [
        ("coqa", True),
        ("wattbot", True),
        ("ece", False),
        ("val/ece", False),
        ("auroc", True),
        ("f1_in_domain", True),
        ("em_answered", True),
        ("val/reward_mean", True),
    ],
)
def test_higher_is_better_for_scorers_and_metrics(name, higher):
    from orchestrator.scoring.registry import higher_is_better

    assert higher_is_better(name) is higher


def test_higher_is_better_falls_back_to_what_a_file_declares():
    from orchestrator.scoring.registry import higher_is_better

    assert higher_is_better("val/loss", declared=False) is False and higher_is_better("val/loss") is True
