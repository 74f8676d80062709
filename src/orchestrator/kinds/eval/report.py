"""The report of the `eval` kind: the reader of evaluation results
(logs/<experiment>/eval/<arm>/<checkpoint>/<task>.json, under the training experiment they evaluate)
into rows of the results table, with the per-example scores the paired tests use. The comparisons
drawn from them are the training experiment's sections (kinds/train/report.py), which read these
rows from the shared table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.kinds import Section
from orchestrator.reporting.readers import Reader
from orchestrator.reporting.table import Results, Row, finite, higher_is_better, relative


def read(reader: Reader, run_dir: Path) -> bool:
    if run_dir != paths.eval_dir(reader.exp):
        return False
    for f in sorted(run_dir.glob("*/*/*.json")):
        _read_file(reader, f, f.parent.parent.name, f.parent.name)
    return True


# CoQA's official split (scoring/metrics.py): the eval results carry it beside the overall em/f1
DOMAIN_SPLIT = ("em_in_domain", "f1_in_domain", "em_out_domain", "f1_out_domain")


def sections(res: Results, opts: Any) -> list[Section]:
    """A table of the in-domain / out-of-domain split, for the tasks whose scorer reports one."""
    split = {(r.arm, r.epoch, r.checkpoint, r.task) for r in res.of("eval") if r.metric in DOMAIN_SPLIT}
    if not split:
        return []
    table: dict[tuple, dict[str, Any]] = {}
    for r in res.of("eval"):
        key = (r.arm, r.epoch, r.checkpoint, r.task)
        if key in split and r.metric in ("em", "f1", *DOMAIN_SPLIT):
            table.setdefault(key, {"arm": r.arm, "checkpoint": r.checkpoint, "task": r.task})[r.metric] = r.value
    rows = [
        {m: None for m in ("em", "f1", *DOMAIN_SPLIT)} | table[k]
        for k in sorted(table, key=lambda k: (k[0], k[1] or -1, k[3]))
    ]
    return [Section({"eval_domains": rows}, Path(__file__).with_name("report.md.j2"), order=15)]


def _read_file(reader: Reader, path: Path, arm: str, checkpoint: str) -> None:
    d = reader.json_file(path)
    if d is None:
        return
    metrics = d.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        reader.warn(path, "no 'metrics' object; skipped")
        return
    arm = str(d.get("arm") or arm)
    checkpoint = str(d.get("checkpoint") or checkpoint)
    task = str(d.get("task") or path.stem)
    epoch = d.get("epoch") if isinstance(d.get("epoch"), int) else _epoch_of(checkpoint)
    primary = d.get("primary_metric") if d.get("primary_metric") in metrics else sorted(metrics)[0]
    rel, run = relative(path), f"eval/{arm}/{checkpoint}"
    n = d.get("n") if isinstance(d.get("n"), int) else None
    for name in sorted(metrics):
        v = finite(metrics[name])
        if v is None and metrics[name] is not None and not isinstance(metrics[name], float):
            reader.warn(path, f"metric {name!r} is not a number ({metrics[name]!r}); skipped")
            continue
        declared = d.get("higher_is_better") if name == primary else None
        reader.res.rows.append(
            Row(
                "eval",
                reader.exp,
                arm=arm,
                run=run,
                checkpoint=checkpoint,
                epoch=epoch,
                domain=str(d.get("domain") or ""),
                task=task,
                metric=name,
                value=v,
                higher_is_better=higher_is_better(name, declared),
                primary=name == primary,
                n=n,
                file=rel,
            )
        )
    per = d.get("per_example")
    if isinstance(per, list) and per:
        scores: dict[str, float] = {}
        for ex in per:
            if not isinstance(ex, dict) or "id" not in ex:
                continue
            s = finite(ex.get("score"))
            if s is None and isinstance(ex.get("correct"), bool):
                s = float(ex["correct"])
            if s is not None:
                scores[str(ex["id"])] = s
        if len(scores) < len(per):
            reader.warn(path, f"{len(per) - len(scores)} per_example record(s) without id or score ignored")
        reader.res.per_example[(arm, checkpoint, task)] = scores


def _epoch_of(checkpoint: str) -> int | None:
    m = re.search(r"(\d+)$", checkpoint)
    return int(m.group(1)) if m else None
