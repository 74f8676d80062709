"""Read every result file of an experiment into one table (schema: docs/results-schema.md).

Sources, all optional (a report works with training only, evaluation only, inference only, or any mix):
- training arms   logs/<exp>/<arm>/metrics.jsonl, summary.json
- evaluation      logs/<exp>/eval/<arm>/<checkpoint>/<task>.json (also logs/<exp>/<arm>/eval/<ckpt>/...)
- inference runs  logs/<exp>/<model>__<task>/predictions.jsonl, results.json, summary.json
- the registry    one row per run: state, exit code, node, start/end, wall and device hours, and the
                  log tail of failed runs

A missing or malformed file never stops the aggregation: it becomes a warning naming the file and
what was wrong, and the rest is read. Pure reading (plus an optional registry refresh); numpy only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.errors import UserError
from orchestrator.scoring.metrics import METRICS

SCHEMA_VERSION = 1
SKIP_DIRS = {"_jobs", "eval", "report"}


@dataclass(slots=True)
class Row:
    """One value of the results table. `source` says which fields are filled (docs/results-schema.md)."""

    source: str  # train | train_summary | eval | inference | job
    experiment: str
    arm: str = ""  # training arm; the model for inference rows
    run: str = ""  # run directory under logs/<exp>/ (job rows: the registry's run)
    stage: str = ""  # job rows: the spec's stage
    checkpoint: str = ""  # eval: checkpoint name; train_summary: best checkpoint
    epoch: int | None = None
    domain: str = ""
    task: str = ""
    metric: str = ""
    value: float | None = None
    higher_is_better: bool | None = None
    primary: bool = False  # eval: the task's primary metric
    n: int | None = None  # examples behind the value
    state: str = ""  # job: scheduler state; train_summary: STOPPED_EARLY | FINISHED
    exit_code: int | None = None
    node: str = ""
    started: float | None = None  # unix seconds
    ended: float | None = None
    wall_hours: float | None = None
    device_hours: float | None = None  # GPUs x wall hours; 0 without GPUs
    detail: str = ""  # job: failure reason; train_summary: stop reason
    log_tail: str = ""  # job rows of failed runs
    file: str = ""  # source file, relative to ORCH_HOME


COLUMNS = [f.name for f in fields(Row)]


@dataclass(slots=True)
class Example:
    """One inference prediction (predictions.jsonl record), the unit of matrices, votes and audits."""

    run: str
    model: str
    task: str
    domain: str
    id: str
    prediction: str | None
    correct: bool | None
    confidence: float | None  # confidence.mean
    latency_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None


@dataclass
class Results:
    experiment: str
    rows: list[Row] = field(default_factory=list)
    # (arm, checkpoint, task) → example id → per-example score of the task's primary metric
    per_example: dict[tuple[str, str, str], dict[str, float]] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    # (model, task) → run directories holding it (more than one = a duplicate run)
    inference_runs: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def of(self, source: str) -> list[Row]:
        return [r for r in self.rows if r.source == source]

    def inference_rows(self) -> list[Row]:
        """Inference rows, one run per (model, task): with duplicate runs, the one with the most examples."""
        rows = self.of("inference")
        n = {r.run: r.n or 0 for r in rows}
        keep = {key: max(sorted(runs), key=lambda run: n.get(run, 0)) for key, runs in self.inference_runs.items()}
        return [r for r in rows if keep.get((r.arm, r.task), r.run) == r.run]

    def to_records(self) -> list[dict[str, Any]]:
        return [{c: getattr(r, c) for c in COLUMNS} for r in self.rows]  # asdict() deep-copies: 5x slower

    def to_json(self) -> str:
        """One row per line, keys in column order: diffable, and fast for 10,000s of rows."""
        dump = lambda o: json.dumps(o, allow_nan=False, ensure_ascii=False)  # noqa: E731
        rows = ",\n".join(dump(r) for r in self.to_records())
        return (
            f'{{"schema_version": {SCHEMA_VERSION}, "experiment": {dump(self.experiment)},\n'
            f'"columns": {dump(COLUMNS)},\n"warnings": {dump(self.warnings)},\n"rows": [\n{rows}\n]}}\n'
        )

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in self.rows:
            w.writerow(["" if v is None else _csv_value(v) for v in (getattr(r, c) for c in COLUMNS)])
        return buf.getvalue()


def _csv_value(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _finite(v: Any) -> float | None:
    """A number as float, or None for missing/NaN/inf/non-numbers (bools are not scores here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _rel(p: Path, home: Path | None = None) -> str:
    try:
        return str(p.relative_to(home or paths.home()))
    except ValueError:
        return str(p)


def higher_is_better(metric: str, declared: Any = None) -> bool:
    """Direction of a metric: the metric registry first, then what the file declares, else higher."""
    m = METRICS.get(metric.rsplit("/", 1)[-1])
    if m is not None:
        return m.higher_is_better
    return declared if isinstance(declared, bool) else True


class _Reader:
    def __init__(self, experiment: str):
        self.res = Results(experiment)
        self.exp = experiment

    def warn(self, path: Path, problem: str) -> None:
        self.res.warnings.append(f"{_rel(path)}: {problem}")

    def json_file(self, path: Path) -> dict | None:
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            self.warn(path, f"unreadable ({e.strerror})")
            return None
        except ValueError as e:
            self.warn(path, f"not valid JSON ({e}); skipped")
            return None
        if not isinstance(data, dict):
            self.warn(path, "expected a JSON object; skipped")
            return None
        version = data.get("schema_version")
        if version is not None and version != SCHEMA_VERSION:
            self.warn(path, f"schema_version {version} (this reader knows {SCHEMA_VERSION}); read as best it can")
        return data

    def jsonl(self, path: Path) -> Iterator[tuple[int, dict]]:
        """Lines of a JSON-lines file; a torn last line (a job killed mid-write) is a warning."""
        try:
            f = open(path, encoding="utf-8", errors="replace")
        except OSError as e:
            self.warn(path, f"unreadable ({e.strerror})")
            return
        bad = []
        with f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    bad.append(i)
                    continue
                if isinstance(rec, dict):
                    yield i, rec
                else:
                    bad.append(i)
        if bad:
            self.warn(path, f"{len(bad)} malformed line(s) skipped (first: line {bad[0]})")

    # ---------------------------------------------------------------- training

    def training(self, arm_dir: Path) -> None:
        arm = arm_dir.name
        metrics_path = arm_dir / paths.METRICS_FILE
        rel = _rel(metrics_path)
        if metrics_path.exists():
            for i, rec in self.jsonl(metrics_path):
                epoch = rec.get("epoch")
                if not isinstance(epoch, int):
                    self.warn(metrics_path, f"line {i} has no integer 'epoch'; skipped")
                    continue
                for key, value in rec.items():
                    v = _finite(value)
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
            wall = _finite(s.get("wall_time_s"))
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
                    value=_finite(best.get("value")),
                    higher_is_better=higher_is_better(metric) if metric else None,
                    state="STOPPED_EARLY" if s.get("stopped_early") else "FINISHED",
                    wall_hours=wall / 3600 if wall is not None else None,
                    device_hours=_finite(s.get("device_hours")),
                    detail=str(s.get("stop_reason") or ""),
                    file=_rel(summary_path),
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
        rel, run = _rel(path), f"eval/{arm}/{checkpoint}"
        n = d.get("n") if isinstance(d.get("n"), int) else None
        for name in sorted(metrics):
            v = _finite(metrics[name])
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
                s = _finite(ex.get("score"))
                if s is None and isinstance(ex.get("correct"), bool):
                    s = float(ex["correct"])
                if s is not None:
                    scores[str(ex["id"])] = s
            if len(scores) < len(per):
                self.warn(path, f"{len(per) - len(scores)} per_example record(s) without id or score ignored")
            self.res.per_example[(arm, checkpoint, task)] = scores

    # ---------------------------------------------------------------- inference

    def inference(self, run_dir: Path) -> None:
        run = run_dir.name
        summary_path = run_dir / paths.SUMMARY_FILE
        s = self.json_file(summary_path) if summary_path.exists() else None
        model, _, task = run.partition("__")
        if s:
            model, task = str(s.get("model") or model), str(s.get("task") or task)
        examples = self._examples(run_dir, run, model, task)
        domain = next((e.domain for e in examples if e.domain), "")
        self.res.inference_runs.setdefault((model, task), []).append(run)
        size = _model_size(s or {})
        base = dict(arm=model, run=run, task=task, domain=domain, file=_rel(summary_path))
        if s is None:
            if not examples:
                return
            self.warn(summary_path, "missing: metrics recomputed from the predictions (unfinished run?)")
            values = _metrics_from_examples(examples)
            n = len(examples)
            base["file"] = _rel(run_dir / paths.PREDICTIONS_FILE)
        else:
            values = {}
            for k, v in (s.get("metrics") or {}).items():
                values[k] = _finite(v)
            for k, v in (s.get("calibration") or {}).items():
                values[k] = _finite(v)
            for k in ("throughput_tokens_per_s", "wall_time_s", "load_time_s"):
                values[k] = _finite(s.get(k))
            for k, v in (s.get("hardware") or {}).items():
                if k != "gpu_name":
                    values[f"hardware/{k}"] = _finite(v)
            n = s.get("n") if isinstance(s.get("n"), int) else len(examples) or None
        if examples:
            lat = [e.latency_s for e in examples if e.latency_s is not None]
            values.setdefault("latency_s_mean", sum(lat) / len(lat) if lat else None)
        values["params_b"] = size
        for k in sorted(values):
            self.res.rows.append(
                Row("inference", self.exp, metric=k, value=values[k], higher_is_better=higher_is_better(k), n=n, **base)
            )

    def _examples(self, run_dir: Path, run: str, model: str, task: str) -> list[Example]:
        pred_path = run_dir / paths.PREDICTIONS_FILE
        records: list[dict] = []
        if pred_path.exists():
            records = [r for _, r in self.jsonl(pred_path)]
        elif (run_dir / paths.RESULTS_FILE).exists():
            d = self.json_file(run_dir / paths.RESULTS_FILE)
            records = [r for r in (d or {}).get("examples", []) if isinstance(r, dict)]
        out = []
        for r in records:
            if "id" not in r:
                continue
            conf = r.get("confidence")
            conf = _finite(conf.get("mean")) if isinstance(conf, dict) else _finite(conf)
            pred = r.get("prediction")
            out.append(
                Example(
                    run=run,
                    model=str(r.get("model") or model),
                    task=str(r.get("task") or task),
                    domain=str(r.get("domain") or ""),
                    id=str(r["id"]),
                    prediction=pred if isinstance(pred, str) else None,
                    correct=r.get("correct") if isinstance(r.get("correct"), bool) else None,
                    confidence=conf,
                    latency_s=_finite(r.get("latency_s")),
                    prompt_tokens=r.get("prompt_tokens") if isinstance(r.get("prompt_tokens"), int) else None,
                    completion_tokens=r.get("completion_tokens")
                    if isinstance(r.get("completion_tokens"), int)
                    else None,
                    finish_reason=r.get("finish_reason") if isinstance(r.get("finish_reason"), str) else None,
                )
            )
        self.res.examples.extend(out)
        return out

    # ---------------------------------------------------------------- registry

    def jobs(self, experiment: str, refresh: bool) -> None:
        from orchestrator.core import monitor
        from orchestrator.core.registry import Registry

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
            started = t.started if t.started is not None else _finite(status.get("started"))
            ended = t.ended if t.ended is not None else _finite(status.get("ended"))
            wall = (ended - started) / 3600 if started is not None and ended is not None and ended >= started else None
            gpus = _gpus(scripts.get(t.job, ""), spec, t.stage)
            failed = t.state not in ("COMPLETED", "PENDING", "RUNNING", "REQUEUED")
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
                    file=_rel(paths.status_file(experiment, t.run), home_dir),
                )
            )


def _status(experiment: str, run: str) -> dict:
    try:
        d = json.loads(paths.status_file(experiment, run).read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


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


def _model_size(summary: dict) -> float | None:
    """Billions of parameters, from the run's model config when it says."""
    cfg = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    for holder in (cfg.get("model") if isinstance(cfg.get("model"), dict) else {}, cfg, summary):
        v = _finite(holder.get("params_b"))
        if v is not None:
            return v
    return None


def _metrics_from_examples(examples: list[Example]) -> dict[str, float | None]:
    judged = [e.correct for e in examples if e.correct is not None]
    return {"accuracy": sum(judged) / len(judged) if judged else None}


def _is_training_dir(d: Path) -> bool:
    if (d / paths.METRICS_FILE).exists():
        return True
    try:
        s = json.loads((d / paths.SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(s, dict) and "arm" in s


def _is_inference_dir(d: Path) -> bool:
    return any((d / f).exists() for f in (paths.PREDICTIONS_FILE, paths.RESULTS_FILE)) or (
        "__" in d.name and (d / paths.SUMMARY_FILE).exists()
    )


def collect(experiment: str, refresh: bool = False) -> Results:
    """Read every result file of `experiment` into one table. UserError when there is nothing at all
    (unknown experiment, or an experiment with neither result files nor jobs), naming where it looked."""
    exp_dir = paths.experiment_dir(experiment)
    reader = _Reader(experiment)
    registry_known = paths.registry_file().exists()
    if registry_known:
        reader.jobs(experiment, refresh)
        reader.jobs(paths.eval_experiment(experiment), refresh)  # eval-evolution registers its own
    if exp_dir.is_dir():
        for d in sorted(
            p for p in exp_dir.iterdir() if p.is_dir() and p.name not in SKIP_DIRS and not p.name.startswith(".")
        ):
            if _is_training_dir(d):
                reader.training(d)
            elif _is_inference_dir(d):
                reader.inference(d)
            for f in sorted(d.glob("eval/*/*.json")):  # logs/<exp>/<arm>/eval/<ckpt>/<task>.json
                reader.evaluation(f, d.name, f.parent.name)
        for f in sorted(paths.eval_dir(experiment).glob("*/*/*.json")):
            reader.evaluation(f, f.parent.parent.name, f.parent.name)
    res = reader.res
    if not exp_dir.is_dir() and not res.rows:
        raise UserError(
            f"unknown experiment {experiment!r}: no directory {exp_dir} and no jobs in "
            f"{paths.registry_file()}; `orchestrate list` shows the known ones"
        )
    if not any(r.source != "job" for r in res.rows) and not res.examples:
        jobs = len(res.of("job"))
        raise UserError(
            f"no results for experiment {experiment!r}: looked for training ({exp_dir}/<arm>/"
            f"{paths.METRICS_FILE}, {paths.SUMMARY_FILE}), evaluation ({paths.eval_dir(experiment)}/<arm>/"
            f"<checkpoint>/<task>.json) and inference ({exp_dir}/<model>__<task>/{paths.PREDICTIONS_FILE}) files"
            + (f"; {jobs} job(s) are registered: `orchestrate status {experiment}`" if jobs else "")
            + (f"; problems: {'; '.join(res.warnings)}" if res.warnings else "")
        )
    res.rows.sort(key=_row_order)
    return res


_SOURCE_ORDER = {"job": 0, "train_summary": 1, "train": 2, "eval": 3, "inference": 4}


def _row_order(r: Row) -> tuple:
    return (
        _SOURCE_ORDER.get(r.source, 9),
        r.arm,
        r.run,
        r.stage,
        r.epoch if r.epoch is not None else -1,
        r.checkpoint,
        r.domain,
        r.task,
        r.metric,
    )


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write by temp file + rename, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
