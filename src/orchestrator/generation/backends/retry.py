"""Back-off for HTTP model endpoints (the judge's client and the OpenAI-compatible backend):
exponential, capped, jittered, never shorter than the server's Retry-After (itself capped)."""

from __future__ import annotations

import random

RETRY, FATAL, GIVE_UP = "retry", "fatal", "give_up"


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


def classify(e: Exception) -> tuple[str, str, float | None]:
    """What an `openai` client error (APIStatusError or APIConnectionError) means for the call:
    RETRY (429, 5xx, connection trouble; with the server's Retry-After), FATAL (401/403/404: wrong
    endpoint, model or key, so no call will succeed: stop the run), GIVE_UP (any other 4xx: this
    request never will). Returns (kind, why, retry-after seconds)."""
    status = getattr(e, "status_code", None)
    if status is None:  # no response at all
        return RETRY, f"{type(e).__name__}: {short(e)}", None
    why = f"HTTP {status}: {short(e)}"
    if status in (401, 403, 404):
        return FATAL, why, None
    if status < 500 and status != 429:
        return GIVE_UP, why, None
    return RETRY, why, retry_after(e)
