"""The backend contract: generate a batch of requests → texts + token logprobs.

Every backend (transformers, vLLM) implements `generate`; inference, evaluation, the judge's
local model and training rollouts all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Request:
    id: str  # unique per example within a run
    prompt: str  # fully rendered prompt text (chat templates already applied)
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 → greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Generation:
    id: str
    text: str  # completion only, stop strings removed
    token_logprobs: list[float] = field(default_factory=list)  # logprob of each generated token
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "length"  # "stop" | "length" | "error" (an API call that never succeeded)
    error: str | None = None  # why there is no text (API backends)
    attempts: int = 1  # requests it took (API backends: retries included)


def as_user_turn(tokenizer, prompt: str, use_chat_template: bool) -> str:
    """The prompt as one user turn of the model's chat template (unchanged when it has none)."""
    if not use_chat_template or not getattr(tokenizer, "chat_template", None):
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


class Backend(Protocol):
    def generate(self, requests: list[Request]) -> list[Generation]:
        """One Generation per Request, in the same order."""
        ...

    def close(self) -> None: ...
