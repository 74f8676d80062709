"""The `judge` kind in the job: grade predictions and tag each response.

The entry point `judge_run` reads one predictions file, asks the judge (an LLM over any
OpenAI-compatible endpoint: `client`; or a rule, "exact" / "math", that needs no network:
`verdicts`) about every record not yet in judged.jsonl, and appends each judged record
(`verdicts.judged_record`: the prediction + a structured `verdict` + `tagged_response`, the
prediction followed by " <CN_{DOMAIN}>" when judged correct, " <UN_{DOMAIN}>" when not). Input in
the confidence-tagging layout (`layout.py`) is read too, and answered in that layout as well
(tagged.json; for JSONL input with `tagged_layout: true`).

Records are appended in batches (`core.files.append_jsonl`: one write + fsync per batch), so a kill
at any moment loses at most the unflushed batch, re-judged on the next run; a re-run skips every id
already there (the torn last line of a killed write is cut off first: `read_jsonl(repair=True)`),
so nothing is judged twice into the file. judge_summary.json is rewritten atomically at the end.
"""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.errors import UserError
from orchestrator.core.files import append_jsonl, read_jsonl, write_json_atomic
from orchestrator.core.plan import UnitArgs
from orchestrator.core.records import RecordError, check_version, read_records
from orchestrator.kinds.judge import layout
from orchestrator.kinds.judge.client import Stats, judge_all, resolve_endpoint, with_endpoint_defaults
from orchestrator.kinds.judge.config import MODEL_ENV, RULES, JudgeConfig
from orchestrator.kinds.judge.records import JudgedRecord, JudgeSummary
from orchestrator.kinds.judge.verdicts import Verdict, domain_of, judge_by_rule, judged_record


class JudgeArgs(UnitArgs):
    """What one judge unit is given: the predictions file it grades and the judge config."""

    predictions: str
    config: JudgeConfig

    def describe(self) -> str:
        judge = self.config.judge_name or f"${MODEL_ENV}"
        return f"predictions={self.predictions} judge={judge}"


def read_predictions(path: Path) -> tuple[list[dict], int, bool, bool]:
    """predictions.jsonl → (records, duplicates dropped, torn, False). First record of an id wins; a
    torn last line (a writer killed mid-line) is no record (core.files' rule); any other broken line
    is an error. A file in the confidence-tagging layout (layout.py) → (its records, 0, False, True)."""
    try:
        if not path.is_file():
            raise FileNotFoundError(2, "No such file")
        items = layout.load_layout(path)
        if items is not None:
            return layout.read_layout(items, path), 0, False, True
        content = read_jsonl(path)
    except OSError as e:
        raise UserError(f"predictions file {path}: cannot read ({e.strerror})") from None
    if content.bad_lines:
        raise UserError(
            f"predictions file {path}, line {content.bad_lines[0]}: not a JSON object; fix or remove the line"
        )
    records, seen, dups = [], set(), 0
    for i, rec in enumerate(content.records, 1):
        check_version(rec, f"predictions file {path}, record {i}")
        if "id" not in rec or "prediction" not in rec:
            raise UserError(
                f"predictions file {path}: record {str(rec)[:80]!r} needs 'id' and 'prediction' "
                "(see docs/results-schema.md, the per-example record)"
            )
        if rec["id"] in seen:
            dups += 1
            continue
        seen.add(rec["id"])
        records.append(rec)
    return records, dups, content.torn, False


def read_judged(path: Path, repair: bool = False) -> list[JudgedRecord]:
    """judged.jsonl's records. A torn last line (killed mid-write) is no record (`repair`: cut it
    off, so the next append starts on a fresh line and that item is simply judged again)."""
    try:
        records, content = read_records(path, JudgedRecord, repair=repair)
    except RecordError as e:
        raise UserError(f"{e}: not a judged record; move the file away to judge afresh") from None
    if content.bad_lines:
        raise UserError(f"{path}, line {content.bad_lines[0]}: not a judged record; move the file away to judge afresh")
    return records


def judged_ids(path: Path) -> set:
    """Ids already in judged.jsonl (its torn last line cut off: about to append)."""
    return {r.id for r in read_judged(path, repair=True)}


class Batcher:
    """Judged records appended in batches of `every` (or after `interval_s`): one write + fsync each."""

    def __init__(self, path: Path, every: int, interval_s: float):
        self.path, self.every, self.interval_s = path, every, interval_s
        self.buffer: list[dict] = []
        self.last = time.monotonic()

    def add(self, record: dict) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.every or time.monotonic() - self.last >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        append_jsonl(self.path, self.buffer)
        self.buffer = []
        self.last = time.monotonic()

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()  # also on an abort: what was judged is kept


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
        return stats, len(records), cfg if cfg.type in RULES else with_endpoint_defaults(cfg)
    if cfg.type not in RULES:
        cfg = resolve_endpoint(cfg)
    with Batcher(out, cfg.flush_every, cfg.flush_interval_s) as sink:

        def done_one(record: dict, verdict: Verdict) -> None:
            sink.add(judged_record(record, verdict, domains[record["id"]]))

        if cfg.type in RULES:
            for r in todo:
                done_one(r, judge_by_rule(cfg.type, r))
        else:
            judge_all(todo, cfg, done_one, stats)
    return stats, len(records) - len(todo), cfg


def summarise(out: Path) -> dict:
    """Counts over the whole judged.jsonl (this run and earlier ones)."""
    n = correct = unjudged = 0
    by_domain: dict[str, dict[str, int]] = {}
    for rec in read_judged(out):
        n += 1
        c = rec.verdict.correct
        d = by_domain.setdefault(rec.tag_domain, {"n": 0, "correct": 0, "no_verdict": 0})
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


def judge_run(run_dir: str, experiment: str, predictions: str, config: JudgeConfig | dict) -> int:
    """Job entry point (kind `judge`): grade one predictions file into <run_dir>/judged.jsonl,
    then write judge_summary.json. Re-running resumes where the last run stopped."""
    args = JudgeArgs(predictions=predictions, config=config)
    source = Path(args.predictions)
    records, dups, torn, in_layout = read_predictions(source)
    if torn:
        print(f"judge: the last line of {source} is unfinished (no newline): not judged", flush=True)
    out = Path(run_dir) / paths.JUDGED_FILE
    t0 = time.monotonic()
    stats, skipped, cfg = judge_records(records, out, args.config)
    wall = time.monotonic() - t0
    summary = summarise(out)
    if in_layout or args.config.tagged_layout:
        by_id = {r.id: r.dump() for r in read_judged(out)}
        ordered = [by_id[r["id"]] for r in records if r["id"] in by_id]
        write_json_atomic(Path(run_dir) / paths.TAGGED_LAYOUT_FILE, layout.tagged_layout(ordered))
    JudgeSummary(
        config=cfg.public(),
        experiment=experiment,
        predictions=str(source),
        judge=cfg.judge_name or f"${MODEL_ENV}",
        **summary,
        duplicates_in_input=dups,
        skipped_already_judged=skipped,
        calls=stats.calls,
        retries=stats.retries,
        backoff_s=round(stats.waited_s, 3),
        wall_time_s=round(wall, 3),
    ).write(Path(run_dir) / paths.JUDGE_SUMMARY_FILE)
    print(
        f"judge: {len(records) - skipped} judged now, {skipped} already judged, {summary['n']} in "
        f"{out.name}; accuracy {summary['accuracy']}, no verdict {summary['no_verdict']}; "
        f"{stats.calls} requests, {stats.retries} retries",
        flush=True,
    )
    return 0
