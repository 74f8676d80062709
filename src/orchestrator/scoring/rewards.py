"""Rule-based rewards chosen per domain: a response and the row's `reward_model.ground_truth` -> float.

math            1.0 when the last \\boxed{} answer (or the whole response) equals the ground
                truth mathematically (math-verify, see scorers.math_equal), else 0.0
exact           1.0 when the response (stripped) equals the ground truth exactly, else 0.0
pkg.mod:func    a user function func(response: str, ground_truth: str) -> float
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from orchestrator.core.errors import UserError

RewardFn = Callable[[str, str], float]


def math_reward(response: str, ground_truth: str) -> float:
    from orchestrator.scoring.scorers import extract_boxed, math_equal

    boxed = extract_boxed(response)
    return float(math_equal(boxed if boxed is not None else response, str(ground_truth)))


def exact_reward(response: str, ground_truth: str) -> float:
    return float(response.strip() == str(ground_truth).strip())


BUILTIN: dict[str, RewardFn] = {"math": math_reward, "exact": exact_reward}


def check_reward_ref(ref: str) -> str:
    """Validation at spec time (no import): a built-in name or a 'module:function' reference."""
    module, sep, func = ref.partition(":")
    if ref in BUILTIN or (sep and module and func):
        return ref
    raise ValueError(f"reward {ref!r}: use one of {sorted(BUILTIN)} or 'package.module:function'")


def load_reward(ref: str) -> RewardFn:
    if ref in BUILTIN:
        return BUILTIN[ref]
    module, _, func = check_reward_ref(ref).partition(":")
    try:
        fn = getattr(importlib.import_module(module), func, None)
    except ImportError as e:
        raise UserError(f"reward {ref!r}: cannot import {module!r} ({e})") from None
    if not callable(fn):
        raise UserError(f"reward {ref!r}: {module!r} has no function {func!r}")
    return fn
