"""OpenAI-compatible chat endpoints as a backend (`backend: openai`): OpenRouter, OpenAI, a vLLM
server. The official client with its own retries off (`max_retries=0`): back-off is ours
(`retry.py`: exponential, jittered, honouring Retry-After) on 429, 5xx, connection errors and
broken bodies; `api.concurrency` requests in flight. 401/403/404 stop the run (no request can
succeed); another 4xx, or attempts used up, leaves that request with `finish_reason: error`
and the reason, never a crashed run. Token counts come from the reply's `usage`.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass

from orchestrator.core.errors import UserError
from orchestrator.generation.backends import retry
from orchestrator.generation.backends.base import Generation, Request
from orchestrator.generation.models import ModelConfig


@dataclass
class CallStats:
    calls: int = 0
    retries: int = 0
    waited_s: float = 0.0
    errors: int = 0


class OpenAIBackend:
    def __init__(self, model: ModelConfig, **_options) -> None:
        if model.api is None:
            raise UserError(f"model {model.name}: backend openai needs `api:` (base_url, api_key_env)")
        self.model, self.api = model, model.api
        key = os.environ.get(self.api.api_key_env, "")
        if not key and self.api.key_required:
            raise UserError(
                f"model {model.name}: ${self.api.api_key_env} is not set in the job's environment: export it in "
                "the shell that submits (SLURM passes it on); keys never go in configs"
            )
        self.key = key or "EMPTY"
        self.stats = CallStats()
        self.rng = random.Random()

    def generate(self, requests: list[Request]) -> list[Generation]:
        return asyncio.run(self._all(requests))

    async def _all(self, requests: list[Request]) -> list[Generation]:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=self.api.base_url, api_key=self.key, max_retries=0, timeout=self.api.timeout_s)
        gate = asyncio.Semaphore(self.api.concurrency)

        async def one(req: Request) -> Generation:
            async with gate:
                return await self._one(client, req)

        try:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            await client.close()

    async def _one(self, client, req: Request) -> Generation:
        import openai

        kwargs = {
            "model": self.model.path,
            "messages": [{"role": "user", "content": req.prompt}],
            "max_tokens": req.max_new_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
        }
        if req.stop:
            kwargs["stop"] = list(req.stop)
        if req.seed is not None:
            kwargs["seed"] = req.seed
        why = ""
        for attempt in range(self.api.max_attempts):
            self.stats.calls += 1
            wait_hint = None
            try:
                reply = await client.chat.completions.create(**kwargs)
                choice = reply.choices[0]
                usage = reply.usage
                return Generation(
                    id=req.id,
                    text=choice.message.content or "",
                    prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                    completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                    finish_reason=choice.finish_reason or "stop",
                )
            except (openai.APIStatusError, openai.APIConnectionError) as e:
                kind, why, wait_hint = retry.classify(e)
                if kind == retry.FATAL:
                    raise UserError(
                        f"model {self.model.name}: {self.api.base_url} answered {e.status_code} ({retry.short(e)}): "
                        f"check base_url, the model id ({self.model.path}) and ${self.api.api_key_env}"
                    ) from None
                if kind == retry.GIVE_UP:
                    self.stats.errors += 1
                    return Generation(req.id, "", finish_reason="error", error=why)
            except (openai.APIResponseValidationError, AttributeError, IndexError, TypeError, ValueError) as e:
                why = f"malformed reply: {type(e).__name__}: {retry.short(e)}"
            if attempt + 1 < self.api.max_attempts:
                delay = retry.backoff_delay(
                    attempt, self.api.backoff_base_s, self.api.backoff_max_s, wait_hint, self.rng
                )
                self.stats.retries += 1
                self.stats.waited_s += delay
                await asyncio.sleep(delay)
        self.stats.errors += 1
        return Generation(
            req.id, "", finish_reason="error", error=f"gave up after {self.api.max_attempts} attempts: {why}"
        )

    def close(self) -> None:
        pass
