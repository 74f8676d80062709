"""Evaluate as you train (`evaluation.every_save`): the trainer's side, on rank 0.

When the arm saves checkpoint N, N × the suite's tasks go in as ONE array through our own submit
path: an `eval` plan asked for by kind name through core (core/checkpoints.py `evaluator` and
`submit_evaluation`, with `only: [N]`, experiment `<exp>-eval`; this kind never imports the eval
kind): the units and result files `eval-evolution` writes, so it later skips them, and the same
pins, so retention keeps N until it is evaluated. The array goes to the executor that runs the
trainer (core/executor.py `choose_executor`: every job's environment names it). The trainer never
waits for it; a failed submit is printed and N is skipped, never fatal.

At each epoch end the result files (core/paths.py `eval_result`) and the units' status files are
polled; heldout.py takes the decisions. With `early_stopping.metric: eval/...` they stop the arm
and move `best` to the held-out best; otherwise they are only recorded. At the end, outstanding
evaluations are waited for up to `evaluation.wait_s`, and the summary says why the wait ended.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from orchestrator.core import checkpoints, files, paths
from orchestrator.core.executor import choose_executor
from orchestrator.core.runner import read_status
from orchestrator.core.states import COMPLETED, FINAL_STATES
from orchestrator.kinds.train.config import TrainConfig
from orchestrator.kinds.train.early_stop import EarlyStopping
from orchestrator.kinds.train.heldout import HeldOutStopping

POLL_S = 2.0  # the final wait's polling interval


class EvalOnSave:
    def __init__(self, cfg: TrainConfig, experiment: str, arm: str) -> None:
        self.cfg, self.experiment, self.arm = cfg, experiment, arm
        ev, es = cfg.evaluation, cfg.early_stopping
        self.tasks = [t.name for t in checkpoints.evaluator(ev.request(experiment, arm)).evaluated_tasks()]
        self.eval_experiment = paths.eval_experiment(experiment)
        self.monitors = es.enabled and es.metric.startswith("eval/")  # else: recorded, never stops
        metric = es.metric if self.monitors else "eval/mean"
        self.state = HeldOutStopping(
            metric,
            es.mode,
            es.patience,
            es.min_delta,
            es.min_epochs,
            es.significance,
            lag=ev.decision_lag,
            test=es.significance_test,
        )
        self.not_submitted: dict[int, str] = {}  # this attempt's failed submits (a requeue tries again)
        self.wait: str | None = None
        self.decided_in_training = True  # False: the stop decision came in the final wait (too late to act)

    @classmethod
    def create(cls, cfg: TrainConfig, experiment: str, arm: str, main: bool) -> EvalOnSave | None:
        return cls(cfg, experiment, arm) if cfg.evaluation.every_save and main else None

    # ---------------------------------------------------------------- state (trainer_state.pt)

    def load(self, state: dict | None) -> None:
        """A resumed arm: the consumed results as checkpointed; pending ones submitted again
        (a unit with a result, or queued, is skipped by submit)."""
        if state:
            self.state = HeldOutStopping.from_dict(state)
        for n in self.state.pending:
            self.submit(n)

    def saved(self, epoch: int) -> None:
        """Checkpoint `epoch` is about to be written: pending in its own trainer state."""
        self.state.saved(epoch)

    def undecided(self) -> tuple[int, ...]:
        """Checkpoints retention must keep: their decision is not taken yet."""
        return tuple(self.state.pending)

    # ---------------------------------------------------------------- submitting

    def submit(self, epoch: int) -> None:
        name = paths.checkpoint_name(epoch)
        started = time.monotonic()
        try:
            request = self.cfg.evaluation.request(self.experiment, self.arm, only=(name,))
            _, jobs = checkpoints.submit_evaluation(checkpoints.evaluator(request), choose_executor())
            what = ", ".join(f"job {s.job_id} ({len(s.runs)} unit(s))" for s in jobs) or "nothing new"
            print(
                f"{self.arm}/{name}: evaluation submitted to {self.eval_experiment}: {what} "
                f"[{time.monotonic() - started:.1f}s]",
                flush=True,
            )
        except Exception as e:  # never fatal: the checkpoint is then skipped by the decisions
            self.not_submitted[epoch] = f"not submitted: {type(e).__name__}: {e}"
            print(f"{self.arm}/{name}: evaluation NOT submitted ({e}); training goes on", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- results

    def fetch(self, epoch: int) -> list[dict] | str | None:
        """N's results (all tasks), None while one is outstanding, or why one will never come."""
        name, results = paths.checkpoint_name(epoch), []
        for task in self.tasks:
            f = paths.eval_result(self.experiment, self.arm, name, task)
            try:
                results.append(files.read_json(f))
                continue
            except (OSError, ValueError):
                pass
            if epoch in self.not_submitted:
                return self.not_submitted[epoch]
            st = (read_status(self.eval_experiment, paths.eval_run(self.arm, name, task)) or {}).get("state")
            if st in FINAL_STATES and st != COMPLETED:
                return f"evaluation of {task} ended {st}"
            return None
        return results

    def poll(self, now: int) -> str | None:
        """Consume what arrived (with decision_lag, when the held-out score is monitored: wait, at
        most wait_s, for what is due now); the stop reason once a held-out decision stops the arm.
        Results only recorded (early stopping off or on val/...) are never waited for here."""
        self._consume(now)
        start = time.monotonic()
        while self.monitors and self.state.overdue(now) and time.monotonic() - start < self.cfg.evaluation.wait_s:
            time.sleep(POLL_S)
            self._consume(now)
        return self.state.stop_reason if self.monitors else None

    def _consume(self, now: int) -> None:
        for d in self.state.arrive(now, self.fetch):
            if d.improved and self.monitors:
                checkpoints.set_best(self.experiment, self.arm, paths.checkpoint_name(d.epoch))

    def finish(self, now: int) -> None:
        """Wait for outstanding evaluations (at most evaluation.wait_s), consuming them."""
        start, limit = time.monotonic(), self.cfg.evaluation.wait_s
        self.state.lag = None  # training is over: every result is due
        self.decided_in_training = self.state.decided is not None
        self._consume(now)
        while self.state.pending and time.monotonic() - start < limit:
            time.sleep(POLL_S)
            self._consume(now)
        took = time.monotonic() - start
        if not self.state.pending:
            self.wait = f"every evaluation arrived ({took:.0f}s after training ended)"
        else:
            left = ", ".join(paths.checkpoint_name(n) for n in self.state.pending)
            self.wait = f"timed out after {took:.0f}s (evaluation.wait_s = {limit:g}); outstanding: {left}"
        print(f"{self.arm}: held-out evaluations: {self.wait}", flush=True)

    def summary(self, stop_epoch: int, reward: EarlyStopping) -> dict[str, Any]:
        """summary.json's keys: best_heldout, best_reward (validation's tracker), evaluation."""
        s, es = self.state, self.state.stopping
        decision = None
        if s.decided is not None:
            decision = {
                "checkpoint_epoch": s.decided,
                "epoch": s.decided_at,
                "epochs_past_decision": stop_epoch - s.decided,
                "after_training": not self.decided_in_training,
            }
        return {
            "best_heldout": _best(es, s.metric),
            "best_reward": _best(reward, reward.metric),
            "evaluation": {
                "experiment": self.eval_experiment,
                "suite": self.cfg.evaluation.suite,
                "tasks": self.tasks,
                "metric": s.metric,
                "monitored": self.monitors,
                "significance": s.significance,
                "significance_test": s.test,  # the report's checkpoint-choice verdict runs it too
                "checkpoints": {paths.checkpoint_name(n): c for n, c in sorted(s.consumed.items())},
                "outstanding": [paths.checkpoint_name(n) for n in s.pending],
                "decision": decision,
                "wait": self.wait,
            },
        }


def _best(tracker: EarlyStopping, metric: str) -> dict[str, Any] | None:
    """A tracker's best checkpoint as summary.json names it (None before any value)."""
    if tracker.best_epoch is None:
        return None
    return {
        "epoch": tracker.best_epoch,
        "checkpoint": paths.checkpoint_name(tracker.best_epoch),
        "metric": metric,
        "value": tracker.best_value,
    }
