"""The experiment report: golden markdown, determinism, plots, sections, curves logic, significance."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from orchestrator.core import paths
from orchestrator.kinds.train.compare import best_checkpoint, overfitting
from orchestrator.reporting.report import Options, build, write_report
from orchestrator.reporting.results import collect
from orchestrator.scoring.significance import paired_bootstrap
from reporting.fixtures import correctness, sweep_experiment, training_experiment

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def mtl(orch_home):
    training_experiment("mtl")
    return collect("mtl")


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    chunks, pos = [], 8
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    return chunks


@pytest.mark.parametrize("experiment,build_fixture", [("mtl", training_experiment), ("sweep", sweep_experiment)])
def test_report_matches_golden(orch_home, experiment, build_fixture):
    build_fixture(experiment)
    report = write_report(collect(experiment))
    reference = GOLDEN / f"{experiment}.md"
    if os.environ.get("ORCH_UPDATE_GOLDEN") == "1":
        reference.write_text(report.read_text())
    assert report.read_text() == reference.read_text(), (
        f"report differs from {reference}; if the change is intended, refresh it with "
        f"ORCH_UPDATE_GOLDEN=1 pytest {__file__}"
    )


def test_same_inputs_same_bytes(mtl, tmp_path):
    a = write_report(mtl, tmp_path / "a").parent
    b = write_report(collect("mtl"), tmp_path / "b").parent
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert Path("report.md") in files and Path("plots/evolution.png") in files
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs between two runs on the same inputs"


def test_plots_are_valid_pngs_without_metadata(mtl, tmp_path):
    import matplotlib.image

    out = write_report(mtl, tmp_path / "r").parent
    pngs = sorted((out / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["evolution.png", "gradients.png"]
    for p in pngs:
        kinds = [k for k, _ in _png_chunks(p.read_bytes())]
        assert not {b"tEXt", b"iTXt", b"zTXt", b"tIME"} & set(kinds), f"{p.name} carries metadata: {kinds}"
        img = matplotlib.image.imread(p)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0  # something was drawn
        assert f"](plots/{p.name})" in (out / "report.md").read_text()


def test_every_section_is_there(mtl, tmp_path):
    md = write_report(mtl, tmp_path / "r").read_text()
    for heading in (
        "## Overview",
        "### Arms",
        "### Jobs",
        "### Failures",
        "## baseline vs pcgrad",
        "### Per domain",
        "### Per task",
        "## Evolution",
        "## Gradient-conflict diagnostics",
        "## Recommendations",
        "## Data problems",
    ):
        assert f"\n{heading}\n" in md, heading
    # early stop per arm, device hours from the 2-GPU training script, the failure's log tail
    assert "| pcgrad | COMPLETED | node2 | 3 | 0.50 | 1.00 | yes | 3 | no improvement" in md
    assert "RuntimeError: CUDA out of memory" in md and "$ORCH_HOME/logs/mtl-eval/_jobs/eval/" in md


def test_comparison_marks_real_differences_only(mtl):
    cmp = build(mtl)["comparison"]
    assert cmp["baseline"] == "baseline" and cmp["baseline_checkpoint"] == "epoch_3"
    (arm,) = cmp["arms"]
    marks = {t["task"]: t["mark"] for t in arm["tasks"]}
    # built: +0.18 / +0.12 on math, -0.18 on mbpp, +0.01 (two flips of 200) on humaneval
    assert marks == {"gsm8k": "improvement", "math500": "improvement", "mbpp": "regression", "humaneval": ""}
    dom = {d["domain"]: d for d in arm["domains"]}
    assert dom["math"]["mark"] == "improvement" and dom["code"]["mark"] == "regression"
    assert dom["math"]["delta"] == pytest.approx(0.15) and dom["math"]["rel"] == pytest.approx(0.15 / 0.45)
    assert dom["math"]["low"] < 0.15 < dom["math"]["high"]


def test_recommendations_follow_the_numbers(mtl):
    recs = build(mtl)["recommendations"]
    assert any(r.startswith("Mixed:") and "improves math" in r and "regresses code" in r for r in recs)
    assert "Checkpoint for pcgrad: epoch 2 (best mean over 2 domain(s), evaluation)." in recs
    assert any("Overfitting after the peak: code (pcgrad, peak epoch 2)" in r for r in recs)


def test_evolution_best_and_overfit_flags(mtl):
    evo = build(mtl, Options(overfit_threshold=0.02))["evolution"]
    rows = {(r["domain"], r["arm"]): r for r in evo["rows"]}
    assert rows[("code", "pcgrad")]["best_epoch"] == 2 and rows[("code", "pcgrad")]["overfit"]
    assert rows[("code", "baseline")]["drop"] == pytest.approx(0.01) and not rows[("code", "baseline")]["overfit"]
    assert not build(mtl, Options(overfit_threshold=0.1))["evolution"]["rows"][1]["overfit"]


def test_best_checkpoint_on_hand_made_curves():
    assert best_checkpoint([(3, 0.5), (1, 0.2), (2, 0.7)]) == (2, 0.7)
    assert best_checkpoint([(1, 0.7), (2, 0.7), (3, 0.1)]) == (1, 0.7)  # earliest on ties
    assert best_checkpoint([(1, 0.3), (2, 0.1), (3, 0.2)], higher_is_better=False) == (2, 0.1)  # e.g. ECE
    assert best_checkpoint([(1, float("nan")), (2, 0.4)]) == (2, 0.4)
    assert best_checkpoint([]) is None


def test_overfitting_on_hand_made_curves():
    assert overfitting([(1, 0.5), (2, 0.8), (3, 0.7)], threshold=0.05) == (True, pytest.approx(0.1))
    assert overfitting([(1, 0.5), (2, 0.8), (3, 0.78)], threshold=0.05)[0] is False  # within threshold
    assert overfitting([(1, 0.5), (2, 0.8), (3, 0.4), (4, 0.79)], threshold=0.05)[0] is False  # recovered dip
    assert overfitting([(1, 0.5), (2, 0.6), (3, 0.7)], threshold=0.0) == (False, 0.0)  # still improving
    flag, drop = overfitting([(1, 0.30), (2, 0.10), (3, 0.25)], higher_is_better=False, threshold=0.1)
    assert flag and drop == pytest.approx(0.15)  # lower-is-better: rising again is the fall


def test_paired_bootstrap_flags_real_difference_not_noise():
    n = 400
    a = correctness(0.5, n, seed=1)
    better = correctness(0.58, n, seed=2, base=a)  # 32 wrong answers fixed, nothing broken
    rng = np.random.default_rng(3)
    noisy = a.copy()  # 10 answers fixed and 10 broken: same accuracy, different answers
    noisy[rng.choice(np.flatnonzero(~a), 10, replace=False)] = True
    noisy[rng.choice(np.flatnonzero(a), 10, replace=False)] = False
    as_scores = lambda arr: {str(i): float(v) for i, v in enumerate(arr)}  # noqa: E731
    real = paired_bootstrap([(as_scores(a), as_scores(better))])
    noise = paired_bootstrap([(as_scores(a), as_scores(noisy))])
    assert real.significant and real.delta == pytest.approx(0.08) and real.low > 0
    assert not noise.significant and noise.delta == pytest.approx(0.0) and noise.low < 0 < noise.high
    assert paired_bootstrap([(as_scores(a), as_scores(better))]) == real  # fixed seed
    assert paired_bootstrap([({"x": 1.0}, {"y": 1.0})]) is None  # nothing paired


def test_direction_comes_from_the_metric(orch_home):
    """ECE is lower-is-better: a significant drop is an improvement."""
    from reporting.fixtures import eval_record

    n = 300
    base = correctness(0.6, n, seed=5)
    worse = correctness(0.4, n, seed=6, base=base)
    for arm, c in (("baseline", base), ("other", worse)):
        rec = eval_record("calib", arm, 1, "d", "t", c, metric="ece")
        rec["higher_is_better"] = True  # a wrong declaration: the metric registry wins
        path = paths.eval_result("calib", arm, "epoch_1", "t")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    (arm,) = build(collect("calib"))["comparison"]["arms"]
    assert arm["tasks"][0]["delta"] == pytest.approx(-0.2) and arm["tasks"][0]["mark"] == "improvement"


def test_epoch_zero_is_plotted_but_never_chosen(orch_home):
    """Trainers validate before training (epoch 0): a curve point, not a checkpoint to recommend."""
    arm = paths.run_dir("t", "solo")
    arm.mkdir(parents=True)
    lines = [{"schema_version": 1, "epoch": e, "val/a/reward": v} for e, v in ((0, 0.9), (1, 0.2), (2, 0.5), (3, 0.4))]
    (arm / paths.METRICS_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines))
    ctx = build(collect("t"))
    (row,) = ctx["evolution"]["rows"]
    assert ctx["evolution"]["curves"]["a"]["solo"][0] == (0, 0.9)
    assert (row["best_epoch"], row["best"], row["overfit"]) == (2, 0.5, True)
    assert "Checkpoint for solo: epoch 2 (best mean over 1 domain(s), training validation)." in ctx["recommendations"]


def test_too_few_pairs_is_not_enough_data():
    """Issue 10, 4c: one pair gives a zero-width interval; below MIN_PAIRS no verdict at all."""
    from orchestrator.scoring.significance import MIN_PAIRS

    assert MIN_PAIRS == 6
    one = paired_bootstrap([({"q": 0.0}, {"q": 1.0})])
    assert one.n == 1 and one.delta == 1.0
    assert not one.enough and not one.significant and one.low is None and one.high is None
    pairs = lambda k: ({str(i): 0.0 for i in range(k)}, {str(i): 1.0 for i in range(k)})  # noqa: E731
    assert not paired_bootstrap([pairs(5)]).significant  # unanimous, but a sign test says p = 0.0625
    six = paired_bootstrap([pairs(6)])
    assert six.enough and six.significant  # unanimous over 6: p = 0.03 by a sign test
    # a domain: one task well covered, one with a single pair: the domain has no verdict either
    many = ({str(i): float(i % 2) for i in range(100)}, {str(i): 1.0 for i in range(100)})
    assert paired_bootstrap([many]).significant
    assert not paired_bootstrap([many, ({"x": 0.0}, {"x": 1.0})]).enough


def test_report_says_not_enough_data_for_a_single_pair(orch_home):
    from reporting.fixtures import eval_record

    for arm, c in (("baseline", [False, True, True]), ("other", [True, True, True])):
        rec = eval_record("few", arm, 1, "d", "t", np.array(c))
        rec["per_example"] = rec["per_example"][:1]  # one paired example
        path = paths.eval_result("few", arm, "epoch_1", "t")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    res = collect("few")
    ctx = build(res)
    (arm,) = ctx["comparison"]["arms"]
    assert arm["tasks"][0]["mark"] == "too few" and arm["domains"][0]["mark"] == "too few"
    assert arm["tasks"][0]["n"] == 1 and arm["tasks"][0]["low"] is None
    md = write_report(res).read_text()
    assert "▲ improvement" not in md and "▼ regression" not in md
    assert "| 1 | not enough data |" in md and "fewer than 6 paired examples in a task" in md
    assert any("Too few paired examples in d (other" in r for r in ctx["recommendations"])
    assert not any(r.startswith("Use other") for r in ctx["recommendations"])


def test_checkpoint_choice_section(orch_home, tmp_path):
    """An arm trained with evaluation.every_save names its reward-best and held-out-best
    checkpoints: the section shows both, per-domain scores with CIs, and the paired verdict."""
    import json

    from orchestrator.core import paths

    training_experiment("mtl")
    f = paths.run_dir("mtl", "pcgrad") / paths.SUMMARY_FILE
    s = json.loads(f.read_text())
    s["best_reward"] = {"epoch": 1, "checkpoint": "epoch_1", "metric": "val/reward_mean", "value": 0.5}
    s["best_heldout"] = {"epoch": 3, "checkpoint": "epoch_3", "metric": "eval/mean", "value": 0.56}
    f.write_text(json.dumps(s))
    res = collect("mtl")
    choice = build(res)["choice"]
    (arm,) = choice["arms"]
    assert arm["arm"] == "pcgrad" and not arm["same"]
    assert (arm["reward"]["checkpoint"], arm["heldout"]["checkpoint"]) == ("epoch_1", "epoch_3")
    math = next(d for d in arm["domains"] if d["domain"] == "math")
    assert math["mark"] == "improvement" and math["low"] > 0  # 0.39 -> 0.60 over 200 examples each
    assert math["heldout"]["low"] < math["b"] < math["heldout"]["high"]
    md = write_report(res, tmp_path / "r").read_text()
    assert "\n## Checkpoint choice\n" in md and "reward-best: `epoch_1`" in md and "held-out-best: `epoch_3`" in md


def test_checkpoint_choice_verdict_by_mcnemar_when_configured(orch_home, tmp_path):
    """summary.json evaluation.significance_test mcnemar: the verdict column is McNemar's exact
    test over the domain's pooled 0/1 pairs (hand-checked against the binomial p-value), the CI
    column stays the bootstrap's; fractional scores give no McNemar verdict and a warning."""
    import json
    import math

    from orchestrator.core import paths

    training_experiment("mtl")
    f = paths.run_dir("mtl", "pcgrad") / paths.SUMMARY_FILE
    s = json.loads(f.read_text())
    s["best_reward"] = {"epoch": 1, "checkpoint": "epoch_1", "metric": "val/reward_mean", "value": 0.5}
    s["best_heldout"] = {"epoch": 3, "checkpoint": "epoch_3", "metric": "eval/mean", "value": 0.56}
    s["evaluation"] = {"significance_test": "mcnemar"}
    f.write_text(json.dumps(s))
    res = collect("mtl")
    (arm,) = build(res)["choice"]["arms"]
    assert arm["test"] == "mcnemar"
    math_row = next(d for d in arm["domains"] if d["domain"] == "math")
    tasks = sorted(
        t for (a, c, t) in res.per_example if a == "pcgrad" and c == "epoch_1" and (a, "epoch_3", t) in res.per_example
    )
    wins = losses = 0
    for t in tasks:
        if next(r for r in res.of("eval") if r.task == t).domain != "math":
            continue
        a, b = res.per_example[("pcgrad", "epoch_1", t)], res.per_example[("pcgrad", "epoch_3", t)]
        wins += sum(b[i] > a[i] for i in a.keys() & b.keys())
        losses += sum(a[i] > b[i] for i in a.keys() & b.keys())
    n = wins + losses
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n)
    assert math_row["p"] == pytest.approx(p) and wins > losses
    assert math_row["mark"] == ("improvement" if p < 0.05 else "")
    assert math_row["low"] is not None  # the bootstrap's CI, still shown
    md = write_report(res, tmp_path / "r").read_text()
    assert "Verdict: McNemar's exact test." in md and "(p = " in md

    for key in [k for k in res.per_example if k[0] == "pcgrad" and k[1] == "epoch_3"]:
        res.per_example[key] = {i: 0.5 for i in res.per_example[key]}  # e.g. avg@n scores
    (arm,) = build(res)["choice"]["arms"]
    assert {d["mark"] for d in arm["domains"]} == {"n/a"}
    assert any("0/1 per-example scores" in w and "no McNemar verdict" in w for w in res.warnings)
