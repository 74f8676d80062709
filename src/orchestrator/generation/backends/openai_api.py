"""OpenAI-compatible chat endpoints as a backend (`backend: openai`): OpenRouter, OpenAI, a vLLM
server. The official client with its own retries off (`max_retries=0`): back-off is ours
(`retry.py`: exponential, jittered, honouring Retry-After) on 429, 5xx, connection errors and
broken bodies; `api.concurrency` requests in flight. 401/403/404 stop the run (no request can
succeed); another 4xx, or attempts used up, leaves that request with `finish_reason: error`
and the reason, never a crashed run. Token counts come from the reply's `usage`. The judge kind
asks its judge model through this backend too (`on_each`: each answer as it comes).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.core.errors import UserError
from orchestrator.generation.backends import retry
from orchestrator.generation.backends.base import Generation, Request
from orchestrator.generation.models import ModelConfig


class EndpointRefused(UserError):
    """401/403/404: no request to this endpoint can succeed, so the whole batch stops."""


@dataclass
class CallStats:
    calls: int = 0
    retries: int = 0
    waited_s: float = 0.0
    errors: int = 0


class OpenAIBackend:
    name = "openai"
    remote = True  # the model config needs `api:`; the job asks for no GPUs

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

    def generate(
        self, requests: list[Request], on_each: Callable[[Generation], None] | None = None
    ) -> list[Generation]:
        """One Generation per Request, in order; `on_each(generation)` as each one comes back.
        EndpointRefused (401/403/404) stops every request still waiting or in flight."""
        return asyncio.run(self._all(requests, on_each))

    async def _all(self, requests: list[Request], on_each: Callable[[Generation], None] | None) -> list[Generation]:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=self.api.base_url, api_key=self.key, max_retries=0, timeout=self.api.timeout_s)
        gate = asyncio.Semaphore(self.api.concurrency)
        refused = asyncio.Event()

        async def one(req: Request) -> Generation | None:
            async with gate:
                if refused.is_set():  # woken by the refused request's slot: send nothing more
                    return None
                try:
                    gen = await self._one(client, req)
                except EndpointRefused:
                    refused.set()
                    raise
            if on_each is not None:
                on_each(gen)
            return gen

        tasks = [asyncio.ensure_future(one(r)) for r in requests]
        try:
            if tasks:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in tasks:  # an error in one: cancel the rest before they send another request
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in tasks:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            return [g for t in tasks if (g := t.result()) is not None]
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
                    attempts=attempt + 1,
                )
            except (openai.APIStatusError, openai.APIConnectionError) as e:
                kind, why, wait_hint = retry.classify(e)
                if kind == retry.FATAL:
                    raise EndpointRefused(
                        f"model {self.model.name}: {self.api.base_url} answered {e.status_code} ({retry.short(e)}): "
                        f"check base_url, the model id ({self.model.path}) and ${self.api.api_key_env}"
                    ) from None
                if kind == retry.GIVE_UP:
                    self.stats.errors += 1
                    return Generation(req.id, "", finish_reason="error", error=why, attempts=attempt + 1)
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
            req.id,
            "",
            finish_reason="error",
            error=f"gave up after {self.api.max_attempts} attempts: {why}",
            attempts=self.api.max_attempts,
        )

    def close(self) -> None:
        pass
