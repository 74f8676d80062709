"""Pure scoring metrics for inference/evaluation jobs (numpy only).

- Text answers: CoQA / SQuAD v1.1 normalisation, exact match, token F1, and the official
  multi-gold aggregation of each script.
- Calibration: AUROC (rank-based, equal to sklearn's `roc_auc_score` incl. ties), expected
  calibration error, and sequence confidence from token log-probabilities.
- `METRICS`: each metric's direction and how per-item values aggregate, so reports and
  model selection never have to guess whether bigger is better.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------- text answers

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop articles (a/an/the), collapse whitespace.

    Same steps in the same order as `normalize_answer` in the official CoQA v1.0 evaluation
    script and SQuAD v1.1's `evaluate-v1.1.py`: white_space_fix(remove_articles(remove_punc(lower(s)))).
    Punctuation is removed *before* articles, so "the-end" -> "theend" keeps no article.
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _tokens(s: str) -> list[str]:
    # CoQA's get_tokens: `if not s: return []` then split the normalised text.
    return normalize_answer(s).split() if s else []


def exact_match(pred: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(pred) == normalize_answer(gold))


def f1(pred: str, gold: str) -> float:
    """Token-level F1 over normalised tokens, counting overlap with multiplicity (Counter &).

    Empty handling follows CoQA's `compute_f1`: if either side has no tokens, the score is 1.0
    when both are empty and 0.0 otherwise. SQuAD v1.1 differs there: `squad_f1`.
    """
    pred_toks, gold_toks = _tokens(pred), _tokens(gold)
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    num_same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_f1(pred: str, gold: str) -> float:
    """Token F1 as SQuAD v1.1's `evaluate-v1.1.py` `f1_score`: no common token → 0, so a gold or a
    prediction that normalises to nothing scores 0 even when both do (gold "the", prediction "a":
    F1 0, while its exact match is 1 — "" == "")."""
    pred_toks, gold_toks = normalize_answer(pred).split(), normalize_answer(gold).split()
    num_same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def coqa_turn_scores(pred: str, golds: Sequence[str]) -> dict[str, float]:
    """EM and F1 of one CoQA turn against its n gold answers, as the official script scores it.

    Official CoQA v1.0 `CoQAEvaluator._compute_turn_score(a_gold_list, a_pred)`:
      - n > 1: for each i, take the max score over the golds *excluding* gold i, then average
        those n maxima (leave-one-out; this keeps human and model scores comparable, since a
        human answer is always scored against the other n-1 references);
      - n == 1: the score against that single gold.
    The sum is divided by max(1, n), so n == 0 would give 0 there; we reject it instead.
    """
    golds = list(golds)
    if not golds:
        raise ValueError("coqa_turn_scores needs at least one gold answer")
    if len(golds) == 1:
        return {"em": exact_match(pred, golds[0]), "f1": f1(pred, golds[0])}
    em_sum = f1_sum = 0.0
    for i in range(len(golds)):
        others = golds[:i] + golds[i + 1 :]
        em_sum += max(exact_match(pred, g) for g in others)
        f1_sum += max(f1(pred, g) for g in others)
    return {"em": em_sum / len(golds), "f1": f1_sum / len(golds)}


# CoQA v1.0's story sources: the official evaluator's domain name for each, in its order; reddit and
# science are held out of training (out-of-domain), the five others in-domain.
COQA_DOMAINS = {
    "mctest": "children_stories",
    "gutenberg": "literature",
    "race": "mid-high_school",
    "cnn": "news",
    "wikipedia": "wikipedia",
    "reddit": "reddit",
    "science": "science",
}
COQA_OUT_DOMAIN = frozenset({"reddit", "science"})


def coqa_split(source: str | None) -> str | None:
    """ "in_domain" / "out_domain" for a CoQA story source; None when the story names none.
    ValueError for a source the official evaluator does not know."""
    if source is None:
        return None
    if source not in COQA_DOMAINS:
        raise ValueError(f"CoQA story source {source!r} is not one of {', '.join(COQA_DOMAINS)}")
    return "out_domain" if source in COQA_OUT_DOMAIN else "in_domain"


def coqa_domain_scores(turns: Sequence[tuple[str | None, float, float]]) -> dict[str, dict]:
    """The official CoQA v1.0 breakdown (`get_domain_scores`) from every gold turn's (source, em, f1),
    an unpredicted turn given as 0, 0: `in_domain`, `out_domain`, `overall` ({em, f1, turns}) and
    `domains` (the seven domain names, each {em, f1, turns}; 0 for a domain without turns, as the
    official output). Fractions, not ×100, and not rounded. A turn whose story names no source
    counts in `overall` only."""
    totals: dict[str, list[float]] = {k: [0.0, 0.0, 0] for k in (*COQA_DOMAINS, "in_domain", "out_domain", "overall")}
    for source, em, f1_ in turns:
        keys = ["overall"] if source is None else ["overall", source, coqa_split(source)]
        for k in keys:
            totals[k][0] += em
            totals[k][1] += f1_
            totals[k][2] += 1

    def figures(k: str) -> dict:
        em, f1_, n = totals[k]
        return {"em": em / max(1, n), "f1": f1_ / max(1, n), "turns": int(n)}

    return {
        "in_domain": figures("in_domain"),
        "out_domain": figures("out_domain"),
        "overall": figures("overall"),
        "domains": {name: figures(source) for source, name in COQA_DOMAINS.items()},
    }


def squad_scores(pred: str, golds: str | Sequence[str]) -> dict[str, float]:
    """EM and F1 (`squad_f1`) against several golds: the max over golds, as SQuAD v1.1's
    `metric_max_over_ground_truths` does."""
    golds = [golds] if isinstance(golds, str) else list(golds)
    if not golds:
        raise ValueError("squad_scores needs at least one gold answer")
    return {
        "em": max(exact_match(pred, g) for g in golds),
        "f1": max(squad_f1(pred, g) for g in golds),
    }


# --------------------------------------------------------------------------- calibration


def _as_arrays(confidences: Sequence[float], correct: Sequence[bool | int]) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    corr = np.asarray(correct).ravel()
    if conf.shape != corr.shape:
        raise ValueError(f"confidences ({conf.size}) and correct ({corr.size}) differ in length")
    if conf.size == 0:
        raise ValueError("no examples to score")
    if np.isnan(conf).any():
        raise ValueError("confidences contain NaN")
    if not np.isin(corr, (0, 1)).all():
        raise ValueError("correct must be binary (bool or 0/1)")
    return conf, corr.astype(bool)


def auroc(confidences: Sequence[float], correct: Sequence[bool | int]) -> float:
    """Area under the ROC curve of `confidences` as a detector of `correct` answers.

    Computed as the Mann-Whitney U statistic with average ranks for ties, i.e. the probability
    that a random correct example has higher confidence than a random incorrect one, ties
    counting 1/2 -- identical to sklearn.metrics.roc_auc_score. Done in exact integer
    arithmetic (2 x average rank is an integer) so the only rounding is the final division.

    Returns NaN when only one class is present: AUROC is undefined there (sklearn raises),
    and NaN lets a per-run report show "n/a" instead of crashing a whole evaluation.
    """
    conf, corr = _as_arrays(confidences, correct)
    n_pos = int(corr.sum())
    n_neg = corr.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(conf, return_inverse=True, return_counts=True)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))  # 0-based first rank of each value
    twice_rank = 2 * starts + counts + 1  # 2 x (average 1-based rank) for each distinct value
    twice_u = int(twice_rank[inverse][corr].sum()) - n_pos * (n_pos + 1)
    return twice_u / (2 * n_pos * n_neg)


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool | int], n_bins: int = 10) -> float:
    """ECE = sum over bins b of (|b| / N) * |accuracy(b) - mean confidence(b)|.

    Equal-width bins on [0, 1]: bin 0 is [0, 1/n], bin k>0 is (k/n, (k+1)/n] (right-inclusive,
    so 0.3 falls in (0.2, 0.3] with 10 bins). Edges are k/n computed directly rather than by
    accumulation so decimal edges like 0.3 are the nearest double and do not drift.
    Empty bins contribute nothing.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    conf, corr = _as_arrays(confidences, correct)
    if (conf < 0).any() or (conf > 1).any():
        raise ValueError("confidences must lie in [0, 1]")
    inner_edges = np.arange(1, n_bins) / n_bins
    bins = np.digitize(conf, inner_edges, right=True)  # edges[i-1] < x <= edges[i]
    ece = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        ece += in_bin.mean() * abs(corr[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def confidence_from_logprobs(logprobs: Sequence[float]) -> dict[str, float | None]:
    """Sequence confidence from its token log-probabilities.

    "mean": exp(mean logprob), the per-token geometric-mean probability (length-normalised);
    "total": exp(sum logprob), the probability of the whole sequence.
    An empty sequence has no defined confidence, so both are None.
    """
    if len(logprobs) == 0:
        return {"mean": None, "total": None}
    total = math.fsum(logprobs)
    return {"mean": math.exp(total / len(logprobs)), "total": math.exp(total)}


# --------------------------------------------------------------------------- registry


def accuracy(pred: object, gold: object) -> float:
    """1.0 when prediction equals gold (already-extracted labels), else 0.0."""
    return float(pred == gold)


def mean(values: Sequence[float]) -> float:
    """Mean of per-item values; NaN for no items (nothing to average)."""
    return float(np.mean(values)) if len(values) else float("nan")


@dataclass(frozen=True)
class Metric:
    """A metric with its direction.

    `aggregate` combines per-item values of `fn(pred, gold)` into one number (e.g. `mean`).
    It is None for corpus-level metrics (AUROC, ECE) whose `fn(confidences, correct)` already
    takes the whole set.
    """

    name: str
    fn: Callable[..., float]
    higher_is_better: bool
    aggregate: Callable[[Sequence[float]], float] | None = mean

    def is_better(self, a: float, b: float) -> bool:
        """True when value `a` is strictly better than `b` for this metric."""
        return a > b if self.higher_is_better else a < b


METRICS: dict[str, Metric] = {
    "em": Metric("em", exact_match, higher_is_better=True),
    "f1": Metric("f1", f1, higher_is_better=True),
    "accuracy": Metric("accuracy", accuracy, higher_is_better=True),
    "auroc": Metric("auroc", auroc, higher_is_better=True, aggregate=None),
    "ece": Metric("ece", expected_calibration_error, higher_is_better=False, aggregate=None),
}
