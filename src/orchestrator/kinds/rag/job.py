"""In the job: build an index (`build_index`), or answer every question with one model over one
retrieval configuration (`rag_answer`) through the shared generate → score → write loop.

A run dir (`<model>__<config>`) gets predictions.jsonl (per question, appended + fsynced per
batch: a rerun after kill -9 skips answered questions), then results.json (per question: the
retrieved chunks and scores, prompt, raw reply, parsed answer, latency, tokens, cost, score
components), submission.csv (WattBot format) and summary.json (score + components, retrieval
recall@k, timing, tokens, cost, hardware), written atomically at the end.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.files import SCHEMA_VERSION, write_atomic, write_json_atomic
from orchestrator.core.plan import UnitArgs
from orchestrator.core.records import RunResults
from orchestrator.generation.models import ModelConfig
from orchestrator.kinds.rag.chunking import Chunking
from orchestrator.kinds.rag.config import Retrieval
from orchestrator.kinds.rag.records import RagSummary
from orchestrator.scoring import wattbot


class IndexArgs(UnitArgs):
    corpus: str
    chunking: Chunking
    embedder: str | None = None
    index_dir: str
    device: str = "cpu"

    def describe(self) -> str:
        return f"index {Path(self.index_dir).name} corpus={self.corpus} embedder={self.embedder}"


def build_index(
    run_dir: str,
    experiment: str,
    corpus: str,
    chunking: Chunking | dict,
    index_dir: str,
    embedder: str | None = None,
    device: str = "cpu",
) -> int:
    from orchestrator.kinds.rag import retrieval

    info = retrieval.build(corpus, Chunking.model_validate(chunking), embedder, Path(index_dir), device=device)
    write_json_atomic(
        Path(run_dir) / paths.RAG_INDEX_INFO_FILE, {**info, "index_dir": index_dir, "experiment": experiment}
    )
    return 0


class RagArgs(UnitArgs):
    model: ModelConfig
    questions: str
    index_dir: str
    retrieval: Retrieval
    config: str
    prompt: str
    max_new_tokens: int | None = None
    batch_size: int = 8
    limit: int | None = None
    smoke: bool = False
    seed: int = 0
    device: str = "auto"
    backend_options: dict[str, Any] = {}
    gpus: int | None = None

    def describe(self) -> str:
        return f"model={self.model.name} config={self.config} gpus={self.gpus}"


def load_questions(path: str, limit: int | None, seed: int, smoke: bool) -> list[dict]:
    from orchestrator.generation.examples import select

    rows = wattbot.read_rows(path)
    return [rows[i] for i in select(len(rows), 1 if smoke else limit, seed)]


def make_examples(rows: list[dict], hits: list[list], prompt: str, max_chars: int | None) -> list[dict]:
    from orchestrator.generation.task import environment

    template = environment().from_string(prompt)
    out = []
    for row, row_hits in zip(rows, hits):
        chunks = [
            {
                "doc_id": h.doc_id,
                "chunk_id": h.chunk_id,
                "score": h.score,
                "text": h.text[:max_chars] if max_chars else h.text,
            }
            for h in row_hits
        ]
        gold = {k: row.get(k) for k in ("id", "answer_value", "answer_unit", "ref_id")}
        out.append(
            {
                "id": str(row["id"]),
                "prompt": template.render(question=row["question"], chunks=chunks),
                "gold": gold,
                "domain": "wattbot",
                "row": row,
                "retrieved": chunks,
            }
        )
    return out


def rag_answer(run_dir: str, experiment: str, **kw: Any) -> int:
    from orchestrator.generation import pipeline
    from orchestrator.generation.task import DatasetSpec, Task, TaskGeneration
    from orchestrator.kinds.rag.retrieval import Index

    args = RagArgs.model_validate(kw)
    out, started = Path(run_dir), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    model, cfg = args.model, args.retrieval
    rows = load_questions(args.questions, args.limit, args.seed, args.smoke)
    index = Index(Path(args.index_dir), device="cpu" if args.device == "cpu" else "auto")
    t = time.perf_counter()
    hits = index.search([r["question"] for r in rows], cfg.retriever, cfg.top_k, cfg.rrf_k)
    retrieval_s = time.perf_counter() - t
    docs = index.docs
    del index  # the query encoder leaves memory before the model loads
    examples = make_examples(rows, hits, args.prompt, cfg.max_chunk_chars)
    task = Task(
        name="wattbot",
        dataset=DatasetSpec(path="csv", data_files=args.questions),
        prompt=args.prompt,
        scorer="wattbot",
        generation=TaskGeneration(max_new_tokens=args.max_new_tokens),
    )
    records, progress = pipeline.run_in_job(
        task,
        examples,
        out,
        model,
        backend=model.backend,
        backend_options=args.backend_options,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        started=started,
    )
    finish(out, experiment, args, rows, examples, records, docs, progress, retrieval_s)
    return 0


def finish(out: Path, experiment: str, args: RagArgs, rows, examples, records, docs, progress, retrieval_s) -> dict:
    """results.json, submission.csv and summary.json from the finished records."""
    model, cfg = args.model, args.retrieval
    results, subs = [], []
    for row, ex, rec in zip(rows, examples, records):
        parsed = wattbot.parse_reply(rec["prediction"])
        cost = model.price.cost(rec.get("prompt_tokens") or 0, rec.get("completion_tokens") or 0)
        results.append(
            {
                **rec,
                "retrieved": [{k: c[k] for k in ("chunk_id", "doc_id", "score")} for c in ex["retrieved"]],
                "parsed": parsed,
                "cost_usd": cost,
            }
        )
        refs = parsed["ref_id"]
        subs.append(
            {
                "id": row["id"],
                "question": row.get("question", ""),
                "answer": parsed.get("answer") or parsed["answer_value"],
                "answer_value": parsed["answer_value"],
                "answer_unit": parsed.get("answer_unit") or wattbot.BLANK,
                "ref_id": wattbot.format_refs(refs),
                "ref_url": str([docs[r]["url"] for r in refs if docs.get(r, {}).get("url")]) if refs else wattbot.BLANK,
                "supporting_materials": wattbot.BLANK,
                "explanation": str(parsed.get("explanation") or "").strip() or wattbot.BLANK,  # never empty
            }
        )
    score = wattbot.score_rows(subs, rows)
    answerable = [(row, ex) for row, ex in zip(rows, examples) if not wattbot.is_blank(row.get("answer_value"))]
    found = [
        bool(wattbot.parse_refs(row.get("ref_id")) & {c["doc_id"] for c in ex["retrieved"]}) for row, ex in answerable
    ]
    for r, per in zip(results, score["per_question"]):
        r["score"] = {k: per[k] for k in ("value_accuracy", "ref_overlap", "na_recall")}
    tokens_in = sum(r.get("prompt_tokens") or 0 for r in records)
    tokens_out = sum(r.get("completion_tokens") or 0 for r in records)
    config = {**args.model_dump(mode="json", exclude={"prompt"}), "prompt": args.prompt, "experiment": experiment}
    summary = {
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "model": model.name,
        "backend": model.backend,
        "params_b": model.params_b,
        "retrieval_config": args.config,
        "n": len(records),
        "score": score["metrics"],
        "score_ci": score["ci"],
        "retrieval": {
            "retriever": cfg.retriever,
            "k": cfg.top_k,
            "recall_at_k": sum(found) / len(found) if found else None,
            "n_answerable": len(found),
            "time_s": retrieval_s,
        },
        "malformed": sum(1 for r in results if r["parsed"]["malformed"]),
        "errors": sum(1 for r in records if r.get("finish_reason") == "error"),
        # per question: generation time over questions (a batch's records share its wall time)
        "latency_s": {
            "mean": progress["generate_s"] / len(records) if records else None,
            "batch_mean": _mean([r["latency_s"] for r in records]),
            "batch_max": max((r["latency_s"] for r in records), default=None),
        },
        "tokens": {
            "prompt": tokens_in,
            "completion": tokens_out,
            "missing": sum(1 for r in records if not r.get("completion_tokens")),
        },
        "cost_usd": sum(r["cost_usd"] for r in results),
        "api": progress.get("api"),
        "wall_time_s": progress["wall_time_s"],
        "generate_s": progress["generate_s"],
        "load_time_s": progress.get("load_time_s"),
        "hardware": progress["hardware"],
    }
    RunResults(config=config, examples=results).write(out / paths.RESULTS_FILE)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(wattbot.CSV_COLUMNS))
    writer.writeheader()
    writer.writerows(subs)
    write_atomic(out / paths.RAG_SUBMISSION_FILE, buf.getvalue())
    RagSummary.model_validate(summary).write(out / paths.SUMMARY_FILE)
    print(f"done: {json.dumps(summary['score'])} recall@{cfg.top_k} {summary['retrieval']['recall_at_k']}", flush=True)
    return summary


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
