"""Early stopping on a validation metric. Pure Python, serialisable for resumed runs.

Semantics (each choice is tested in tests/train/test_early_stop.py):
- An improvement is a value better than the best so far by MORE than `min_delta`; a tie, or a
  gain of exactly `min_delta`, is not. The first finite (non-NaN) value is always an improvement.
- NaN is never an improvement and counts as a bad validation (a diverged run should not be
  kept alive by its NaNs, nor reset the patience counter).
- `patience` counts validations, not epochs: stop once `bad_epochs >= patience`.
- `epoch` is the 1-based number of the epoch just completed (= epochs completed so far). No stop
  is issued while `epoch < min_epochs`, but bad validations still accumulate during that time:
  a run that plateaued early stops as soon as `min_epochs` is reached, rather than getting a
  fresh `patience` window then.
- Once stopped, further `update` calls change nothing and keep returning the stop decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal


class MissingMetricError(KeyError):
    """The monitored metric is absent from the metrics passed to `update`."""

    def __str__(self) -> str:  # KeyError would repr() the message, quoting it
        return str(self.args[0])


@dataclass(frozen=True)
class Decision:
    stop: bool
    improved: bool
    epoch: int
    value: float
    best_value: float | None
    best_epoch: int | None
    bad_epochs: int
    reason: str | None  # set when stop is True


class EarlyStopping:
    def __init__(
        self,
        metric: str,
        mode: Literal["max", "min"] = "max",
        patience: int = 3,
        min_delta: float = 0.0,
        min_epochs: int = 0,
        counts: str = "validations",  # what patience counts, as the stop reason names it
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if patience < 0 or min_epochs < 0:
            raise ValueError(f"patience and min_epochs must be >= 0, got {patience} and {min_epochs}")
        if not min_delta >= 0:  # also rejects NaN
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.metric, self.mode = metric, mode
        self.patience, self.min_delta, self.min_epochs = patience, float(min_delta), min_epochs
        self.counts = counts
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.stopped_epoch: int | None = None
        self.reason: str | None = None

    def _is_improvement(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        gain = value - self.best_value if self.mode == "max" else self.best_value - value
        return gain > self.min_delta

    def update(self, epoch: int, metrics: dict[str, Any], significant: bool = True) -> Decision:
        """Record the validation after epoch `epoch` (1-based) and decide whether to stop.
        `significant` False: a better value does not count as an improvement (a paired test
        against the best so far did not exclude zero; kinds/train/heldout.py)."""
        if self.metric not in metrics:
            raise MissingMetricError(
                f"early-stopping metric {self.metric!r} not in validation metrics; available: {sorted(metrics)}"
            )
        value = float(metrics[self.metric])
        if self.stopped_epoch is not None:
            return self._decision(True, False, epoch, value)

        improved = self._is_improvement(value) and (significant or self.best_value is None)
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1

        if self.bad_epochs >= self.patience and epoch >= self.min_epochs:
            best = (
                "no valid value"
                if self.best_value is None
                else f"best {self.best_value:.4g} at epoch {self.best_epoch}"
            )
            self.stopped_epoch = epoch
            self.reason = (
                f"no improvement > {self.min_delta:g} in {self.metric} for {self.bad_epochs} {self.counts} ({best})"
            )
        return self._decision(self.stopped_epoch is not None, improved, epoch, value)

    def _decision(self, stop: bool, improved: bool, epoch: int, value: float) -> Decision:
        return Decision(stop, improved, epoch, value, self.best_value, self.best_epoch, self.bad_epochs, self.reason)

    def to_dict(self) -> dict[str, Any]:
        """Config and state, JSON-serialisable (best_value is never NaN)."""
        return {
            "metric": self.metric,
            "mode": self.mode,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "min_epochs": self.min_epochs,
            "counts": self.counts,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_epoch": self.stopped_epoch,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EarlyStopping:
        es = cls(d["metric"], d["mode"], d["patience"], d["min_delta"], d["min_epochs"], d.get("counts", "validations"))
        es.best_value, es.best_epoch = d["best_value"], d["best_epoch"]
        es.bad_epochs, es.stopped_epoch, es.reason = d["bad_epochs"], d["stopped_epoch"], d["reason"]
        return es

    def __repr__(self) -> str:
        return f"EarlyStopping({self.to_dict()})"


__all__ = ["Decision", "EarlyStopping", "MissingMetricError"]
