"""The LLM judge's questions, asked through the shared OpenAI-compatible backend
(generation/backends/openai_api.py: the official client with its retries off and our back-off —
exponential, capped, jittered, honouring Retry-After — on 429, 5xx, connection errors and broken
bodies, never on other 4xx). `num_workers` requests are in flight at once.

The API key is read from the environment variable the config names (`api_key_env`), inside the
job: it never appears in specs, scripts, pickles, result files or logs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.generation.backends.base import Generation, Request
from orchestrator.generation.backends.openai_api import EndpointRefused, OpenAIBackend
from orchestrator.generation.models import ApiEndpoint, ModelConfig, safe_name
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


def _show_gold(gold: Any) -> str:
    if gold is None or gold == "" or gold == []:
        return "(none given)"
    if isinstance(gold, list):
        return " | ".join(str(g) for g in gold)
    return str(gold)


def judge_prompt(record: dict, cfg: JudgeConfig) -> str:
    """The one user turn the judge is asked."""
    template = cfg.prompt or DEFAULT_PROMPT
    # Plain replacement, not str.format: the template shows a JSON example with braces.
    return (
        template.replace("{question}", str(record.get("prompt") or ""))
        .replace("{gold}", _show_gold(record.get("gold")))
        .replace("{prediction}", str(record.get("prediction") or ""))
    )


def with_endpoint_defaults(cfg: JudgeConfig) -> JudgeConfig:
    """base_url and model from $ORCH_JUDGE_BASE_URL / $ORCH_JUDGE_MODEL where the spec left them out."""
    return replace(
        cfg, base_url=cfg.base_url or os.environ.get(BASE_URL_ENV), model=cfg.model or os.environ.get(MODEL_ENV)
    )


def resolve_endpoint(cfg: JudgeConfig) -> JudgeConfig:
    """Fill base_url/model from the environment where the spec left them out; check the key is
    there (the backend reads it). Raises UserError naming the variable to set."""
    cfg = with_endpoint_defaults(cfg)
    if not cfg.base_url:
        raise UserError(
            f"judge.base_url is not set and ${BASE_URL_ENV} is empty: give the endpoint "
            "(e.g. http://node1:8000/v1) in the spec or the environment"
        )
    if not cfg.model:
        raise UserError(f"judge.model is not set and ${MODEL_ENV} is empty: name the judge model")
    if cfg.key_required and not os.environ.get(cfg.api_key_env):
        raise UserError(
            f"${cfg.api_key_env} is not set in the job's environment: export it in the shell "
            "that submits (SLURM passes it on); keys never go in specs"
        )
    return cfg


def judge_model(cfg: JudgeConfig) -> ModelConfig:
    """The judge as a model of the shared OpenAI-compatible backend: its endpoint, key variable,
    concurrency (`num_workers`), attempts and back-off."""
    api = ApiEndpoint(
        base_url=cfg.base_url or "",
        api_key_env=cfg.api_key_env,
        key_required=cfg.key_required,
        concurrency=cfg.num_workers,
        max_attempts=cfg.max_attempts,
        backoff_base_s=cfg.backoff_base_s,
        backoff_max_s=cfg.backoff_max_s,
        timeout_s=cfg.timeout_s,
    )
    return ModelConfig(name=safe_name(cfg.model or "judge"), path=cfg.model or "", backend=OpenAIBackend.name, api=api)


def verdict_of(gen: Generation, cfg: JudgeConfig) -> Verdict:
    if gen.finish_reason == "error":
        return Verdict(None, "", cfg.judge_name, attempts=gen.attempts, error=gen.error)
    correct, explanation = parse_verdict(gen.text)
    if correct is None:
        return Verdict(None, "", cfg.judge_name, raw=gen.text, attempts=gen.attempts, error=explanation)
    return Verdict(correct, explanation, cfg.judge_name, raw=gen.text, attempts=gen.attempts)


def judge_all(todo: list[dict], cfg: JudgeConfig, done: Callable[[dict, Verdict], None], stats: Stats) -> None:
    """Ask the judge about every record of `todo` (`num_workers` requests in flight);
    `done(record, verdict)` as each answer comes. A reply without a verdict is asked again, up to
    `parse_attempts` asks in all. A refused endpoint (401/403/404) raises JudgeAbort."""
    backend = OpenAIBackend(judge_model(cfg))
    records = {str(i): r for i, r in enumerate(todo)}
    attempts: dict[str, int] = {}  # requests so far per record, retries included
    asks, ids = max(1, cfg.parse_attempts), list(records)
    try:
        for ask in range(asks):
            ids = _ask(backend, ids, records, cfg, done, attempts, last=ask + 1 == asks)
            if not ids:
                break
    except EndpointRefused as e:
        raise JudgeAbort(f"the judge endpoint refused: {e}") from None
    finally:
        stats.calls, stats.retries, stats.waited_s = backend.stats.calls, backend.stats.retries, backend.stats.waited_s


def _ask(
    backend: OpenAIBackend,
    ids: list[str],
    records: dict[str, dict],
    cfg: JudgeConfig,
    done: Callable[[dict, Verdict], None],
    attempts: dict[str, int],
    last: bool,
) -> list[str]:
    """One ask of each of `ids`; returns those whose reply held no verdict, to ask again (none when `last`)."""
    again: list[str] = []

    def answered(gen: Generation) -> None:
        gen.attempts = attempts[gen.id] = attempts.get(gen.id, 0) + gen.attempts
        verdict = verdict_of(gen, cfg)
        if verdict.correct is None and gen.finish_reason != "error" and not last:
            again.append(gen.id)
        else:
            done(records[gen.id], verdict)

    prompts = [
        Request(id=i, prompt=judge_prompt(records[i], cfg), max_new_tokens=cfg.max_tokens, temperature=cfg.temperature)
        for i in ids
    ]
    backend.generate(prompts, on_each=answered)
    return again
