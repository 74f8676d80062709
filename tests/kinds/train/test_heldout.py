"""Held-out early stopping whose results arrive late (kinds/train/heldout.py): pure, fast."""

from __future__ import annotations

import json

import pytest

from orchestrator.kinds.train.heldout import HeldOutStopping, metric_value


def result(task: str, domain: str, scores: list[float]) -> dict:
    acc = sum(scores) / len(scores)
    return {
        "task": task,
        "domain": domain,
        "primary_metric": "accuracy",
        "metrics": {"accuracy": acc},
        "per_example": [{"id": i, "correct": s > 0, "score": s} for i, s in enumerate(scores)],
    }


def ckpt(a: float, b: float, n: int = 20) -> list[dict]:
    """Two tasks whose accuracies are a and b (the first round(a*n) examples right)."""
    return [
        result("add", "arithmetic", [1.0] * round(a * n) + [0.0] * (n - round(a * n))),
        result("copy", "copy", [1.0] * round(b * n) + [0.0] * (n - round(b * n))),
    ]


def test_metric_value_mean_and_domain():
    r = ckpt(0.5, 1.0)
    assert metric_value("eval/mean", r)[0] == pytest.approx(0.75)
    value, examples = metric_value("eval/copy/accuracy", r)
    assert value == 1.0 and list(examples) == ["copy"]
    with pytest.raises(ValueError, match="no task of domain 'math'"):
        metric_value("eval/math/accuracy", r)


def test_decisions_wait_for_results_and_go_in_checkpoint_order():
    h = HeldOutStopping("eval/mean", patience=2, min_delta=0.0)
    arrived: dict[int, list[dict]] = {}
    for n in (2, 4, 6):
        h.saved(n)
    arrived[4] = ckpt(0.5, 0.5)  # 4 in before 2: nothing decided, 2 comes first
    assert h.arrive(5, arrived.get) == [] and h.pending == [2, 4, 6]
    arrived[2] = ckpt(0.2, 0.2)
    ds = h.arrive(6, arrived.get)
    assert [(d.epoch, d.improved) for d in ds] == [(2, True), (4, True)]
    assert h.pending == [6] and h.consumed[4]["at"] == 6


def test_stop_where_the_hand_rule_says_and_epochs_past_decision():
    """patience 2 over evaluations: best at 2, then two worse ones (4, 6) -> stop decided for 6."""
    h = HeldOutStopping("eval/mean", patience=2, min_delta=0.0, min_epochs=0)
    values = {2: (0.8, 0.8), 4: (0.5, 0.5), 6: (0.6, 0.6), 8: (0.9, 0.9)}
    for n in values:
        h.saved(n)
    h.arrive(7, lambda n: ckpt(*values[n]) if n <= 6 else None)
    assert (h.decided, h.decided_at) == (6, 7)
    assert h.stopping.best_epoch == 2
    assert "checkpoint epoch 6 at epoch 7" in (h.stop_reason or "")
    h.arrive(9, lambda n: ckpt(*values[n]))  # once stopped, a later better one changes nothing
    assert (h.decided, h.stopping.best_epoch) == (6, 2)


def test_failed_evaluation_is_skipped_not_counted():
    h = HeldOutStopping("eval/mean", patience=1)
    h.saved(1)
    h.saved(2)
    h.arrive(3, lambda n: "evaluation of add ended FAILED" if n == 1 else ckpt(0.5, 0.5))
    assert h.consumed[1] == {"at": 3, "missing": "evaluation of add ended FAILED"}
    assert h.stopping.best_epoch == 2 and h.decided is None


def test_significance_gates_improvement():
    """A small gain is not an improvement with significance on; a large one is."""
    plain = HeldOutStopping("eval/mean", patience=5)
    gated = HeldOutStopping("eval/mean", patience=5, significance=True)

    def right(lo: int, hi: int) -> list[float]:  # examples lo..hi-1 of 40 right
        return [1.0 if lo <= i < hi else 0.0 for i in range(40)]

    # 2 gains 4 examples and loses 2 of 1's (net +2 per task): noise; 3 gets every one right
    spans = {1: (0, 20), 2: (2, 24), 3: (0, 40)}
    for h in (plain, gated):
        for n in spans:
            h.saved(n)
        h.arrive(4, lambda n: [result(t, t, right(*spans[n])) for t in ("add", "copy")])
    assert [plain.consumed[n]["improved"] for n in (1, 2, 3)] == [True, True, True]
    assert [gated.consumed[n]["improved"] for n in (1, 2, 3)] == [True, False, True]
    low, high = gated.consumed[3]["interval_vs_best"]
    assert low > 0 and high > low
    assert gated.stopping.bad_epochs == 0 and gated.stopping.best_epoch == 3


def test_state_round_trip_takes_the_same_decisions():
    """A requeued arm restores the consumed results and decides the rest identically."""
    values = {2: (0.8, 0.8), 4: (0.5, 0.5), 6: (0.4, 0.4)}
    a = HeldOutStopping("eval/mean", patience=2, significance=True)
    for n in values:
        a.saved(n)
    a.arrive(3, lambda n: ckpt(*values[n]) if n == 2 else None)
    b = HeldOutStopping.from_dict(json.loads(json.dumps(a.to_dict())))  # JSON-able, like trainer_state
    for h in (a, b):
        h.arrive(7, lambda n: ckpt(*values[n]))
    assert a.to_dict() == b.to_dict()
    assert (b.decided, b.stopping.best_epoch) == (6, 2)


def test_decision_lag_makes_the_stop_epoch_independent_of_arrival():
    """lag 1: checkpoint N is decided exactly at epoch N + 1, however early its results arrived."""
    values = {2: (0.8, 0.8), 4: (0.5, 0.5), 6: (0.4, 0.4)}
    early, late = HeldOutStopping("eval/mean", patience=2, lag=1), HeldOutStopping("eval/mean", patience=2, lag=1)
    for n in values:
        early.saved(n)
        late.saved(n)
    for now in range(1, 9):
        early.arrive(now, lambda n: ckpt(*values[n]))  # every result in at once
        assert not early.overdue(now)
        got = {n: ckpt(*values[n]) for n in values if n + 1 <= now}  # each just in time
        late.arrive(now, got.get)
    assert (early.decided, early.decided_at) == (late.decided, late.decided_at) == (6, 7)
    assert early.consumed == late.consumed
    waiting = HeldOutStopping("eval/mean", lag=0)
    waiting.saved(3)
    waiting.arrive(3, lambda n: None)
    assert waiting.overdue(3)  # the trainer waits here (at most evaluation.wait_s)


def test_mcnemar_gates_improvement_by_hand_computed_p():
    """significance_test mcnemar: checkpoint 2 wins 7 discordant examples and loses 1 against the
    best (1): p = 2·(1 + 8)/2^8 = 0.0703, no improvement although its mean is higher (the bootstrap
    calls the same gain significant); 3 wins 9 and loses 0: p = 2/2^9 = 0.0039, an improvement."""

    def right(ids: set[int]) -> list[float]:
        return [1.0 if i in ids else 0.0 for i in range(40)]

    base = set(range(20))
    sets = {1: base, 2: (base - {0}) | set(range(20, 27)), 3: base | set(range(20, 29))}
    made = {}
    for test in ("mcnemar", "bootstrap"):
        h = HeldOutStopping("eval/mean", patience=5, significance=True, test=test)
        for n in sets:
            h.saved(n)
        h.arrive(4, lambda n: [result("add", "arithmetic", right(sets[n]))])
        made[test] = h
    mc, bs = made["mcnemar"], made["bootstrap"]
    assert [mc.consumed[n]["improved"] for n in (1, 2, 3)] == [True, False, True]
    assert mc.consumed[2]["p_vs_best"] == pytest.approx(2 * 9 / 256)
    assert mc.consumed[3]["p_vs_best"] == pytest.approx(2 / 512)
    assert mc.consumed[2]["interval_vs_best"] is None and bs.consumed[2]["p_vs_best"] is None
    assert bs.consumed[2]["improved"]  # the tests differ here: the choice matters
    assert HeldOutStopping.from_dict(json.loads(json.dumps(mc.to_dict()))).test == "mcnemar"


def test_mcnemar_on_non_binary_scores_is_a_clear_error():
    from orchestrator.core.errors import UserError

    h = HeldOutStopping("eval/mean", significance=True, test="mcnemar")
    h.saved(1)
    h.saved(2)
    scores = {1: [0.0] * 10, 2: [0.5] * 10}  # e.g. avg@n over several samples
    with pytest.raises(UserError, match=r"early_stopping.significance_test mcnemar.*0/1 per-example scores"):
        h.arrive(3, lambda n: [result("add", "arithmetic", scores[n])])


def test_patience_counts_evaluated_checkpoints_in_the_stop_reason():
    h = HeldOutStopping("eval/mean", patience=1, min_delta=0.0)
    for n in (2, 4):
        h.saved(n)
    h.arrive(5, lambda n: ckpt(0.5, 0.5))
    assert h.decided == 4 and "for 1 evaluated checkpoints" in (h.stop_reason or "")
