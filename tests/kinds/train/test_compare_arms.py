"""Several arms against the baseline: one family of tests, Holm-corrected, and a win/tie/loss table."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest, wilcoxon

from orchestrator.kinds.train.compare import arms_vs_baseline
from orchestrator.reporting.table import Results, Row
from orchestrator.scoring.significance import holm, paired_p

N = 60


def test_holm_matches_the_textbook_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_paired_p_is_mcnemar_on_binary_and_wilcoxon_otherwise():
    a = {str(i): float(i % 2) for i in range(20)}
    b = {str(i): 1.0 for i in range(20)}
    p, test = paired_p([(a, b)])
    assert test == "mcnemar" and p == pytest.approx(binomtest(10, 10, 0.5).pvalue)
    c = {str(i): 0.1 * i for i in range(20)}
    d = {str(i): 0.1 * i + (0.05 if i % 3 else -0.02) for i in range(20)}
    p, test = paired_p([(c, d)])
    assert test == "wilcoxon" and p == pytest.approx(wilcoxon([d[k] - c[k] for k in c]).pvalue)
    assert paired_p([({"1": 1.0}, {"1": 0.0})]) is None  # too few pairs for any verdict


def _results() -> Results:
    """baseline, better (clearly better on t1, equal on t2), worse (clearly worse on t1), same."""
    correct = {
        "baseline": {"t1": 12, "t2": 30},
        "better": {"t1": 48, "t2": 30},
        "worse": {"t1": 2, "t2": 30},
        "same": {"t1": 12, "t2": 31},
    }
    res = Results("exp")
    for arm, tasks in correct.items():
        for task, k in tasks.items():
            scores = {f"{task}-{i}": float(i < k) for i in range(N)}
            res.per_example[(arm, "epoch_4", task)] = scores
            res.rows.append(
                Row(
                    "eval",
                    "exp",
                    arm=arm,
                    checkpoint="epoch_4",
                    epoch=4,
                    domain="d",
                    task=task,
                    metric="accuracy",
                    value=k / N,
                    primary=True,
                    higher_is_better=True,
                )
            )
    return res


def test_every_arm_against_the_baseline_with_holm_and_win_tie_loss():
    out = arms_vs_baseline(_results())
    assert out is not None and out["baseline"] == "baseline" and out["family"] == 6
    rows = {(r["arm"], r["task"]): r for r in out["rows"]}
    raw = [r["p"] for r in out["rows"]]
    assert [r["p_holm"] for r in out["rows"]] == pytest.approx(holm(raw))
    # the scores nest (example i right in the better arm whenever right in the baseline): every
    # discordant pair goes one way
    assert rows[("better", "t1")]["p"] == pytest.approx(binomtest(36, 36, 0.5).pvalue)
    assert rows[("better", "t1")]["outcome"] == "win" and rows[("worse", "t1")]["outcome"] == "loss"
    assert rows[("same", "t2")]["outcome"] == "tie" and rows[("better", "t2")]["p"] == 1.0
    assert {w["arm"]: (w["wins"], w["ties"], w["losses"]) for w in out["wtl"]} == {
        "better": (1, 1, 0),
        "worse": (0, 1, 1),
        "same": (0, 2, 0),
    }


def test_two_arms_keep_the_pairwise_comparison_only():
    res = _results()
    res.rows = [r for r in res.rows if r.arm in ("baseline", "better")]
    assert arms_vs_baseline(res) is None


def test_the_report_shows_the_win_tie_loss_table(orch_home):
    from orchestrator.reporting.report import assemble, render_markdown

    ctx, sections = assemble(_results())
    text = render_markdown(ctx, sections)
    assert "## Every arm against baseline (Holm-corrected)" in text
    assert "| better | 1 | 1 | 0 | 0 |" in text and "| worse | 0 | 1 | 1 | 0 |" in text
    assert "| better | d | t1 | accuracy | 0.200 | 0.800 | +0.600 | mcnemar |" in text
