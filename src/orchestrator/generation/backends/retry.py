"""Back-off for HTTP model endpoints (the judge's client and the OpenAI-compatible backend):
exponential, capped, jittered, never shorter than the server's Retry-After (itself capped)."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base_s: float, max_s: float, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before retry number `attempt` (0-based): base·2^attempt capped at max_s, with
    jitter in [d/2, d] so workers do not retry in lockstep; at least Retry-After (capped)."""
    d = min(max_s, base_s * (2**attempt))
    d = d / 2 + rng.uniform(0, d / 2)
    if retry_after is not None:
        d = max(d, min(retry_after, max_s))
    return d


def retry_after(exc: Exception) -> float | None:
    """The Retry-After (or retry-after-ms) an HTTP error's response carries, in seconds."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except (TypeError, ValueError):  # an HTTP date: fall back to our own schedule
        return None
    return None


def short(e: Exception) -> str:
    return str(e).replace("\n", " ")[:300]
