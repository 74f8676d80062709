"""How the report writes numbers (the template's filters): fixed formats, "n/a" for missing."""

from __future__ import annotations

import math
from typing import Any


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def num(x: Any, digits: int = 3) -> str:
    if _missing(x):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def signed(x: Any, digits: int = 3) -> str:
    return "n/a" if _missing(x) else f"{x:+.{digits}f}"


def rate(x: Any) -> str:
    return "n/a" if _missing(x) else f"{x * 100:.1f}%"


def pct(x: Any) -> str:
    return "n/a" if _missing(x) else f"{x * 100:+.1f}%"


def cell(x: Any) -> str:
    """Markdown table cell text: no pipes or newlines."""
    return str(x).replace("|", "\\|").replace("\n", " ")


FILTERS = {"num": num, "signed": signed, "pct": pct, "rate": rate, "cell": cell}
