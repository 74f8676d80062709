"""Rows → examples: a task's dataset through `datasets.load_dataset` (local files or a hub name),
CoQA turns, a seeded `limit`/`smoke` draw, then `{id, prompt, gold, domain, row}` per example
through the task's templates. The same for inference and evaluation."""

from __future__ import annotations

import math
import random
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.generation.task import DatasetSpec, Task, environment


def _clean(v: Any) -> Any:
    """Arrow gives NaN for a missing float and numpy types: back to plain JSON values."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "tolist"):
        return _clean(v.tolist())
    return v


def load_rows(ds: DatasetSpec) -> list[dict[str, Any]]:
    """Rows of the dataset through `datasets.load_dataset` (local files or a hub name)."""
    import datasets

    datasets.disable_progress_bars()
    kwargs: dict[str, Any] = {"split": ds.split}
    if ds.data_files is not None:
        kwargs["data_files"] = ds.data_files
    if ds.field is not None:
        kwargs["field"] = ds.field
    try:
        data = datasets.load_dataset(ds.path, ds.name, **kwargs)
    except FileNotFoundError as e:
        raise UserError(f"dataset {ds.path} ({ds.data_files or ds.split}): file not found: {e}") from None
    except (ConnectionError, OSError, ValueError) as e:
        hint = "" if ds.data_files else " (hub unreachable? give local files: dataset.data_files)"
        raise UserError(f"cannot load dataset {ds.path!r} split {ds.split!r}{hint}: {e}") from None
    return [_clean(dict(r)) for r in data]


def coqa_turns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per CoQA turn: story, history [{question, answer}], question, answers (all golds),
    story_id, source, turn_id. Reads the official JSON (questions/answers as lists of records with
    `input_text`/`turn_id`, `additional_answers`) and the hub layout (questions as strings,
    answers as {"input_text": [...]})."""
    if rows and "story" not in rows[0] and "data" in rows[0]:  # official file read without field: data
        rows = [story for r in rows for story in r["data"]]
    out = []
    for n, story in enumerate(rows):
        story_id = story.get("id") or story.get("source_id") or f"story{n}"
        qs, ans = story["questions"], story["answers"]
        if isinstance(ans, dict):  # hub layout
            questions = [str(q) for q in qs]
            answers = list(ans["input_text"])
            turn_ids = list(range(1, len(questions) + 1))
        else:
            questions = [q["input_text"] for q in qs]
            answers = [a["input_text"] for a in ans]
            turn_ids = [int(q["turn_id"]) for q in qs]
        extra = story.get("additional_answers") or {}
        history: list[dict[str, str]] = []
        for q, a, t in zip(questions, answers, turn_ids):
            golds = [a]
            for other in extra.values():  # each annotator's answers, matched by turn
                if other is None:
                    continue
                golds += [x["input_text"] for x in other if int(x["turn_id"]) == t]
            out.append(
                {
                    "story": story["story"],
                    "story_id": story_id,
                    "source": story.get("source"),  # the official in-/out-of-domain split
                    "turn_id": t,
                    "history": list(history),
                    "question": q,
                    "answers": golds,
                    "id": f"{story_id}_{t}",
                }
            )
            history.append({"question": q, "answer": a})
    return out


def select(n: int, limit: int | None, seed: int, seeded: bool = True) -> list[int]:
    """Indices of the examples to run: all, or `limit` of them in dataset order — drawn with a
    seeded RNG (same limit and seed → same examples), or the first `limit` (`seeded=False`)."""
    if limit is None or limit >= n:
        return list(range(n))
    if not seeded:
        return list(range(limit))
    return sorted(random.Random(seed).sample(range(n), limit))


def build_examples(
    task: Task, limit: int | None = None, seed: int = 0, smoke: bool = False, seeded: bool = True
) -> list[dict[str, Any]]:
    """[{id, prompt, gold, domain, row}] for the run, ids unique (a duplicate is a UserError).
    `row` is the data row plus `idx`, its index in the dataset."""
    rows = load_rows(task.dataset)
    if task.preprocess == "coqa":
        rows = coqa_turns(rows)
    env = environment()
    prompt_t = env.from_string(task.prompt)
    id_e = env.compile_expression(task.id, undefined_to_none=False)
    gold_e = env.compile_expression(task.gold) if task.gold is not None else None
    examples, seen = [], set()
    for i in select(len(rows), 1 if smoke else limit, seed, seeded):
        ctx = {**rows[i], "idx": i}
        try:
            ex_id, prompt = str(id_e(**ctx)), prompt_t.render(**ctx)
            gold = gold_e(**ctx) if gold_e is not None else None
        except Exception as e:  # noqa: BLE001 -- a template error names the task and row
            raise UserError(
                f"task {task.name}: row {i} does not fit the task's templates ({type(e).__name__}: "
                f"{e}); row keys: {sorted(rows[i])} (dataset {task.dataset.data_files or task.dataset.path})"
            ) from None
        if ex_id in seen:
            raise UserError(f"task {task.name}: duplicate example id {ex_id!r} (row {i}); make `id:` unique")
        seen.add(ex_id)
        examples.append({"id": ex_id, "prompt": prompt, "gold": gold, "domain": task.domain_name, "row": ctx})
    return examples


def render_csv_row(task: Task, record: dict[str, Any]) -> dict[str, str]:
    env = environment()
    assert task.csv is not None
    return {col: str(env.compile_expression(expr)(**record)) for col, expr in task.csv.columns.items()}
