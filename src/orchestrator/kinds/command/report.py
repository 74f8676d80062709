"""The `command` kind's part of `orchestrate report`: what each unit left in its run directory.

A command has no metrics of its own; the report's overview already lists its jobs (state, exit
code, node, time), and this section adds the files each unit wrote, so that `orchestrate report`
of a pipeline of commands says what it produced."""

from __future__ import annotations

from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.kinds import Section
from orchestrator.reporting.table import Row, relative


def read(reader, run_dir: Path) -> bool:
    """Claims a run directory (one with a status file) that holds files: one row per file."""
    if not (run_dir / paths.STATUS_FILE).is_file():
        return False
    files = sorted(
        p for p in run_dir.iterdir() if p.is_file() and p.name != paths.STATUS_FILE and not p.name.startswith(".")
    )
    for f in files:
        size = float(f.stat().st_size)
        reader.res.rows.append(
            Row("command", reader.exp, run=run_dir.name, metric="bytes", value=size, detail=f.name, file=relative(f))
        )
    return bool(files)


def sections(res, options) -> list[Section]:
    outputs = [{"run": r.run, "file": r.detail, "bytes": r.value, "path": r.file} for r in res.of("command")]
    if not outputs:
        return []
    return [Section({"command_outputs": outputs}, Path(__file__).with_name("report.md.j2"), order=80)]
