"""What a judge run is told: the config the plan hands to every unit, and the defaults behind it.

The API key is never part of it: the config names the environment variable that holds the key
(`api_key_env`), and the job reads that variable itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

DEFAULT_TAGS = ("MATH", "MED", "READ")
BASE_URL_ENV = "ORCH_JUDGE_BASE_URL"
MODEL_ENV = "ORCH_JUDGE_MODEL"
RULES = ("exact", "math")
# Task or domain names of the task configs → tag domains; a spec's `domains` adds to / overrides it.
DEFAULT_DOMAINS = {
    "math": "MATH",
    "gsm8k": "MATH",
    "math500": "MATH",
    "aime": "MATH",
    "medqa": "MED",
    "medmcqa": "MED",
    "pubmedqa": "MED",
    "mmlu_medical": "MED",
    "coqa": "READ",
    "boolq": "READ",
    "squad": "READ",
    "qa": "READ",
    "race": "READ",
    "drop": "READ",
}


@dataclass(frozen=True)
class JudgeConfig:
    """Everything a judge run needs except the key (which stays in the environment)."""

    type: str = "llm"  # "llm" | "exact" | "math"
    base_url: str | None = None  # default: $ORCH_JUDGE_BASE_URL
    model: str | None = None  # default: $ORCH_JUDGE_MODEL
    api_key_env: str = "OPENAI_API_KEY"
    key_required: bool = True  # False for a server started in the allocation (no auth)
    temperature: float = 0.0
    max_tokens: int = 256
    timeout_s: float = 60.0
    max_attempts: int = 8  # HTTP attempts per item (429/5xx/connection errors)
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    parse_attempts: int = 2  # asks per item while the reply holds no verdict
    prompt: str | None = None  # {question} {gold} {prediction}; default client.DEFAULT_PROMPT
    num_workers: int = 8
    flush_every: int = 16  # records per append+fsync
    flush_interval_s: float = 2.0  # ... or this long since the last flush
    domains: dict[str, str] = field(default_factory=dict)  # task → DOMAIN (overrides the record's)
    tags: tuple[str, ...] = DEFAULT_TAGS
    tagged_layout: bool = False  # also write tagged.json (always when the input is in that layout)

    @property
    def judge_name(self) -> str:
        return f"rule:{self.type}" if self.type in RULES else (self.model or "")

    def public(self) -> dict:
        """The config as recorded in result files (names the key's variable, never its value)."""
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d
