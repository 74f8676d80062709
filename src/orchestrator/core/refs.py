"""`package.module:attribute` references: the one place they are checked and resolved.

Kinds, entry points, backends, scorers and rewards are named this way in specs and plans, so
a heavy module is imported only when the thing it holds is used.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

REF_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_.]*$")


def is_ref(text: str) -> bool:
    """Shape only (no import): what spec validation can check without loading user code."""
    return bool(REF_RE.match(text))


def load_ref(ref: str) -> Any:
    """The object `ref` names; ValueError saying what is wrong (shape, module, attribute)."""
    if not is_ref(ref):
        raise ValueError(f"{ref!r} is not a 'package.module:attribute' reference")
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"{ref!r}: cannot import {module_name!r} ({e})") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{ref!r}: {module_name!r} has no attribute {attr!r}") from None
    return obj
