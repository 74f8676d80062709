"""The LLM judge's client: the official `openai` client (`AsyncOpenAI(base_url, api_key)`) with
its own retries switched off (`max_retries=0`): the back-off here is ours — exponential, capped,
jittered, honouring Retry-After — on 429, 5xx, connection errors and broken bodies, never on other
4xx. `num_workers` requests are in flight at once. `openai` is imported only here, inside the job.

The API key is read from the environment variable the config names (`api_key_env`), inside the
job: it never appears in specs, scripts, pickles, result files or logs.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.generation.backends import retry
from orchestrator.kinds.judge.config import BASE_URL_ENV, MODEL_ENV, JudgeConfig
from orchestrator.kinds.judge.verdicts import Verdict, parse_verdict

DEFAULT_PROMPT = """\
You are grading an answer to a question against a reference answer.

Question:
{question}

Reference answer:
{gold}

Candidate answer:
{prediction}

Is the candidate's final answer correct (it agrees with the reference; wording may differ)?
Reply with JSON only: {"correct": true or false, "explanation": "<one short sentence>"}"""


class JudgeAbort(Exception):
    """A reply that no retry can fix (bad key, unknown model, wrong URL): stop the whole run."""


@dataclass
class Stats:
    calls: int = 0
    retries: int = 0
    waited_s: float = 0.0


def backoff_delay(attempt: int, cfg: JudgeConfig, retry_after: float | None, rng: random.Random) -> float:
    """The shared schedule (generation/backends/retry.py) with the judge's base and cap."""
    return retry.backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_max_s, retry_after, rng)


def _show_gold(gold: Any) -> str:
    if gold is None or gold == "" or gold == []:
        return "(none given)"
    if isinstance(gold, list):
        return " | ".join(str(g) for g in gold)
    return str(gold)


def judge_messages(record: dict, cfg: JudgeConfig) -> list[dict]:
    template = cfg.prompt or DEFAULT_PROMPT
    # Plain replacement, not str.format: the template shows a JSON example with braces.
    text = (
        template.replace("{question}", str(record.get("prompt") or ""))
        .replace("{gold}", _show_gold(record.get("gold")))
        .replace("{prediction}", str(record.get("prediction") or ""))
    )
    return [{"role": "user", "content": text}]


async def ask_judge(client: Any, record: dict, cfg: JudgeConfig, stats: Stats, rng: random.Random) -> Verdict:
    """One item: request, back off and retry on 429/5xx/connection errors and broken bodies, and
    ask again while the reply holds no verdict. Other 4xx: 401/403/404 abort the run (no item can
    succeed); the rest (e.g. a prompt too long) leave this item without a verdict."""
    import openai

    messages = judge_messages(record, cfg)
    attempts, raw, why = 0, None, ""
    for _ in range(max(1, cfg.parse_attempts)):
        raw = None
        for attempt in range(cfg.max_attempts):
            attempts += 1
            stats.calls += 1
            retry_after = None
            try:
                reply = await client.chat.completions.create(
                    model=cfg.model, messages=messages, temperature=cfg.temperature, max_tokens=cfg.max_tokens
                )
                raw = reply.choices[0].message.content or ""
                break
            except (openai.APIStatusError, openai.APIConnectionError) as e:
                kind, why, retry_after = retry.classify(e)
                if kind == retry.FATAL:
                    raise JudgeAbort(
                        f"the judge endpoint answered {e.status_code} ({retry.short(e)}): check base_url, "
                        f"model and the key in ${cfg.api_key_env}"
                    ) from None
                if kind == retry.GIVE_UP:
                    return Verdict(None, "", cfg.judge_name, attempts=attempts, error=why)
            except (openai.APIResponseValidationError, AttributeError, IndexError, TypeError, ValueError) as e:
                why = f"malformed reply: {type(e).__name__}: {retry.short(e)}"  # e.g. a broken body under load
            if attempt + 1 < cfg.max_attempts:
                delay = backoff_delay(attempt, cfg, retry_after, rng)
                stats.retries += 1
                stats.waited_s += delay
                await asyncio.sleep(delay)
        if raw is None:
            return Verdict(
                None, "", cfg.judge_name, attempts=attempts, error=f"gave up after {cfg.max_attempts} attempts: {why}"
            )
        correct, explanation = parse_verdict(raw)
        if correct is not None:
            return Verdict(correct, explanation, cfg.judge_name, raw=raw, attempts=attempts)
        why = explanation
    return Verdict(None, "", cfg.judge_name, raw=raw, attempts=attempts, error=why)


def with_endpoint_defaults(cfg: JudgeConfig) -> JudgeConfig:
    """base_url and model from $ORCH_JUDGE_BASE_URL / $ORCH_JUDGE_MODEL where the spec left them out."""
    return replace(
        cfg, base_url=cfg.base_url or os.environ.get(BASE_URL_ENV), model=cfg.model or os.environ.get(MODEL_ENV)
    )


def resolve_endpoint(cfg: JudgeConfig) -> tuple[JudgeConfig, str]:
    """Fill base_url/model from the environment where the spec left them out; read the key.
    Raises UserError naming the variable to set."""
    cfg = with_endpoint_defaults(cfg)
    if not cfg.base_url:
        raise UserError(
            f"judge.base_url is not set and ${BASE_URL_ENV} is empty: give the endpoint "
            "(e.g. http://node1:8000/v1) in the spec or the environment"
        )
    if not cfg.model:
        raise UserError(f"judge.model is not set and ${MODEL_ENV} is empty: name the judge model")
    key = os.environ.get(cfg.api_key_env, "")
    if not key:
        if cfg.key_required:
            raise UserError(
                f"${cfg.api_key_env} is not set in the job's environment: export it in the shell "
                "that submits (SLURM passes it on); keys never go in specs"
            )
        key = "EMPTY"  # a server of our own in the allocation asks for none
    return cfg, key


async def judge_all(
    todo: list[dict], cfg: JudgeConfig, key: str, done: Callable[[dict, Verdict], None], stats: Stats
) -> None:
    """Ask the judge about every record of `todo`, `num_workers` at a time; `done(record, verdict)`
    as each answer comes. A JudgeAbort in one worker stops all of them and is raised."""
    from openai import AsyncOpenAI

    # max_retries=0: the client's own retries would hide 429s from our back-off and its accounting.
    client = AsyncOpenAI(base_url=cfg.base_url, api_key=key, max_retries=0, timeout=cfg.timeout_s)
    items = iter(todo)  # shared by the workers: each record is taken by exactly one of them
    rng = random.Random()

    async def worker() -> None:
        for record in items:
            done(record, await ask_judge(client, record, cfg, stats, rng))

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(cfg.num_workers, len(todo)))]
    try:
        finished, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in finished:
            if t.exception() is not None:
                raise t.exception()
    finally:
        await client.close()
