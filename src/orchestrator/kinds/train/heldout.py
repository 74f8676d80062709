"""Early stopping on held-out scores that arrive late: the pure decision logic (no I/O).

Each saved checkpoint N is evaluated on the held-out suite by jobs of its own (eval_on_save.py);
its results arrive some epochs later while the trainer keeps training. `HeldOutStopping` takes
the decision for checkpoint N when N's results are in, and in checkpoint order: N+1's decision
waits for N's (patience counts evaluations, as early_stop.py counts validations). Semantics:

- `saved(N)` before checkpoint N is written (so the checkpoint's trainer state names it pending).
- `arrive(now, fetch)` at each epoch end: `fetch(N)` gives N's results (a list of eval result
  dicts, one per task), None (not yet: stop here, later checkpoints wait), or a string (the
  evaluation failed or was never submitted: N is skipped, counted neither way).
- The value: `eval/mean` = mean over tasks of each task's primary metric; `eval/<domain>/<metric>`
  = mean over the domain's tasks of that metric. With `significance`, a better value counts as an
  improvement only when the paired test `test` (scoring/significance.py: the bootstrap interval
  excludes zero, or McNemar's p < 0.05) of the per-example scores against the best checkpoint so
  far is significant in the right direction; too few pairs are never significant. McNemar on a
  score other than 0/1 is a UserError naming early_stopping.significance_test.
- `patience` counts evaluated checkpoints (every saved one: periodic, reward-best, last), not
  epochs; a checkpoint whose evaluation failed counts neither way.
- The stop decision is EarlyStopping's (min_epochs applies to the checkpoint's epoch); it is
  taken at epoch `now` >= N: `now - N` epochs ran past the decision point.
- `lag` (evaluation.decision_lag) k: N's decision is taken exactly at epoch N + k, never earlier
  (the trainer waits there for late results, eval_on_save.py), so where the arm stops is a pure
  function of the results, not of when they arrived; None: as soon as they are in.
- `to_dict` / `from_dict`: what a requeued arm restores, so it takes the same decisions (the
  results it consumed are part of its checkpointed state, not read again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.kinds.train.early_stop import Decision, EarlyStopping

Fetch = Callable[[int], "list[dict] | str | None"]


def metric_value(metric: str, results: list[dict]) -> tuple[float, dict[str, dict[str, float]]]:
    """(value, per task: example id → score) of `metric` over one checkpoint's task results."""
    if metric == "eval/mean":
        chosen = [(r, r["primary_metric"]) for r in results]
    else:
        _, domain, name = metric.split("/", 2)
        chosen = [(r, name) for r in results if r.get("domain") == domain]
        if not chosen:
            have = sorted({str(r.get("domain")) for r in results})
            raise ValueError(f"early_stopping.metric {metric!r}: no task of domain {domain!r} (domains: {have})")
    values = [float(r["metrics"][m]) for r, m in chosen]
    examples = {r["task"]: {str(p["id"]): float(p["score"]) for p in r.get("per_example") or []} for r, _ in chosen}
    return sum(values) / len(values), examples


class HeldOutStopping:
    def __init__(
        self,
        metric: str = "eval/mean",
        mode: str = "max",
        patience: int = 3,
        min_delta: float = 0.0,
        min_epochs: int = 0,
        significance: bool = False,
        lag: int | None = None,
        test: str = "bootstrap",
    ) -> None:
        self.stopping = EarlyStopping(metric, mode, patience, min_delta, min_epochs, "evaluated checkpoints")  # type: ignore[arg-type]
        self.significance, self.lag, self.test = significance, lag, test
        self.pending: list[int] = []  # saved checkpoints (epochs) whose results are not consumed yet
        self.consumed: dict[int, dict[str, Any]] = {}  # epoch → what its results said, and when
        self.best_examples: dict[str, dict[str, float]] = {}  # the best checkpoint's per-example scores
        self.decided: int | None = None  # the checkpoint whose decision stopped training
        self.decided_at: int | None = None  # the epoch at which that decision was taken

    @property
    def metric(self) -> str:
        return self.stopping.metric

    def saved(self, epoch: int) -> None:
        if epoch not in self.pending and epoch not in self.consumed:
            self.pending = sorted([*self.pending, epoch])

    def due(self, now: int) -> int | None:
        """The first pending checkpoint whose decision may be taken at epoch `now`."""
        if self.pending and (self.lag is None or self.pending[0] + self.lag <= now):
            return self.pending[0]
        return None

    def overdue(self, now: int) -> bool:
        """With a lag: a decision that must be taken now (the trainer waits for its results)."""
        return self.lag is not None and self.due(now) is not None

    def arrive(self, now: int, fetch: Fetch) -> list[Decision]:
        """Consume, in checkpoint order, every due checkpoint whose results are in."""
        decisions = []
        while (n := self.due(now)) is not None:
            got = fetch(n)
            if got is None:
                break
            self.pending.pop(0)
            if isinstance(got, str):
                self.consumed[n] = {"at": now, "missing": got}
                continue
            decisions.append(self._decide(n, now, got))
        return decisions

    def _decide(self, n: int, now: int, results: list[dict]) -> Decision:
        value, examples = metric_value(self.metric, results)
        significant, interval, p = True, None, None
        if self.significance and self.best_examples and self.stopping.best_value is not None:
            from orchestrator.scoring.significance import Interval, NotBinaryError, paired_test  # numpy

            pairs = [(self.best_examples[t], examples[t]) for t in sorted(examples) if t in self.best_examples]
            try:
                res = paired_test(pairs, self.test)  # type: ignore[arg-type]
            except NotBinaryError as e:
                raise UserError(
                    f"early_stopping.significance_test mcnemar, checkpoint epoch {n} on {self.metric}: {e}; "
                    "use significance_test: bootstrap for scores other than 0/1"
                ) from None
            if isinstance(res, Interval):
                interval = [res.low, res.high]
            elif res is not None:
                p = res.p
            # too few pairs (or none) is never significant: not an improvement
            significant = res is not None and res.direction == (1 if self.stopping.mode == "max" else -1)
        d = self.stopping.update(n, {self.metric: value}, significant=significant)
        if d.improved:
            self.best_examples = examples
        if d.stop and self.decided is None:
            self.decided, self.decided_at = n, now
        self.consumed[n] = {
            "at": now,
            "value": value,
            "improved": d.improved,
            "interval_vs_best": interval,  # bootstrap
            "p_vs_best": p,  # mcnemar
            "tasks": {r["task"]: float(r["metrics"][r["primary_metric"]]) for r in results},
        }
        return d

    @property
    def stop_reason(self) -> str | None:
        if self.decided is None:
            return None
        return f"{self.stopping.reason} (decided for checkpoint epoch {self.decided} at epoch {self.decided_at})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stopping": self.stopping.to_dict(),
            "significance": self.significance,
            "test": self.test,
            "lag": self.lag,
            "pending": list(self.pending),
            "consumed": {str(k): v for k, v in self.consumed.items()},
            "best_examples": self.best_examples,
            "decided": self.decided,
            "decided_at": self.decided_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeldOutStopping:
        h = cls(significance=d["significance"], lag=d.get("lag"), test=d.get("test", "bootstrap"))
        h.stopping = EarlyStopping.from_dict(d["stopping"])
        h.pending = list(d["pending"])
        h.consumed = {int(k): v for k, v in d["consumed"].items()}
        h.best_examples, h.decided, h.decided_at = d["best_examples"], d["decided"], d["decided_at"]
        return h


__all__ = ["HeldOutStopping", "metric_value"]
