"""What every kind's reader shares: the table being filled, file access that warns instead of
failing (a missing or malformed file is a warning, never fatal; a file of a newer or unknown
schema_version is an error naming it: core.records.check_version), and the registry's jobs (one row
per run). Each kind reads its own result files (`Kind.read`, in `kinds/<kind>/report.py`)."""

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
from orchestrator.reporting.table import Results, Row, finite, relative


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
