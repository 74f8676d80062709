"""EarlyStopping on metric sequences. Epochs are 1-based: update(e, ...) after epoch e completes."""

from __future__ import annotations

import json
import math

import pytest

from orchestrator.kinds.train.early_stop import EarlyStopping, MissingMetricError

M = "val/reward_mean"
NAN = math.nan


def run(es: EarlyStopping, values, start: int = 1):
    """Feed values for epochs start, start+1, ...; return the list of decisions."""
    return [es.update(e, {M: v}) for e, v in enumerate(values, start=start)]


def stop_epoch(decisions):
    return next((d.epoch for d in decisions if d.stop), None)


def test_improving_run_never_stops():
    es = EarlyStopping(M, "max", patience=1, min_delta=0.01)
    decisions = run(es, [0.1 * i for i in range(1, 21)])
    assert not any(d.stop for d in decisions)
    assert all(d.improved for d in decisions)
    assert es.best_epoch == 20 and es.bad_epochs == 0 and es.stopped_epoch is None


def test_plateau_stops_after_patience():
    es = EarlyStopping(M, "max", patience=3, min_delta=0.001)
    decisions = run(es, [0.1, 0.3, 0.52, 0.5, 0.51, 0.4, 0.9])
    assert [d.bad_epochs for d in decisions[:6]] == [0, 0, 0, 1, 2, 3]
    assert stop_epoch(decisions) == 6
    assert es.stopped_epoch == 6 and es.best_epoch == 3 and es.best_value == 0.52
    assert es.reason == f"no improvement > 0.001 in {M} for 3 validations (best 0.52 at epoch 3)"
    # Once stopped, later (even better) values change nothing.
    assert decisions[6].stop and not decisions[6].improved and es.best_value == 0.52


def test_improvement_resets_bad_count():
    es = EarlyStopping(M, "max", patience=2)
    decisions = run(es, [1.0, 0.5, 2.0, 1.0, 3.0, 1.0, 1.0])
    assert [d.bad_epochs for d in decisions] == [0, 1, 0, 1, 0, 1, 2]
    assert stop_epoch(decisions) == 7


def test_ties_are_not_improvements():
    es = EarlyStopping(M, "max", patience=2, min_delta=0.0)
    decisions = run(es, [0.5, 0.5, 0.5])
    assert [d.improved for d in decisions] == [True, False, False]
    assert stop_epoch(decisions) == 3 and es.best_epoch == 1


def test_min_delta_boundary():
    # Binary-exact values so the boundary is exact: 0.75 - 0.5 == 0.25 == min_delta.
    es = EarlyStopping(M, "max", patience=5, min_delta=0.25)
    assert es.update(1, {M: 0.5}).improved
    assert not es.update(2, {M: 0.75}).improved  # gain == min_delta: not an improvement
    assert es.best_value == 0.5
    assert es.update(3, {M: 0.75 + 2**-20}).improved  # strictly more than min_delta
    assert es.best_value == 0.75 + 2**-20 and es.bad_epochs == 0


def test_nan_is_a_bad_validation():
    es = EarlyStopping(M, "max", patience=2)
    decisions = run(es, [0.5, NAN, 0.6, NAN, NAN])
    assert [d.improved for d in decisions] == [True, False, True, False, False]
    assert [d.bad_epochs for d in decisions] == [0, 1, 0, 1, 2]
    assert stop_epoch(decisions) == 5 and es.best_value == 0.6


def test_all_nan_stops_without_best():
    es = EarlyStopping(M, "max", patience=2)
    decisions = run(es, [NAN, NAN])
    assert stop_epoch(decisions) == 2 and es.best_value is None
    assert es.reason == f"no improvement > 0 in {M} for 2 validations (no valid value)"
    json.dumps(es.to_dict())  # still serialisable


def test_min_epochs_holds_back_but_bad_count_accumulates():
    es = EarlyStopping(M, "max", patience=2, min_epochs=5)
    decisions = run(es, [1.0, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert [d.bad_epochs for d in decisions] == [0, 1, 2, 3, 4, 4]  # frozen once stopped
    # Patience was exhausted at epoch 3, but no stop before 5 epochs have completed; then at once.
    assert [d.stop for d in decisions] == [False, False, False, False, True, True]
    assert es.stopped_epoch == 5
    assert es.reason == f"no improvement > 0 in {M} for 4 validations (best 1 at epoch 1)"


def test_min_epochs_with_sparse_validation():
    # Validating every 2 epochs: the epoch number, not the validation count, gates min_epochs.
    es = EarlyStopping(M, "max", patience=1, min_epochs=6)
    assert not es.update(2, {M: 1.0}).stop
    assert not es.update(4, {M: 0.5}).stop
    assert es.update(6, {M: 0.5}).stop


def test_mode_min():
    es = EarlyStopping("val/loss", "min", patience=2, min_delta=0.1)
    decisions = [es.update(e, {"val/loss": v}) for e, v in enumerate([3.0, 2.0, 1.95, 1.0, 0.95, 0.91], 1)]
    assert [d.improved for d in decisions] == [True, True, False, True, False, False]
    assert stop_epoch(decisions) == 6 and es.best_value == 1.0 and es.best_epoch == 4


def test_missing_metric_names_metric_and_available_keys():
    es = EarlyStopping(M)
    with pytest.raises(KeyError) as exc:
        es.update(1, {"val/loss": 1.0, "val/acc": 0.5})
    assert isinstance(exc.value, MissingMetricError)
    msg = str(exc.value)
    assert M in msg and "val/loss" in msg and "val/acc" in msg


def test_invalid_config():
    with pytest.raises(ValueError):
        EarlyStopping(M, "maximize")
    with pytest.raises(ValueError):
        EarlyStopping(M, patience=-1)
    with pytest.raises(ValueError):
        EarlyStopping(M, min_delta=-0.1)


@pytest.mark.parametrize("cut", range(0, 11))
def test_resume_gives_identical_decisions(cut):
    values = [0.1, 0.3, NAN, 0.3, 0.35, 0.36, 0.2, 0.36, 0.4, 0.2, 0.1]
    kwargs = dict(metric=M, mode="max", patience=3, min_delta=0.02, min_epochs=4)
    full = run(EarlyStopping(**kwargs), values)

    first = EarlyStopping(**kwargs)
    before = run(first, values[:cut])
    state = json.loads(json.dumps(first.to_dict()))  # through JSON, as a checkpoint would store it
    resumed = EarlyStopping.from_dict(state)
    after = run(resumed, values[cut:], start=cut + 1)

    assert stop_epoch(full) == 8  # the sequence does stop, so cuts land before, at and after it
    assert [repr(d) for d in before + after] == [repr(d) for d in full]  # repr: NaN != NaN
    assert resumed.to_dict() == run_state(kwargs, values)


def run_state(kwargs, values):
    es = EarlyStopping(**kwargs)
    run(es, values)
    return es.to_dict()
