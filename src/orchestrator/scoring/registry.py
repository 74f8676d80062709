"""The one scorer registry: a name means the same scoring in inference tasks, evaluation suites,
training rewards, rule judges and `orchestrate score`.

A `Scorer` is a function with what callers need to know about it:

    fn(prediction, gold) -> {metric: value, ...} | number
        may also declare keyword parameters `record` (the whole dataset row, for scorers judged
        on it, such as code run against the row's tests) and `timeout_s` (per test program)
    metric            the key of the result that is *the* score: a reward, an evaluation score,
                      what `Scorer.value` returns ("em", "accuracy", "f1", "score")
    higher_is_better  the direction of every value it returns
    needs_record      judged on the record (code tests), not on a gold answer
    corpus            scores a whole set at once (`fn(prediction_rows, gold_rows)`), so only
                      `orchestrate score` can use it
    binary            its score is always 0 or 1 (right or wrong): McNemar's test applies
                      (scoring/significance.py); unknown (False) for user code

`higher_is_better(scorer_or_metric_name)` is the one place a direction is read.
`get_scorer(name_or_ref)` is the one lookup: a registered name, or "package.module:function"
(resolved by `core.refs`) for user code. A user function may carry `higher_is_better` and
`metric` attributes; otherwise it counts as higher-is-better and its value is its "score" key
(or its only key, or the number it returns). `check_scorer_ref` validates a name at spec time
without importing anything.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.core.refs import is_ref, load_ref
from orchestrator.scoring import code_scorers, scorers, wattbot
from orchestrator.scoring.metrics import METRICS
from orchestrator.scoring.weighted import weighted_score

_EXTRAS = ("record", "timeout_s")


@dataclass(frozen=True)
class Scorer:
    name: str
    fn: Callable[..., Any]
    higher_is_better: bool = True
    metric: str = "score"
    description: str = ""
    needs_record: bool = False
    corpus: bool = False
    binary: bool = False

    def scores(
        self, prediction: Any, gold: Any = None, *, record: Mapping | None = None, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Every metric value for one prediction (a bare number comes back as {metric: number})."""
        if self.corpus:
            raise UserError(f"scorer {self.name!r} scores a whole set at once: use it with `orchestrate score`")
        extras = {"record": record, "timeout_s": timeout_s}
        kwargs = {k: extras[k] for k in _accepted(self.fn)}
        if self.needs_record and record is None:
            raise UserError(f"scorer {self.name!r} needs the example's record")
        out = self.fn(prediction, gold, **kwargs)
        if isinstance(out, Mapping):
            return dict(out)
        if isinstance(out, (bool, int, float)):
            return {self.metric: float(out)}
        raise UserError(f"scorer {self.name!r} returned {type(out).__name__}: return a number or a dict of metrics")

    def value(
        self, prediction: Any, gold: Any = None, *, record: Mapping | None = None, timeout_s: float = 10.0
    ) -> float:
        """The score of one prediction: the `metric` value (a user dict's only value if it has no
        `metric` key). A reward is this value."""
        out = self.scores(prediction, gold, record=record, timeout_s=timeout_s)
        value = out.get(self.metric, next(iter(out.values())) if len(out) == 1 else None)
        if value is None:
            raise UserError(f"scorer {self.name!r}: return a number or a dict with {self.metric!r} (got {sorted(out)})")
        return float(value)


def _accepted(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Which of `record`/`timeout_s` the function takes as keywords."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: plain (prediction, gold)
        return ()
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return _EXTRAS
    return tuple(k for k in _EXTRAS if k in params and params[k].kind is not inspect.Parameter.POSITIONAL_ONLY)


def _builtin(name: str, fn: Callable[..., Any], metric: str, **kw: Any) -> Scorer:
    doc = (fn.__doc__ or "").strip().split("\n\n")[0]
    return Scorer(name, fn, metric=metric, description=" ".join(doc.split()), **kw)


SCORERS: dict[str, Scorer] = {
    s.name: s
    for s in (
        _builtin("exact", scorers.score_exact, "em", binary=True),
        _builtin("math", scorers.score_math, "accuracy", binary=True),
        _builtin("mcq", scorers.score_mcq, "accuracy", binary=True),
        _builtin("boolq", scorers.score_boolq, "accuracy", binary=True),
        _builtin("coqa", scorers.score_coqa, "f1"),
        _builtin("squad", scorers.score_squad, "f1"),
        _builtin("json", scorers.score_json, "accuracy", binary=True),
        _builtin("grid", scorers.score_grid, "accuracy", binary=True),
        _builtin("table", scorers.score_table, "accuracy", binary=True),
        _builtin("humaneval", code_scorers.score_humaneval, "accuracy", needs_record=True, binary=True),
        _builtin("mbpp", code_scorers.score_mbpp, "accuracy", needs_record=True, binary=True),
        _builtin("livecodebench", code_scorers.score_livecodebench, "accuracy", needs_record=True, binary=True),
        _builtin("weighted", weighted_score, "score", corpus=True),
        _builtin("wattbot", wattbot.score_reply, "overall"),
    )
}

# Scorers judged by the record's tests: they take no gold answer and run in the sandbox.
CODE_SCORERS = frozenset(name for name, s in SCORERS.items() if s.needs_record)

_loaded: dict[str, Scorer] = {}


def register_scorer(
    name: str,
    fn: Callable[..., Any],
    *,
    metric: str = "score",
    higher_is_better: bool = True,
    description: str = "",
    replace: bool = False,
) -> Scorer:
    """Add a scorer under `name`; refuses to shadow an existing one unless `replace=True`."""
    if not callable(fn):
        raise TypeError(f"scorer {name!r} is not callable")
    if name in SCORERS and not replace:
        raise ValueError(f"scorer {name!r} already registered (pass replace=True to override)")
    params = _accepted(fn)
    SCORERS[name] = Scorer(name, fn, higher_is_better, metric, description, needs_record="record" in params)
    return SCORERS[name]


def check_scorer_ref(ref: str, what: str = "scorer") -> str:
    """Spec-time validation, no import: a registered name or a 'package.module:function' reference."""
    if ref in SCORERS or is_ref(ref):
        return ref
    raise ValueError(f"unknown {what} {ref!r}: use one of {', '.join(sorted(SCORERS))} or 'package.module:function'")


def get_scorer(ref: str) -> Scorer:
    """The scorer a registered name or a "package.module:function" reference names."""
    if ref in SCORERS:
        return SCORERS[ref]
    if ref in _loaded:
        return _loaded[ref]
    if not is_ref(ref):
        raise UserError(f"unknown scorer {ref!r}: use one of {', '.join(sorted(SCORERS))} or 'package.module:function'")
    try:
        fn = load_ref(ref)
    except ValueError as e:
        detail = str(e).removeprefix(f"{ref!r}: ")
        raise UserError(f"scorer {ref!r}: no function loaded ({detail})") from None
    if not callable(fn):
        raise UserError(f"scorer {ref!r}: no function there ({type(fn).__name__})")
    doc = (fn.__doc__ or "").strip().split("\n\n")[0]
    scorer = Scorer(
        ref,
        fn,
        higher_is_better=bool(getattr(fn, "higher_is_better", True)),
        metric=str(getattr(fn, "metric", "score")),
        description=" ".join(doc.split()),
        needs_record="record" in _accepted(fn),
    )
    _loaded[ref] = scorer
    return scorer


def higher_is_better(name: str, declared: Any = None) -> bool:
    """The one answer to "is bigger better?" for a scorer or a metric name ("f1",
    "eval/math/accuracy", "val/reward_mean").

    A scorer name: its direction. A metric (a "val/" or other path prefix is dropped): the metric
    registry (`metrics.METRICS`: ece is lower-is-better), else a metric a scorer reports under its
    own name or a derived one ("f1_in_domain", "em_answered" → "f1", "em"), else a registered
    scorer's headline metric; else what the file `declared` (a bool), else higher (rewards, which
    scoring/rewards.py orients, pass@k, means)."""
    if name in SCORERS:
        return SCORERS[name].higher_is_better
    metric = name.rsplit("/", 1)[-1]
    for key in (metric, metric.split("_", 1)[0]):
        if key in METRICS:
            return METRICS[key].higher_is_better
    by_scorer = next((s.higher_is_better for s in SCORERS.values() if s.metric == metric), None)
    if by_scorer is not None:
        return by_scorer
    return declared if isinstance(declared, bool) else True


def score(
    ref: str, prediction: Any, gold: Any = None, *, record: Mapping | None = None, timeout_s: float = 10.0
) -> float:
    """`get_scorer(ref).value(...)`: one prediction's score."""
    return get_scorer(ref).value(prediction, gold, record=record, timeout_s=timeout_s)
