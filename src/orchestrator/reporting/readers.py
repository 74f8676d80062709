"""Readers of the result files of training and evaluation, and of the registry's jobs: each turns
its files into rows of the results table. A missing or malformed file is a warning, never fatal;
a file of a newer or unknown schema_version is an error naming it (core.records.check_version).
(Inference and judge runs: `read_runs`.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from orchestrator.core import monitor, paths
from orchestrator.core.files import read_jsonl
from orchestrator.core.records import RecordError, ResultFile, check_version
from orchestrator.core.registry import Registry
from orchestrator.core.runner import read_status
from orchestrator.core.states import ACTIVE_STATES, COMPLETED
from orchestrator.reporting.table import Results, Row, finite, higher_is_better, relative


class Reader:
    """The table being filled, and the file access every reader shares (warnings, not errors)."""

    def __init__(self, experiment: str):
        self.res = Results(experiment)
        self.exp = experiment

    def warn(self, path: Path, problem: str) -> None:
        self.res.warnings.append(f"{relative(path)}: {problem}")

    def json_file(self, path: Path, model: type[ResultFile] = ResultFile) -> dict | None:
        """The file through `model` (default: any result file), as a dict; None with a warning when
        it is unreadable or not the model. SchemaVersionError when its version is not one we read."""
        try:
            return model.read(path).dump()
        except OSError as e:
            self.warn(path, f"unreadable ({e.strerror})")
        except RecordError as e:
            self.warn(path, f"{str(e).removeprefix(f'{path}: ')}; skipped")
        return None

    def jsonl(self, path: Path) -> Iterator[tuple[int, dict]]:
        """(record number, record) of a JSON-lines file, by core.files' rule: a torn last line (a
        job killed mid-write) is no record; it and other malformed lines are one warning."""
        try:
            content = read_jsonl(path)
        except OSError as e:
            self.warn(path, f"unreadable ({e.strerror})")
            return
        for i, rec in enumerate(content.records, 1):
            check_version(rec, f"{path}, record {i}")
            yield i, rec
        bad = list(content.bad_lines)
        if content.torn:
            bad.append(path.read_bytes().count(b"\n") + 1)
        if bad:
            self.warn(path, f"{len(bad)} malformed line(s) skipped (first: line {min(bad)})")

    # ---------------------------------------------------------------- training

    def training(self, arm_dir: Path) -> None:
        arm = arm_dir.name
        metrics_path = arm_dir / paths.METRICS_FILE
        rel = relative(metrics_path)
        if metrics_path.exists():
            for i, rec in self.jsonl(metrics_path):
                epoch = rec.get("epoch")
                if not isinstance(epoch, int):
                    self.warn(metrics_path, f"record {i} has no integer 'epoch'; skipped")
                    continue
                for key, value in rec.items():
                    v = finite(value)
                    if key in ("schema_version", "epoch") or v is None:
                        continue
                    parts = key.split("/")
                    domain = parts[1] if len(parts) == 3 and parts[0] == "val" else ""
                    self.res.rows.append(
                        Row(
                            "train",
                            self.exp,
                            arm=arm,
                            run=arm,
                            epoch=epoch,
                            domain=domain,
                            metric=key,
                            value=v,
                            higher_is_better=higher_is_better(key),
                            file=rel,
                        )
                    )
        summary_path = arm_dir / paths.SUMMARY_FILE
        if summary_path.exists():
            s = self.json_file(summary_path)
            if s is None:
                return
            best = s.get("best") if isinstance(s.get("best"), dict) else {}
            best_epoch = best.get("epoch") if isinstance(best.get("epoch"), int) else None
            stop_epoch = s.get("stop_epoch") if isinstance(s.get("stop_epoch"), int) else None
            wall = finite(s.get("wall_time_s"))
            metric = str(best.get("metric") or "")
            self.res.rows.append(
                Row(
                    "train_summary",
                    self.exp,
                    arm=str(s.get("arm") or arm),
                    run=arm,
                    checkpoint=f"epoch_{best_epoch}" if best_epoch is not None else "",
                    epoch=stop_epoch,
                    metric=metric,
                    value=finite(best.get("value")),
                    higher_is_better=higher_is_better(metric) if metric else None,
                    state="STOPPED_EARLY" if s.get("stopped_early") else "FINISHED",
                    wall_hours=wall / 3600 if wall is not None else None,
                    device_hours=finite(s.get("device_hours")),
                    detail=str(s.get("stop_reason") or ""),
                    file=relative(summary_path),
                )
            )
            ev = s.get("evaluation") if isinstance(s.get("evaluation"), dict) else {}
            if ev.get("significance_test") in ("bootstrap", "mcnemar"):  # the choice's verdict
                self.res.paired_tests[str(s.get("arm") or arm)] = ev["significance_test"]
            for which in ("heldout", "reward"):  # evaluation.every_save: the two checkpoint choices
                choice = s.get(f"best_{which}")
                if isinstance(choice, dict) and isinstance(choice.get("epoch"), int):
                    m = str(choice.get("metric") or "")
                    self.res.rows.append(
                        Row(
                            "choice",
                            self.exp,
                            arm=str(s.get("arm") or arm),
                            run=arm,
                            checkpoint=f"epoch_{choice['epoch']}",
                            epoch=choice["epoch"],
                            metric=m,
                            value=finite(choice.get("value")),
                            higher_is_better=higher_is_better(m) if m else None,
                            detail=which,
                            file=relative(summary_path),
                        )
                    )

    # ---------------------------------------------------------------- evaluation

    def evaluation(self, path: Path, arm: str, checkpoint: str) -> None:
        d = self.json_file(path)
        if d is None:
            return
        metrics = d.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            self.warn(path, "no 'metrics' object; skipped")
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
                self.warn(path, f"metric {name!r} is not a number ({metrics[name]!r}); skipped")
                continue
            declared = d.get("higher_is_better") if name == primary else None
            self.res.rows.append(
                Row(
                    "eval",
                    self.exp,
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
                self.warn(path, f"{len(per) - len(scores)} per_example record(s) without id or score ignored")
            self.res.per_example[(arm, checkpoint, task)] = scores

    # ---------------------------------------------------------------- registry

    def jobs(self, experiment: str, refresh: bool) -> None:
        reg = Registry()
        try:
            tasks = monitor.refresh(reg, experiment) if refresh else reg.tasks(experiment)
            scripts = {
                r["id"]: r["script"] or ""
                for r in reg.db.execute("SELECT id, script FROM jobs WHERE experiment = ?", (experiment,))
            }
            spec_row = reg.db.execute("SELECT spec_json FROM experiments WHERE name = ?", (experiment,)).fetchone()
        finally:
            reg.close()
        spec = {}
        if spec_row and spec_row["spec_json"]:
            try:
                spec = json.loads(spec_row["spec_json"])
            except ValueError:
                spec = {}
        home_dir = paths.home()
        home = str(home_dir)
        for t in tasks:
            status = _status(experiment, t.run)
            started = t.started if t.started is not None else finite(status.get("started"))
            ended = t.ended if t.ended is not None else finite(status.get("ended"))
            wall = (ended - started) / 3600 if started is not None and ended is not None and ended >= started else None
            gpus = _gpus(scripts.get(t.job, ""), spec, t.stage)
            failed = t.state not in ACTIVE_STATES and t.state != COMPLETED
            tail = monitor.log_tail(t).replace(home, "$ORCH_HOME") if failed else ""
            self.res.rows.append(
                Row(
                    "job",
                    experiment,
                    run=t.run,
                    stage=t.stage,
                    state=t.state,
                    exit_code=t.exit_code,
                    node=t.node or str(status.get("node") or status.get("host") or ""),
                    started=started,
                    ended=ended,
                    wall_hours=wall,
                    device_hours=gpus * wall if wall is not None else None,
                    detail=t.reason or "",
                    log_tail=tail,
                    file=relative(paths.status_file(experiment, t.run), home_dir),
                )
            )


def _status(experiment: str, run: str) -> dict:
    return read_status(experiment, run) or {}


_GPUS_PER_NODE = re.compile(r"^#SBATCH --(?:gpus-per-node|gres)=(?:gpu:)?(?:[a-zA-Z0-9_]+:)?(\d+)\s*$", re.M)
_NODES = re.compile(r"^#SBATCH --nodes=(\d+)\s*$", re.M)


def _gpus(script: str, spec: dict, stage: str) -> int:
    """GPUs a job held: from the sbatch script it was given, else from its spec; 0 when none."""
    m = _GPUS_PER_NODE.search(script)
    if m:
        nodes = _NODES.search(script)
        return int(m.group(1)) * (int(nodes.group(1)) if nodes else 1)
    if script:
        return 0
    res = dict(spec.get("resources") or {})
    stage_spec = (spec.get("stages") or {}).get(stage) if isinstance(spec.get("stages"), dict) else None
    if isinstance(stage_spec, dict):
        res.update({k: v for k, v in (stage_spec.get("resources") or {}).items() if v is not None})
    g, n = res.get("gpus_per_node") or 0, res.get("nodes") or 1
    return int(g) * int(n) if isinstance(g, int) and isinstance(n, int) else 0


def _epoch_of(checkpoint: str) -> int | None:
    m = re.search(r"(\d+)$", checkpoint)
    return int(m.group(1)) if m else None
