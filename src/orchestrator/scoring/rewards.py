"""Training rewards are scorers used as rewards: a domain's `reward` names a scorer of
`registry.SCORERS` (or "package.module:function"), and its reward for a response is that
scorer's value against the row's `reward_model.ground_truth` (`Scorer.value`).

math            1.0 when the last \\boxed{} answer equals the ground truth's (itself unboxed)
                mathematically (math-verify); a response cut off inside its box scores 0
exact           1.0 when the final answer equals the ground truth after normalisation
pkg.mod:func    a user function func(response, ground_truth) -> float (or a dict of metrics)
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.core.errors import UserError
from orchestrator.scoring.registry import check_scorer_ref, get_scorer

RewardFn = Callable[[str, str], float]


def check_reward_ref(ref: str) -> str:
    """Validation at spec time (no import): a scorer name or a 'module:function' reference."""
    return check_scorer_ref(ref, what="reward")


def load_reward(ref: str) -> RewardFn:
    """The reward function of a scorer: (response, ground_truth) -> its value."""
    scorer = get_scorer(ref)
    if scorer.corpus or scorer.needs_record:
        raise UserError(f"reward {ref!r}: scorer {scorer.name!r} does not score one response against a ground truth")
    if not scorer.higher_is_better:
        raise UserError(f"reward {ref!r}: scorer {scorer.name!r} is lower-is-better; a reward must grow with quality")

    def reward(response: str, ground_truth: str) -> float:
        return scorer.value(response, ground_truth)

    return reward
