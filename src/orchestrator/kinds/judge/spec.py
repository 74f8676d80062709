"""The `judge` kind: grade predictions with an LLM judge (or a rule) and tag each response.

    # orchestrate submit judge-tagging --set inputs.experiment=my-inference --set num_workers=32
    kind: judge
    inputs: {experiment: my-inference}     # every run's predictions.jsonl; or files: [a.jsonl, ...]
    judge:
      type: llm                            # llm | exact | math (rules need no network)
      base_url: http://node1:8000/v1       # default: $ORCH_JUDGE_BASE_URL in the job
      model: Qwen/Qwen2.5-7B-Instruct      # default: $ORCH_JUDGE_MODEL
      api_key_env: OPENAI_API_KEY          # the NAME of the variable; the key stays in the environment
    num_workers: 16                        # requests in flight
    domains: {gsm8k: MATH}                 # task or domain name → tag (default: config.DEFAULT_DOMAINS)

One array task per predictions file (its entry point: `job.judge_run`, arguments `job.JudgeArgs`);
each writes logs/<experiment>/<run>/judged.jsonl (resumable) and judge_summary.json. Runs of the
inference experiment that are still pending or running are judged too: the array waits for them
(afterok), and is cancelled if one of them fails. With `judge.server`, the job first starts a vLLM
OpenAI server in its own allocation (templates/judge_vllm.sh.j2) and the judge talks to it on 127.0.0.1.

Planning reads files and the registry only (never the scheduler, never a secret): `orchestrate
render` works anywhere. What the job needs from the submitting shell (endpoint, model, key) and
predictions to judge are checked by `check_submit`, at `orchestrate submit`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.core import monitor, paths
from orchestrator.core.errors import SpecError
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.registry import Registry
from orchestrator.core.spec import ENV_NAME_RE, NAME_RE, BaseSpec, Strict
from orchestrator.kinds.judge.config import BASE_URL_ENV, DEFAULT_TAGS, MODEL_ENV, JudgeConfig
from orchestrator.kinds.judge.job import JudgeArgs

TAG_PATTERN = r"^[A-Z][A-Z0-9_]*$"
SECRET_KEYS = {"api_key", "key", "token", "openai_api_key", "secret", "password"}


class Inputs(Strict):
    """What to judge: an inference experiment's runs, or predictions files."""

    experiment: str | None = Field(None, pattern=NAME_RE)
    runs: list[str] | None = None  # only these runs of the experiment (default: all)
    files: list[str] | None = None  # absolute, or relative to the directory `orchestrate submit` runs in

    @model_validator(mode="after")
    def _one(self) -> Inputs:
        if (self.experiment is None) == (self.files is None):
            raise ValueError("give exactly one of inputs.experiment (an inference experiment) or inputs.files")
        if self.runs is not None and self.experiment is None:
            raise ValueError("inputs.runs selects runs of inputs.experiment; give the experiment too")
        if self.files is not None and not self.files:
            raise ValueError("inputs.files: list at least one predictions file")
        return self


class VllmServer(Strict):
    """A vLLM OpenAI-compatible server started inside the judge job's own allocation."""

    model: str  # a path or hub name vLLM loads
    port_base: int = Field(20000, ge=1024, le=60000)  # port = port_base + job id % 1000
    args: list[str] = Field(default_factory=list)  # extra api_server arguments, e.g. [--max-model-len, "4096"]
    startup_timeout_s: int = Field(900, ge=10)


class JudgeModel(Strict):
    type: Literal["llm", "exact", "math"] = "llm"
    base_url: str | None = Field(None, pattern=r"^https?://[A-Za-z0-9._~:/?#\[\]@%+=&-]+$")
    model: str | None = None
    api_key_env: str = Field("OPENAI_API_KEY", pattern=ENV_NAME_RE)
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(256, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    parse_attempts: int = Field(2, ge=1)
    prompt: str | None = None
    server: VllmServer | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for k in data:
                if str(k).lower() in SECRET_KEYS:
                    raise ValueError(
                        f"{k}: keys never go in specs (they would land in scripts, the registry and "
                        "logs); export the key in the submitting shell and name the variable in "
                        "judge.api_key_env"
                    )
        return data

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | None) -> str | None:
        if v is not None and "{prediction}" not in v:
            raise ValueError("the judge prompt must contain {prediction} (and usually {question} and {gold})")
        return v

    @model_validator(mode="after")
    def _server(self) -> JudgeModel:
        if self.server is not None:
            if self.type != "llm":
                raise ValueError("judge.server starts a model for an llm judge; remove it for type exact/math")
            if self.base_url is not None:
                raise ValueError(
                    "judge.base_url and judge.server exclude each other: with a server the judge "
                    "talks to it on 127.0.0.1"
                )
        return self


class JudgeSpec(BaseSpec):
    kind: str = "judge"
    inputs: Inputs
    judge: JudgeModel = Field(default_factory=JudgeModel)
    num_workers: int = Field(8, ge=1, le=1024)  # requests in flight (--set num_workers=32)
    flush_every: int = Field(16, ge=1)  # judged records per append + fsync
    domains: dict[str, str] = Field(default_factory=dict)  # task or record domain → tag
    tags: list[str] = Field(default_factory=lambda: list(DEFAULT_TAGS), min_length=1)
    tagged_layout: bool = False  # also write tagged.json in the confidence-tagging layout (kinds/judge/layout.py)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for t in v:
            if not re.match(TAG_PATTERN, t):
                raise ValueError(f"tag {t!r}: use upper-case letters, digits and _ (it becomes <CN_{t}>)")
        return v

    @model_validator(mode="after")
    def _domains(self) -> JudgeSpec:
        for task, domain in self.domains.items():
            if domain not in self.tags:
                raise ValueError(f"domains.{task}: {domain!r} is not one of tags {self.tags}; add it to tags")
        return self

    # ---------------------------------------------------------------- planning

    def judge_config(self) -> JudgeConfig:
        """What every unit is told (no key: only the name of its variable)."""
        j = self.judge
        return JudgeConfig(
            type=j.type,
            base_url=j.base_url,
            model=j.model or (j.server.model if j.server else None),
            api_key_env=j.api_key_env,
            key_required=j.server is None,
            temperature=j.temperature,
            max_tokens=j.max_tokens,
            timeout_s=j.timeout_s,
            max_attempts=j.max_attempts,
            backoff_base_s=j.backoff_base_s,
            backoff_max_s=j.backoff_max_s,
            parse_attempts=j.parse_attempts,
            prompt=j.prompt,
            num_workers=self.num_workers,
            flush_every=self.flush_every,
            domains=dict(self.domains),
            tags=tuple(self.tags),
            tagged_layout=self.tagged_layout,
        )

    def sources(self) -> tuple[list[tuple[str, Path]], list[str]]:
        """(run name, predictions file) per unit, and the runs of inputs.experiment that have not
        finished yet (the judge waits for them: afterok); SpecError for a named file or run that
        is not there."""
        shown = getattr(self, "_source", self.name)
        if self.inputs.files is not None:
            found, names = [], set()
            for i, f in enumerate(self.inputs.files):
                p = Path(f).expanduser()
                p = p if p.is_absolute() else Path.cwd() / p
                if not p.is_file():
                    raise SpecError(shown, f"inputs.files[{i}]: {f!r} is not a file ({p})")
                base = p.parent.name if p.name == paths.PREDICTIONS_FILE else p.stem
                name = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip("._-") or "predictions"
                name = name if name not in names else f"{name}-{i}"
                names.add(name)
                found.append((name, p.resolve()))
            return found, []
        return self._experiment_sources(shown)

    def _unfinished_runs(self, exp: str, refresh: bool = False) -> list[str]:
        """Runs of `exp` that declare predictions and are not final: as the registry last recorded
        them (planning never asks the scheduler), or brought up to date first (`refresh`, at submit)."""
        if not paths.registry_file().exists():
            return []
        reg = Registry()
        try:
            tasks = monitor.refresh(reg, exp) if refresh else reg.tasks(exp)
            return sorted({t.run for t in tasks if not t.final and paths.PREDICTIONS_FILE in t.outputs})
        finally:
            reg.close()

    def _experiment_sources(self, shown: str, refresh: bool = False) -> tuple[list[tuple[str, Path]], list[str]]:
        """An experiment that has produced nothing yet plans no unit (render still shows the
        script); `check_submit` refuses to submit that."""
        exp = self.inputs.experiment
        assert exp is not None
        exp_dir = paths.experiment_dir(exp)
        pending = self._unfinished_runs(exp, refresh)
        runs = sorted({p.parent.name for p in exp_dir.glob(f"*/{paths.PREDICTIONS_FILE}")} | set(pending))
        if self.inputs.runs is not None and runs:
            missing = [r for r in self.inputs.runs if r not in runs]
            if missing:
                raise SpecError(
                    shown,
                    f"inputs.runs: no {paths.PREDICTIONS_FILE} for {', '.join(missing)} in "
                    f"{exp_dir} (runs with predictions: {', '.join(runs) or 'none'})",
                )
            runs = [r for r in runs if r in self.inputs.runs]
        return [(r, exp_dir / r / paths.PREDICTIONS_FILE) for r in runs], [r for r in pending if r in runs]

    def check_submit(self) -> None:
        """What the job will need from the world, checked at submit only (render and --dry-run stay
        pure): the endpoint, model and key in this shell (the job inherits its environment), and
        predictions to judge (the input experiment's runs, brought up to date with the scheduler)."""
        j, shown, problems = self.judge, getattr(self, "_source", self.name), []
        if j.type == "llm" and j.server is None:
            if j.base_url is None and not os.environ.get(BASE_URL_ENV):
                problems.append(
                    f"judge.base_url: not set, and ${BASE_URL_ENV} is not exported either; give the "
                    "endpoint (e.g. http://node1:8000/v1) or add judge.server to start one"
                )
            if j.model is None and not os.environ.get(MODEL_ENV):
                problems.append(f"judge.model: not set, and ${MODEL_ENV} is not exported either; name the judge model")
            if not os.environ.get(j.api_key_env):
                problems.append(
                    f"judge.api_key_env: ${j.api_key_env} is not set in this shell; export it before "
                    "submitting (the job inherits it; it is never written down)"
                )
        if self.inputs.experiment is not None:
            exp = self.inputs.experiment
            chosen = self.inputs.runs
            recorded = [r for r in self._unfinished_runs(exp) if chosen is None or r in chosen]  # what the plan saw
            sources, pending = self._experiment_sources(shown, refresh=True)
            ended = [
                r
                for r in recorded
                if r not in pending and not (paths.run_dir(exp, r) / paths.PREDICTIONS_FILE).exists()
            ]
            if ended:
                problems.append(
                    f"inputs.experiment: run(s) {', '.join(ended)} of {exp!r} ended without "
                    f"{paths.PREDICTIONS_FILE} (`orchestrate status {exp}` says why): resubmit them, "
                    "or judge the others with inputs.runs"
                )
            if not sources:
                problems.append(
                    f"inputs.experiment: no {paths.PREDICTIONS_FILE} under "
                    f"{paths.experiment_dir(self.inputs.experiment)} and no run of it pending or running: "
                    f"run the inference experiment {self.inputs.experiment!r} first (or check ORCH_HOME)"
                )
        if problems:
            raise SpecError(shown, problems)

    def plan(self) -> list[Stage]:
        config = self.judge_config()
        sources, pending = self.sources()
        units = tuple(
            Unit(
                run=run,
                entry="orchestrator.kinds.judge.job:judge_run",
                args=JudgeArgs(predictions=str(path), config=config),
                outputs=(paths.JUDGED_FILE, paths.JUDGE_SUMMARY_FILE),
            )
            for run, path in sources
        )
        template, template_vars = "sbatch.sh.j2", {}
        server = self.judge.server
        if server is not None:
            template = "judge_vllm.sh.j2"
            template_vars = {
                "server_model": server.model,
                "served_name": config.model,
                "port_base": server.port_base,
                "server_args": list(server.args),
                "startup_timeout_s": server.startup_timeout_s,
                "server_log_prefix": paths.judge_server_log_prefix(paths.stage_dir(self.name, "judge")),
            }
        # Checkpointable: at the time limit or on preemption submitit requeues the unit, which
        # resumes from its own judged.jsonl (judging is idempotent per id).
        # Inference runs still going: the judge array waits for them (afterok; if one fails the
        # judge is cancelled, never run on a partial file).
        after_runs = tuple(f"{self.inputs.experiment}/{r}" for r in pending)
        return [
            Stage(
                name="judge",
                resources=self.resources,
                env=self.env,
                units=units,
                array_parallelism=self.array_parallelism,
                checkpointable=True,
                after_runs=after_runs,
                template=template,
                template_vars=template_vars,
            )
        ]
