"""Pure rendering: a planned stage → the exact text sbatch receives (templates/sbatch.sh.j2)."""

from __future__ import annotations

import re
import shlex
import sys
from functools import lru_cache
from pathlib import Path

import jinja2

from orchestrator.core import paths
from orchestrator.core.errors import UserError
from orchestrator.core.plan import Stage

# Generic resource names → sbatch flags (one table, as submitit keeps it).
SBATCH_FLAGS = {
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "nodes": "nodes",
    "tasks_per_node": "ntasks-per-node",
    "cpus_per_task": "cpus-per-task",
    "gpus_per_node": "gpus-per-node",
    "mem": "mem",
    "time": "time",
    "constraint": "constraint",
}
SIGNAL_DELAY_S = 120  # checkpointable jobs get USR2 this long before their time limit
_DIRECTIVE_SAFE = re.compile(r"^[A-Za-z0-9_.,:=+@%/\[\]*&|!-]*$")


def _directive(flag: str, value: object) -> str:
    """One `#SBATCH` option. sbatch parses these lines itself (no shell), so values are refused
    rather than quoted when they hold anything beyond a conservative character set."""
    if value is True:
        return f"--{flag}"
    text = str(value)
    if not _DIRECTIVE_SAFE.match(text):
        raise UserError(
            f"sbatch option --{flag}={text!r} contains characters sbatch cannot take unquoted "
            "(spaces, quotes, $, ;); if it is a path, choose an ORCH_HOME without them"
        )
    return f"--{flag}={text}"


@lru_cache(maxsize=4)
def _environment(templates: tuple[Path, ...]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(t) for t in templates]),  # the first one holding a name wins
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env


def python_for(stage: Stage) -> str:
    if stage.env.python:
        return stage.env.python
    if stage.env.venv:
        return str(Path(stage.env.venv) / "bin" / "python")
    return sys.executable


def directives(experiment: str, stage: Stage, n_units: int, folder: Path) -> list[str]:
    r = stage.resources
    array = n_units > 1
    opts: list[tuple[str, object]] = [("job-name", f"{experiment}.{stage.name}")]
    for field, flag in SBATCH_FLAGS.items():
        value = getattr(r, field)
        if value is not None and not (field == "gpus_per_node" and value == 0):
            opts.append((flag, value))
    if array:
        opts.append(("array", f"0-{n_units - 1}%{min(n_units, stage.array_parallelism)}"))
    opts.append(("output", paths.stdout_pattern(folder, array).replace("%t", "0")))
    opts.append(("error", paths.stderr_pattern(folder, array).replace("%t", "0")))
    opts.append(("open-mode", "append"))
    if stage.checkpointable:
        opts.append(("signal", f"USR2@{SIGNAL_DELAY_S}"))
    # On a node failure SLURM requeues a job (when the cluster allows it): right for units that
    # resume from their checkpoint or predictions, wrong for a command that may not be idempotent.
    opts.append(("requeue", True) if stage.checkpointable else ("no-requeue", True))
    if stage.after or stage.after_runs:
        # a failed dependency, in this experiment or another, cancels the job: it never hangs
        opts.append(("kill-on-invalid-dep", "yes"))
    for flag, value in sorted(r.sbatch.items()):
        if value is not False:
            opts.append((flag, value))
    return [_directive(flag, value) for flag, value in opts]


def render_stage(experiment: str, stage: Stage, n_units: int | None = None, source: str = "-") -> str:
    """The sbatch script for `n_units` units of `stage` (default: all). Pure: same input, same text."""
    n = len(stage.units) if n_units is None else n_units
    folder = paths.stage_dir(experiment, stage.name)
    array = n > 1
    template = stage.template
    try:
        tpl = _environment(tuple(paths.templates_dirs())).get_template(template)
    except jinja2.TemplateNotFound:
        where = ", ".join(str(d) for d in paths.templates_dirs())
        raise UserError(f"template {template!r} not found in {where} (ORCH_TEMPLATES)") from None
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"template {e.filename or template}, line {e.lineno}: {e.message}") from None
    variables = dict(
        experiment=experiment,
        stage=stage.name,
        n_units=n,
        source=Path(source).name if source != "-" else "-",
        directives=directives(experiment, stage, n, folder),
        modules=stage.env.modules,
        venv=stage.env.venv,
        conda=stage.env.conda,
        env_vars=sorted((k, _env_value(v)) for k, v in stage.env.vars.items()),
        python=python_for(stage),
        folder=str(folder),
        stdout=paths.stdout_pattern(folder, array),
        stderr=paths.stderr_pattern(folder, array),
        **stage.template_vars,
    )
    try:
        return tpl.render(**variables)
    except jinja2.UndefinedError as e:
        raise UserError(
            f"template {tpl.filename}: {e.message}: it uses a variable the renderer does not "
            f"provide ({', '.join(variables)}); fix the template"
        ) from None


def _env_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"  # as written in the YAML
    return str(v)
