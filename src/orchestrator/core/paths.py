"""The one place that names every directory and file the orchestrator reads or writes.

Where things are (docs/architecture.md, "Projects"):

    built-ins      the specs (jobs/) and templates (templates/) that ship with the package: the
                   repository's top-level folders in a source checkout, copies under
                   orchestrator/_builtin/ in an installed wheel (setup.py puts them there)
    project        the user's directory: the nearest folder at or above the current one holding
                   `orchestrate.toml` (or a `jobs/` folder); its jobs/ and templates/ come before
                   the built-ins of the same name. A source checkout is its own project.
    home           ORCH_HOME, else the project's `home` setting (orchestrate.toml), else the project:
                   all state, never a folder inside the Python installation

Layout under home:

    logs/registry.sqlite                      experiment registry
    logs/<experiment>/<run>/                  one unit of work: its results and status.json
    logs/<experiment>/_jobs/<stage>/          one submission: scripts, scheduler logs, pickles
    logs/<experiment>/.submit.lock            serialises submissions of one experiment
    logs/<experiment>/<arm>/                  a training arm: metrics.jsonl, summary.json
    checkpoints/<experiment>/<arm>/epoch_<N>/ training checkpoints (with `latest`, `best`, `.pins/`)
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from orchestrator.core.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # .../orchestrator
_SOURCE_ROOT = PACKAGE_DIR.parent.parent  # src/orchestrator -> the repository, in a source checkout
SOURCE_CHECKOUT = (_SOURCE_ROOT / "pyproject.toml").is_file() and (_SOURCE_ROOT / "templates").is_dir()
BUILTIN_DIR = _SOURCE_ROOT if SOURCE_CHECKOUT else PACKAGE_DIR / "_builtin"
BUILTIN_JOBS = BUILTIN_DIR / "jobs"
BUILTIN_TEMPLATES = BUILTIN_DIR / "templates"
REPO_ROOT = _SOURCE_ROOT  # docs and tests of a source checkout
PROJECT_FILE = "orchestrate.toml"

STATUS_FILE = "status.json"


class NoProject(UserError):
    """No project directory and no ORCH_HOME: nowhere to keep state (exit 2, says how to make one)."""

    def __init__(self) -> None:
        super().__init__(
            f"no orchestrator project at or above {Path.cwd()}: create one with `orchestrate init DIR` "
            f"(or `orchestrate init` here), or set ORCH_HOME to the directory that holds logs/ and checkpoints/"
        )


def project_dir(start: Path | None = None) -> Path | None:
    """The nearest directory at or above `start` (the current one) with orchestrate.toml or jobs/."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / PROJECT_FILE).is_file() or (d / "jobs").is_dir():
            return d
    return None


def project_config(project: Path | None = None) -> dict[str, Any]:
    """The project's orchestrate.toml as a mapping ({} without one); a broken file is exit 2."""
    project = project or project_dir()
    f = project / PROJECT_FILE if project else None
    if f is None or not f.is_file():
        return {}
    try:
        return tomllib.loads(f.read_text())
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise UserError(f"{f}: cannot read it ({e}); fix the file or remove it") from None


def home() -> Path:
    """ORCH_HOME holds all state; else the project's `home` (relative to orchestrate.toml), else the
    project itself; a source checkout outside any project is its own home (as the clone always was)."""
    if os.environ.get("ORCH_HOME"):
        return Path(os.environ["ORCH_HOME"]).resolve()
    project = project_dir()
    if project is not None:
        configured = project_config(project).get("home")
        return (project / str(configured)).resolve() if configured else project
    if SOURCE_CHECKOUT:
        return _SOURCE_ROOT
    raise NoProject()


def jobs_dirs() -> list[Path]:
    """Where spec names are looked up, first match wins: ORCH_JOBS or the project's jobs/, then the
    built-in specs."""
    project = project_dir()
    first = Path(os.environ["ORCH_JOBS"]) if os.environ.get("ORCH_JOBS") else project / "jobs" if project else None
    dirs = [first] if first is not None else []
    return _unique([*dirs, BUILTIN_JOBS])


def templates_dirs() -> list[Path]:
    """jinja2 templates of the scripts sbatch receives: ORCH_TEMPLATES, the project's templates/,
    then the built-ins; a template of the same name found earlier wins."""
    project = project_dir()
    dirs = [Path(os.environ["ORCH_TEMPLATES"])] if os.environ.get("ORCH_TEMPLATES") else []
    if project is not None:
        dirs.append(project / "templates")
    return _unique([*dirs, BUILTIN_TEMPLATES])


def template_file(name: str) -> Path:
    """The template `name` as templates_dirs() finds it (the project's before the built-in)."""
    return next((d / name for d in templates_dirs() if (d / name).is_file()), BUILTIN_TEMPLATES / name)


def _unique(dirs: list[Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def logs_dir() -> Path:
    return home() / "logs"


def checkpoints_dir() -> Path:
    return home() / "checkpoints"


def registry_file() -> Path:
    return logs_dir() / "registry.sqlite"


def experiment_dir(experiment: str) -> Path:
    return logs_dir() / experiment


def run_dir(experiment: str, run: str) -> Path:
    return experiment_dir(experiment) / run


def status_file(experiment: str, run: str) -> Path:
    return run_dir(experiment, run) / STATUS_FILE


def stage_dir(experiment: str, stage: str) -> Path:
    """submitit's folder for one submission of a stage (one sbatch call)."""
    return experiment_dir(experiment) / "_jobs" / stage


def submit_lock(experiment: str) -> Path:
    return experiment_dir(experiment) / ".submit.lock"


# submitit names its per-job files itself (submitit.core.utils.JobPaths); these mirror it so that
# the rendered script, the monitor and `orchestrate logs` agree with what submitit writes.
def stdout_pattern(stage_folder: Path, array: bool) -> str:
    return str(stage_folder / ("%A_%a_%t_log.out" if array else "%j_%t_log.out"))


def stderr_pattern(stage_folder: Path, array: bool) -> str:
    return str(stage_folder / ("%A_%a_%t_log.err" if array else "%j_%t_log.err"))


def job_log(stage_folder: Path, job_id: str, task: int = 0, stream: str = "out") -> Path:
    """Log of one job or array task ("123" or "123_4"), rank `task`."""
    return stage_folder / f"{job_id}_{task}_log.{stream}"


def submission_file(stage_folder: Path, job_id: str) -> Path:
    return stage_folder / f"{job_id.split('_')[0]}_submission.sh"


# Inference: model configs, task configs and a run's result files (docs/architecture.md).
PREDICTIONS_FILE = "predictions.jsonl"
PROGRESS_FILE = ".progress.json"  # a run's timing and hardware, kept across resumed sessions
RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.json"


def models_dirs() -> list[Path]:
    """One YAML file per model: ORCH_MODELS, the project's jobs/models/, then the built-in ones."""
    dirs = [Path(os.environ["ORCH_MODELS"])] if os.environ.get("ORCH_MODELS") else []
    return _unique([*dirs, *(d / "models" for d in jobs_dirs())])


def tasks_dirs() -> list[Path]:
    """Task configs: your own (ORCH_TASKS, then jobs/tasks/) before the built-in ones."""
    dirs = [Path(os.environ["ORCH_TASKS"])] if os.environ.get("ORCH_TASKS") else []
    return [*dirs, *(d / "tasks" for d in jobs_dirs()), PACKAGE_DIR / "generation" / "tasks"]


def inference_run(model: str, task: str) -> str:
    """Run name of one (model, task) inference unit: logs/<exp>/<model>__<task>/."""
    return f"{model}__{task}"


def wandb_dir() -> Path:
    return logs_dir() / "wandb"


# Judge runs: the graded, tagged predictions and their summary (docs/architecture.md).
JUDGED_FILE = "judged.jsonl"
JUDGE_SUMMARY_FILE = "judge_summary.json"
TAGGED_LAYOUT_FILE = "tagged.json"  # the confidence-tagging workflow's layout (kinds/judge/layout.py)


def judge_server_log_prefix(stage_folder: Path) -> str:
    """Log of a judge model server started inside a job's allocation: this prefix + '<job id>.log'."""
    return str(stage_folder / "judge_server_")


def ray_temp_root() -> Path:
    """Where Ray keeps each job's (and each local run's) temp dir: short, since Ray's unix socket
    paths under it are limited to 107 characters; ORCH_RAY_TMP overrides it."""
    return Path(os.environ.get("ORCH_RAY_TMP", "/tmp"))


# Checkpoints (docs/architecture.md, "Checkpoints"; the contract is core/checkpoints.py):
#   checkpoints/<experiment>/<arm>/epoch_<N>/      HF files, trainer_state.pt, meta.json (last)
#   checkpoints/<experiment>/<arm>/latest, best    text files naming an epoch_<N> directory
#   checkpoints/<experiment>/<arm>/.epoch_<N>.*    a checkpoint being written, replaced or deleted
#   checkpoints/<experiment>/<arm>/.pins/, .lock   evaluations holding a checkpoint (retention skips it)
CHECKPOINT_META = "meta.json"
CHECKPOINT_STATE = "trainer_state.pt"
CHECKPOINT_LATEST = "latest"
CHECKPOINT_BEST = "best"
CHECKPOINT_NAME = re.compile(r"^epoch_(\d+)$")
CHECKPOINT_SCRATCH_GLOB = ".epoch_*"


def checkpoint_name(epoch: int) -> str:
    """The directory name of an epoch's checkpoint, also the <checkpoint> of its eval results."""
    return f"epoch_{epoch}"


def checkpoint_epoch(name: str) -> int | None:
    """The epoch a checkpoint directory name stands for, or None when it names none."""
    m = CHECKPOINT_NAME.match(name)
    return int(m.group(1)) if m else None


def experiment_checkpoints_dir(experiment: str) -> Path:
    """checkpoints/<experiment>/: one directory per arm."""
    return checkpoints_dir() / experiment


def arm_checkpoints_dir(experiment: str, arm: str) -> Path:
    """checkpoints/<experiment>/<arm>/: one epoch_<N>/ per saved epoch, `latest` and `best`."""
    return experiment_checkpoints_dir(experiment) / arm


def checkpoint_dir(experiment: str, arm: str, epoch: int) -> Path:
    return arm_checkpoints_dir(experiment, arm) / checkpoint_name(epoch)


def checkpoint_scratch(final: Path, purpose: str) -> Path:
    """Hidden sibling of a checkpoint directory ("tmp": being written, "old": being replaced),
    one per process; retention deletes what a killed writer left (CHECKPOINT_SCRATCH_GLOB)."""
    return final.parent / f".{final.name}.{purpose}-{os.getpid()}"


def checkpoint_lock(experiment: str, arm: str) -> Path:
    """Held while retention decides what to delete, and while an evaluation pins a checkpoint."""
    return arm_checkpoints_dir(experiment, arm) / ".lock"


def checkpoint_pin(experiment: str, arm: str, checkpoint: str, holder: str, run: str) -> Path:
    """checkpoints/<experiment>/<arm>/.pins/<checkpoint>/<holder>__<run>.json: unit `run` of
    experiment `holder` (an evaluation) still needs `checkpoint`; retention keeps it meanwhile."""
    return checkpoint_pins_dir(experiment, arm) / checkpoint / f"{holder}__{run}.json"


def checkpoint_pins_dir(experiment: str, arm: str) -> Path:
    return arm_checkpoints_dir(experiment, arm) / ".pins"


def latest_checkpoint_file(experiment: str, arm: str) -> Path:
    """Text file naming the newest complete checkpoint directory (replaced after it is written)."""
    return arm_checkpoints_dir(experiment, arm) / CHECKPOINT_LATEST


def best_checkpoint_file(experiment: str, arm: str) -> Path:
    """Text file naming the checkpoint with the best early-stopping metric (kept by retention)."""
    return arm_checkpoints_dir(experiment, arm) / CHECKPOINT_BEST


# The train kind's tiny preset: a first stage ("prepare") builds a model and synthetic data.
PREPARE_RUN = "prepare"


def prepare_dir(experiment: str) -> Path:
    """logs/<experiment>/prepare/: model/ and data/<domain>_<split>.parquet."""
    return run_dir(experiment, PREPARE_RUN)


def prepared_model(prepare_run_dir: Path) -> Path:
    return Path(prepare_run_dir) / "model"


def prepared_data(prepare_run_dir: Path, domain: str, split: str) -> Path:
    """A synthetic domain's verl parquet file; split is "train", "val" or "heldout"."""
    return Path(prepare_run_dir) / "data" / f"{domain}_{split}.parquet"


def suites_dirs() -> list[Path]:
    """Evaluation suites: your own (ORCH_SUITES, then jobs/suites/) before the built-in ones."""
    dirs = [Path(os.environ["ORCH_SUITES"])] if os.environ.get("ORCH_SUITES") else []
    return [*dirs, *(d / "suites" for d in jobs_dirs()), PACKAGE_DIR / "kinds" / "eval" / "suites"]


def eval_data_root() -> Path:
    """Where suite data files live when neither the suite nor the command names a root."""
    return Path(os.environ.get("ORCH_EVAL_DATA", home() / "data" / "eval"))


def eval_experiment(experiment: str) -> str:
    """The experiment that evaluates a training experiment's checkpoints (its own registry rows)."""
    return f"{experiment}-eval"


def eval_result(experiment: str, arm: str, checkpoint: str, task: str) -> Path:
    """logs/<experiment>/eval/<arm>/<checkpoint>/<task>.json (experiment = the training one)."""
    return experiment_dir(experiment) / "eval" / arm / checkpoint / f"{task}.json"


def eval_predictions(experiment: str, arm: str, checkpoint: str, task: str) -> Path:
    """logs/<experiment>/eval/<arm>/<checkpoint>/<task>.jsonl: the per-example records, appended
    per batch (what a killed evaluation resumes from); the result .json is written at the end."""
    return eval_result(experiment, arm, checkpoint, task).with_suffix(".jsonl")


def eval_run(arm: str, checkpoint: str, task: str) -> str:
    """Run name of one checkpoint × task unit of the eval experiment."""
    return f"{arm}__{checkpoint}__{task}"


# Training arm results and the experiment report (docs/architecture.md, docs/results-schema.md).
METRICS_FILE = "metrics.jsonl"


def eval_dir(experiment: str) -> Path:
    """logs/<experiment>/eval/: one <arm>/<checkpoint>/<task>.json per evaluated task."""
    return experiment_dir(experiment) / "eval"


def report_dir(experiment: str) -> Path:
    """logs/<experiment>/report/: report.md, its plots, and the results table (CSV/JSON)."""
    return experiment_dir(experiment) / "report"


# RAG (kinds/rag): indexes are shared by every experiment (keyed by a content hash), and each
# answering run writes the WattBot files beside the usual predictions/results/summary.
RAG_SUBMISSION_FILE = "submission.csv"
RAG_INDEX_INFO_FILE = "index.json"


def rag_index_dir(key: str) -> Path:
    """ORCH_HOME/indexes/<key>/: one (corpus, chunking, embedder) index, reused while unchanged."""
    return home() / "indexes" / key


def rag_run(model: str, config: str) -> str:
    """Run name of one model × retrieval configuration: logs/<exp>/<model>__<config>/."""
    return f"{model}__{config}"
