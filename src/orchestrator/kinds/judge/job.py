"""Grading predictions and confidence tagging: an LLM judge over any OpenAI-compatible
chat-completions endpoint, or a rule-based judge ("exact", "math") that needs no network.

Every graded prediction record gains a structured `verdict` ({"correct", "explanation", "judge",
"raw", ...}) and a `tagged_response`: the prediction followed by " <CN_{DOMAIN}>" when the judge
says it is correct, " <UN_{DOMAIN}>" when not (None when the judge gave no usable verdict).

The LLM judge is the official `openai` client (`AsyncOpenAI(base_url, api_key)`) with its own
retries switched off (`max_retries=0`): the back-off here is ours — exponential, capped, jittered,
honouring Retry-After — on 429, 5xx and connection errors, never on other 4xx. `num_workers`
requests are in flight at once. Results are appended to judged.jsonl and fsynced per batch, so a
kill at any moment loses at most the unflushed batch (re-judged on the next run) and a re-run
skips every id already there: nothing is judged twice into the file.

The API key is read from the environment variable the config names (`api_key_env`), inside the
job: it never appears in specs, scripts, pickles, result files or logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.errors import UserError

SCHEMA_VERSION = 1
DEFAULT_TAGS = ("MATH", "MED", "READ")
TAG_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
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
    prompt: str | None = None  # {question} {gold} {prediction}; default DEFAULT_PROMPT
    num_workers: int = 8
    flush_every: int = 16  # records per append+fsync
    flush_interval_s: float = 2.0  # ... or this long since the last flush
    domains: dict[str, str] = field(default_factory=dict)  # task → DOMAIN (overrides the record's)
    tags: tuple[str, ...] = DEFAULT_TAGS

    @property
    def judge_name(self) -> str:
        return f"rule:{self.type}" if self.type in RULES else (self.model or "")

    def public(self) -> dict:
        """The config as recorded in result files (names the key's variable, never its value)."""
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d


# --------------------------------------------------------------------------- verdicts


@dataclass
class Verdict:
    correct: bool | None
    explanation: str
    judge: str
    raw: str | None = None  # the judge's reply, as received
    attempts: int = 0  # HTTP requests made for this item
    error: str | None = None  # why there is no verdict (correct is None)


_BOOL_WORDS = {
    "true": True,
    "yes": True,
    "correct": True,
    "right": True,
    "false": False,
    "no": False,
    "incorrect": False,
    "wrong": False,
}
_WORD = re.compile(r"\b(not\s+(?:correct|right)|yes|no|correct|incorrect|true|false|right|wrong)\b", re.IGNORECASE)


def _as_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        return _BOOL_WORDS.get(v.strip().lower())
    return None


def _json_objects(text: str) -> Iterator[Any]:
    """Every JSON object embedded in `text` (code fences, prose around it), in order."""
    decoder = json.JSONDecoder()
    i = text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        yield obj
        i = text.find("{", end)


def parse_verdict(text: str | None) -> tuple[bool | None, str]:
    """The judge's reply → (correct, explanation); (None, why) when it holds no verdict.

    Preferred: a JSON object with "correct" (bool, or "yes"/"true"/... as a string) anywhere in the
    reply. Fallback: the first of yes/no/correct/incorrect/true/false/right/wrong as a whole word
    ("not correct" counts as no), with the reply itself as the explanation.
    """
    if not text or not text.strip():
        return None, "empty reply"
    unreadable = None
    for obj in _json_objects(text):
        if isinstance(obj, dict) and "correct" in obj:
            correct = _as_bool(obj["correct"])
            if correct is not None:
                return correct, str(obj.get("explanation", "") or "")
            unreadable = obj["correct"]
    if unreadable is not None:  # the word search would only find the key's own name
        return None, f"unreadable 'correct' value {unreadable!r} in the JSON reply"
    m = _WORD.search(text)
    if m:
        word = m.group(1).lower()
        return (False if word.startswith("not") else _BOOL_WORDS[word]), text.strip()[:500]
    return None, "no verdict in the reply (neither JSON with 'correct' nor yes/no)"


def tag(prediction: str, correct: bool | None, domain: str) -> str | None:
    """`prediction <CN_DOMAIN>` when judged correct, `prediction <UN_DOMAIN>` when not."""
    if correct is None:
        return None
    return f"{prediction} <{'CN' if correct else 'UN'}_{domain}>"


def domain_of(record: dict, cfg: JudgeConfig) -> str:
    """The tag domain of a record: the spec's `domains` (by task, then by the record's own domain),
    else the record's domain when it already is a tag, else DEFAULT_DOMAINS (task configs name
    fine-grained domains such as "medqa" or "coqa")."""
    task, own = str(record.get("task") or ""), str(record.get("domain") or "")
    found = next((cfg.domains[k] for k in (task, own) if k and k in cfg.domains), None)
    if found is None and own.upper() in cfg.tags:
        found = own.upper()
    if found is None:
        found = next((DEFAULT_DOMAINS[k.lower()] for k in (task, own) if k.lower() in DEFAULT_DOMAINS), None)
    if found is None or found.upper() not in cfg.tags:
        got = f"maps to {found!r}, which is not" if found else "maps to none of"
        raise ValueError(
            f"task {task!r} (domain {own!r}) {got} the tags {list(cfg.tags)}: "
            f"map it with domains: {{{task or own}: {cfg.tags[0]}}} or add a tag to tags"
        )
    return found.upper()


# --------------------------------------------------------------------------- rule-based judges


def judge_by_rule(rule: str, record: dict) -> Verdict:
    from orchestrator.scoring import scorers

    prediction, gold = str(record.get("prediction") or ""), record.get("gold")
    name = f"rule:{rule}"
    if gold is None or gold == "" or gold == []:
        return Verdict(None, "", name, error="the record has no gold answer")
    if rule == "exact":
        correct = scorers.score_exact(prediction, gold)["em"] >= 1.0
        return Verdict(correct, f"normalised exact match against {gold!r}: {'yes' if correct else 'no'}", name)
    if rule == "math":
        extracted = scorers.extract_boxed(prediction)
        correct = scorers.score_math(prediction, str(gold))["accuracy"] >= 1.0
        shown = extracted if extracted is not None else prediction[-80:]
        return Verdict(
            correct, f"math-verify: answer {shown!r} vs gold {gold!r}: {'equal' if correct else 'not equal'}", name
        )
    raise ValueError(f"unknown rule judge {rule!r}: use one of {', '.join(RULES)}")


# --------------------------------------------------------------------------- the LLM judge


class JudgeAbort(Exception):
    """A reply that no retry can fix (bad key, unknown model, wrong URL): stop the whole run."""


def backoff_delay(attempt: int, cfg: JudgeConfig, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before retry number `attempt` (0-based): base·2^attempt capped at
    backoff_max_s, with jitter in [d/2, d] so workers do not retry in lockstep; never shorter
    than the server's Retry-After (itself capped)."""
    d = min(cfg.backoff_max_s, cfg.backoff_base_s * (2**attempt))
    d = d / 2 + rng.uniform(0, d / 2)
    if retry_after is not None:
        d = max(d, min(retry_after, cfg.backoff_max_s))
    return d


def _retry_after(exc: Exception) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except (TypeError, ValueError):  # an HTTP date: fall back to our own schedule
        return None
    return None


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


@dataclass
class Stats:
    calls: int = 0
    retries: int = 0
    waited_s: float = 0.0


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
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as e:
                why, retry_after = f"{type(e).__name__}: {_short(e)}", _retry_after(e)
            except openai.APIStatusError as e:
                if e.status_code in (401, 403, 404):
                    raise JudgeAbort(
                        f"the judge endpoint answered {e.status_code} ({_short(e)}): check base_url, "
                        f"model and the key in ${cfg.api_key_env}"
                    ) from None
                if e.status_code < 500:
                    return Verdict(
                        None, "", cfg.judge_name, attempts=attempts, error=f"HTTP {e.status_code}: {_short(e)}"
                    )
                why, retry_after = f"HTTP {e.status_code}: {_short(e)}", _retry_after(e)
            except (openai.APIResponseValidationError, AttributeError, IndexError, TypeError, ValueError) as e:
                why = f"malformed reply: {type(e).__name__}: {_short(e)}"  # e.g. a broken body under load
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


def _short(e: Exception) -> str:
    return str(e).replace("\n", " ")[:300]


# --------------------------------------------------------------------------- files


def read_predictions(path: Path) -> tuple[list[dict], int]:
    """predictions.jsonl → (records, duplicates dropped). First record of an id wins; an
    unfinished last line (a writer killed mid-line) is ignored; any other broken line is an error."""
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"predictions file {path}: cannot read ({e.strerror})") from None
    lines = text.split("\n")
    records, seen, dups = [], set(), 0
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if i == len(lines):  # no newline after it: a partial write
                continue
            raise UserError(f"predictions file {path}, line {i}: not valid JSON; fix or remove the line") from None
        if not isinstance(rec, dict) or "id" not in rec or "prediction" not in rec:
            raise UserError(
                f"predictions file {path}, line {i}: a record needs 'id' and 'prediction' "
                "(see docs/architecture.md, result file formats)"
            )
        if rec["id"] in seen:
            dups += 1
            continue
        seen.add(rec["id"])
        records.append(rec)
    return records, dups


def judged_ids(path: Path) -> set:
    """Ids already in judged.jsonl. A trailing partial line (killed mid-write) is cut off first,
    so the next append starts on a fresh line and that item is simply judged again."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())
        data = data[: data.rfind(b"\n") + 1]
    ids = set()
    for i, line in enumerate(data.decode().splitlines(), 1):
        if line.strip():
            try:
                ids.add(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{path}, line {i}: not a judged record; move the file away to judge afresh") from None
    return ids


class Appender:
    """Append JSON lines, flushed and fsynced per batch: a kill loses at most the unflushed batch."""

    def __init__(self, path: Path, every: int, interval_s: float):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a")
        self.every, self.interval_s = every, interval_s
        self.buffer: list[str] = []
        self.last = time.monotonic()
        self.written = 0

    def add(self, record: dict) -> None:
        self.buffer.append(json.dumps(record, ensure_ascii=False) + "\n")
        if len(self.buffer) >= self.every or time.monotonic() - self.last >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.f.write("".join(self.buffer))
            self.f.flush()
            os.fsync(self.f.fileno())
            self.written += len(self.buffer)
            self.buffer = []
        self.last = time.monotonic()

    def close(self) -> None:
        self.flush()
        self.f.close()

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def judged_record(record: dict, verdict: Verdict, domain: str) -> dict:
    return {
        **record,
        "tag_domain": domain,
        "verdict": {
            "correct": verdict.correct,
            "explanation": verdict.explanation,
            "judge": verdict.judge,
            "raw": verdict.raw,
            "attempts": verdict.attempts,
            "error": verdict.error,
        },
        "tagged_response": tag(str(record.get("prediction") or ""), verdict.correct, domain),
    }


# --------------------------------------------------------------------------- running


def resolve_endpoint(cfg: JudgeConfig) -> tuple[JudgeConfig, str]:
    """Fill base_url/model from the environment where the spec left them out; read the key.
    Raises UserError naming the variable to set."""
    from dataclasses import replace

    base_url = cfg.base_url or os.environ.get(BASE_URL_ENV)
    model = cfg.model or os.environ.get(MODEL_ENV)
    if not base_url:
        raise UserError(
            f"judge.base_url is not set and ${BASE_URL_ENV} is empty: give the endpoint "
            "(e.g. http://node1:8000/v1) in the spec or the environment"
        )
    if not model:
        raise UserError(f"judge.model is not set and ${MODEL_ENV} is empty: name the judge model")
    key = os.environ.get(cfg.api_key_env, "")
    if not key:
        if cfg.key_required:
            raise UserError(
                f"${cfg.api_key_env} is not set in the job's environment: export it in the shell "
                "that submits (SLURM passes it on); keys never go in specs"
            )
        key = "EMPTY"  # a server of our own in the allocation asks for none
    return replace(cfg, base_url=base_url, model=model), key


async def _judge_llm(todo: list[dict], domains: dict, cfg: JudgeConfig, key: str, sink: Appender, stats: Stats) -> None:
    from openai import AsyncOpenAI

    # max_retries=0: the client's own retries would hide 429s from our back-off and its accounting.
    client = AsyncOpenAI(base_url=cfg.base_url, api_key=key, max_retries=0, timeout=cfg.timeout_s)
    items = iter(todo)  # shared by the workers: each record is taken by exactly one of them
    rng = random.Random()

    async def worker() -> None:
        for record in items:
            verdict = await ask_judge(client, record, cfg, stats, rng)
            sink.add(judged_record(record, verdict, domains[record["id"]]))

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(cfg.num_workers, len(todo)))]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in done:
            if t.exception() is not None:
                raise t.exception()
    finally:
        await client.close()


def judge_records(records: list[dict], out: Path, cfg: JudgeConfig) -> tuple[Stats, int, JudgeConfig]:
    """Judge every record whose id is not yet in `out`; returns (stats, how many were already
    judged, the config with endpoint and model resolved)."""
    done = judged_ids(out)
    todo = [r for r in records if r["id"] not in done]
    stats = Stats()
    try:  # every domain resolves before the first request: a bad mapping costs nothing
        domains = {r["id"]: domain_of(r, cfg) for r in todo}
    except ValueError as e:
        raise UserError(f"judge: {e}") from None
    if not todo:  # nothing left to ask: no endpoint or key needed
        from dataclasses import replace

        if cfg.type not in RULES:
            cfg = replace(
                cfg, base_url=cfg.base_url or os.environ.get(BASE_URL_ENV), model=cfg.model or os.environ.get(MODEL_ENV)
            )
        return stats, len(records), cfg
    key = ""
    if cfg.type not in RULES:
        cfg, key = resolve_endpoint(cfg)
    with Appender(out, cfg.flush_every, cfg.flush_interval_s) as sink:
        if cfg.type in RULES:
            for r in todo:
                sink.add(judged_record(r, judge_by_rule(cfg.type, r), domains[r["id"]]))
        else:
            asyncio.run(_judge_llm(todo, domains, cfg, key, sink, stats))
    return stats, len(records) - len(todo), cfg


def summarise(out: Path) -> dict:
    """Counts over the whole judged.jsonl (this run and earlier ones)."""
    n = correct = unjudged = 0
    by_domain: dict[str, dict[str, int]] = {}
    for line in out.read_text().splitlines() if out.exists() else []:
        if not line.strip():
            continue
        rec = json.loads(line)
        n += 1
        c = rec["verdict"]["correct"]
        d = by_domain.setdefault(rec["tag_domain"], {"n": 0, "correct": 0, "no_verdict": 0})
        d["n"] += 1
        if c is None:
            unjudged += 1
            d["no_verdict"] += 1
        elif c:
            correct += 1
            d["correct"] += 1
    judged = n - unjudged
    return {
        "n": n,
        "correct": correct,
        "incorrect": judged - correct,
        "no_verdict": unjudged,
        "accuracy": correct / judged if judged else None,
        "by_domain": by_domain,
    }


def judge_run(run_dir: str, experiment: str, predictions: str, config: dict) -> int:
    """Job entry point (kind `judge`): grade one predictions file into <run_dir>/judged.jsonl,
    then write judge_summary.json. Re-running resumes where the last run stopped."""
    from orchestrator.core.runner import write_json_atomic

    cfg = JudgeConfig(**{**config, "tags": tuple(config.get("tags", DEFAULT_TAGS))})
    source = Path(predictions)
    records, dups = read_predictions(source)
    out = Path(run_dir) / paths.JUDGED_FILE
    t0 = time.monotonic()
    stats, skipped, cfg = judge_records(records, out, cfg)
    wall = time.monotonic() - t0
    summary = summarise(out)
    write_json_atomic(
        Path(run_dir) / paths.JUDGE_SUMMARY_FILE,
        {
            "schema_version": SCHEMA_VERSION,
            "config": cfg.public(),
            "experiment": experiment,
            "predictions": str(source),
            "judge": cfg.judge_name or f"${MODEL_ENV}",
            **summary,
            "duplicates_in_input": dups,
            "skipped_already_judged": skipped,
            "calls": stats.calls,
            "retries": stats.retries,
            "backoff_s": round(stats.waited_s, 3),
            "wall_time_s": round(wall, 3),
        },
    )
    print(
        f"judge: {len(records) - skipped} judged now, {skipped} already judged, {summary['n']} in "
        f"{out.name}; accuracy {summary['accuracy']}, no verdict {summary['no_verdict']}; "
        f"{stats.calls} requests, {stats.retries} retries",
        flush=True,
    )
    return 0
