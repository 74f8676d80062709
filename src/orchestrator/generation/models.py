"""Model configs: one YAML file per model in jobs/models/ (adding a model is adding a file).

    # jobs/models/llama-3.1-8b.yaml
    path: meta-llama/Llama-3.1-8B-Instruct     # hub id or a local directory
    family: llama
    params_b: 8.0
    dtype: bfloat16
    quantization: none                         # none | 8bit | 4bit (bitsandbytes) | a vLLM method (awq, gptq, fp8...)
    tensor_parallel_size: 1
    max_length: 8192
    generation: {max_new_tokens: 256, temperature: 0.0}

The memory estimate (params × bytes per parameter + a KV-cache/activation margin) decides how
many GPUs a job asks for; `fit()` says whether a model fits the GPUs a sweep may use, and why not.
Pure pydantic + yaml: no torch here, so planning and rendering stay light.

`quantization`: `8bit` / `4bit` quantize while loading with bitsandbytes (backend transformers);
any other name is the method of a pre-quantized checkpoint that vLLM loads (`awq`, `gptq`, `fp8`,
`compressed-tensors`, ...). Which methods exist is vLLM's to say: `orchestrate submit` checks the
name against the installed vLLM (backends/vllm.py `check_quantization`), never a list of ours.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.core import paths
from orchestrator.core.errors import SpecError
from orchestrator.generation import backends

BYTES_PER_PARAM = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "auto": 2.0}
BNB_QUANTIZATION = ("8bit", "4bit")  # bitsandbytes, quantized while loading (transformers backend)
# Bytes per weight for the memory estimate. Pre-quantized methods at their usual width (AWQ and
# GPTQ checkpoints are 4-bit, FP8 8-bit); any other method is estimated at the dtype's width.
QUANT_BYTES = {"8bit": 1.0, "4bit": 0.5, "awq": 0.5, "awq_marlin": 0.5, "gptq": 0.5, "gptq_marlin": 0.5, "fp8": 1.0}


class GenerationDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()


class ApiEndpoint(BaseModel):
    """An OpenAI-compatible endpoint (OpenRouter, OpenAI, a vLLM server) for a remote backend (`openai`).
    The key is read in the job from the variable `api_key_env` names; it is never in a config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1)  # e.g. https://openrouter.ai/api/v1
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    key_required: bool = True  # False: a server of our own that asks for none
    concurrency: int = Field(8, ge=1)  # requests in flight at once
    max_attempts: int = Field(6, ge=1)  # per request, on 429/5xx/connection errors
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(120.0, gt=0)


class Price(BaseModel):
    """USD per million tokens (a local model's price is 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


class ModelConfig(BaseModel):
    """One model. Only `name` and `path` are required: `ModelConfig(name="epoch_3", path="/x/epoch_3")`."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    path: str = Field(min_length=1)  # local directory or hub id
    family: str = ""
    params_b: float | None = Field(None, gt=0)  # billions of parameters; None → estimated from disk or unknown
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    # none | 8bit | 4bit (bitsandbytes) | a vLLM method for a pre-quantized checkpoint (checked at submit)
    quantization: str = Field("none", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    tensor_parallel_size: int = Field(1, ge=1)
    max_length: int = Field(4096, ge=1)
    generation: GenerationDefaults = Field(default_factory=GenerationDefaults)
    chat_template: bool = True  # wrap prompts with the tokenizer's chat template when it has one
    backend: str = backends.DEFAULT  # a registered backend (generation/backends/__init__.py)
    api: ApiEndpoint | None = None  # remote backend: where and how to call; `path` is the API's model id
    price: Price = Field(default_factory=Price)
    trust_remote_code: bool = False
    kv_margin: float = Field(0.2, ge=0.0)  # fraction of weight memory kept for KV cache + activations
    phase: int | None = None  # sweep grouping (e.g. size phase 1/2/3); informational
    # `tiny`: when `path` does not exist, the job builds the tiny test model there (demos, tests)
    build: Literal["tiny"] | None = None

    @property
    def bytes_per_param(self) -> float:
        if self.quantization in QUANT_BYTES:
            return QUANT_BYTES[self.quantization]
        return BYTES_PER_PARAM[self.dtype]

    def memory_gb(self) -> float | None:
        """Estimated GPU memory (GB): weights + kv_margin × weights + 1 GB (CUDA context). None
        when the parameter count is unknown."""
        if self.params_b is None:
            return None
        weights = self.params_b * self.bytes_per_param  # 1e9 params × bytes = GB
        return weights * (1.0 + self.kv_margin) + 1.0

    _backend = field_validator("backend")(backends.check_backend)

    @model_validator(mode="after")
    def _api(self) -> ModelConfig:
        if self.remote and self.api is None:
            raise ValueError(f"backend {self.backend} needs `api: {{base_url: ..., api_key_env: ...}}`")
        return self

    @model_validator(mode="after")
    def _quantization(self) -> ModelConfig:
        # transformers quantizes with bitsandbytes only; other names are vLLM's, checked at submit
        if self.backend == "transformers" and self.quantization not in ("none", *BNB_QUANTIZATION):
            raise ValueError(
                f"quantization {self.quantization!r}: backend transformers takes none, 8bit or 4bit (bitsandbytes); "
                "a pre-quantized checkpoint's method (awq, gptq, fp8, ...) needs backend: vllm, or quantization: "
                "none (transformers then reads the checkpoint's own quantization_config)"
            )
        return self

    @property
    def remote(self) -> bool:
        return backends.is_remote(self.backend)

    def gpus_needed(self, gpu_memory_gb: float) -> int:
        """GPUs for one job: enough memory for the estimate, at least tensor_parallel_size (an
        API model: none)."""
        if self.remote:
            return 0
        need = self.memory_gb()
        by_memory = 1 if need is None else max(1, math.ceil(need / gpu_memory_gb))
        return max(self.tensor_parallel_size, by_memory)

    def fit(self, gpu_memory_gb: float, max_gpus: int) -> tuple[int, str | None]:
        """(GPUs needed, None) when it fits, else (GPUs needed, the reason it does not)."""
        n = self.gpus_needed(gpu_memory_gb)
        if n > max_gpus:
            need = self.memory_gb()
            est = f"~{need:.0f} GB" if need is not None else "unknown memory"
            return n, (
                f"model {self.name}: {est} ({self.params_b}B params × {self.bytes_per_param:g} bytes, "
                f"{self.quantization} quantization, tensor_parallel_size {self.tensor_parallel_size}) "
                f"needs {n} GPUs of {gpu_memory_gb:g} GB; at most {max_gpus} allowed"
            )
        return n, None


def models_dirs() -> list[Path]:
    return paths.models_dirs()


def _format(err: ValidationError) -> list[str]:
    return [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in err.errors()]


def model_from_dict(data: dict[str, Any], shown: str) -> ModelConfig:
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as e:
        raise SpecError(shown, _format(e)) from None


def load_model(ref: str | dict[str, Any], directory: Path | None = None) -> ModelConfig:
    """A model by name (jobs/models/<name>.yaml), by YAML path, or an inline mapping.

    Inline mappings may name a file with `config:` and override its keys:
    `{config: llama-3.1-8b, quantization: 8bit}`. Names are looked up in `directory`, else in the
    project's jobs/models/ and then the built-in ones (paths.models_dirs).
    """
    if isinstance(ref, dict):
        data = dict(ref)
        base = data.pop("config", None)
        if base is not None:
            merged = load_model(str(base), directory).model_dump(mode="json")
            merged.update(data)
            if "name" not in data:
                merged["name"] = merged["name"] if "name" in merged else str(base)
            data = merged
        return model_from_dict(data, f"model {data.get('name', '(inline)')}")
    dirs = [directory] if directory is not None else models_dirs()
    if not isinstance(ref, str) or not ref:
        raise SpecError("models", f"a model is a name in {dirs[0]}, a YAML path or a mapping, not {ref!r}")
    path = Path(ref)
    if path.suffix not in (".yaml", ".yml"):
        path = next((d / f"{ref}.yaml" for d in dirs if (d / f"{ref}.yaml").is_file()), dirs[0] / f"{ref}.yaml")
    if not path.is_file():
        known = ", ".join(list_models(directory)) or "none"
        raise SpecError(ref, f"no model config {path} (known models: {known}); add a YAML file there")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpecError(str(path), f"YAML syntax error: {e}") from None
    if not isinstance(data, dict):
        raise SpecError(str(path), "a model config is a mapping of keys")
    data.setdefault("name", path.stem)
    if isinstance(data.get("path"), str):  # "{home}/models/tiny": a directory under ORCH_HOME
        data["path"] = data["path"].replace("{home}", str(paths.home()))
    return model_from_dict(data, str(path))


def list_models(directory: Path | None = None) -> list[str]:
    dirs = [directory] if directory is not None else models_dirs()
    return sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})


def ensure_built(model: ModelConfig) -> None:
    """Build a `build: tiny` model at its path if it is not there yet (atomic: build aside, rename)."""
    target = Path(model.path)
    if model.build is None or (target / "config.json").exists():
        return
    import os
    import shutil

    from orchestrator.generation.tiny import build_model

    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    build_model(tmp)
    try:
        os.replace(tmp, target)  # another job may have won the race: theirs is as good
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def disk_size_gb(path: str) -> float | None:
    """Size of a local model directory (GB); None for a hub id not on disk."""
    p = Path(path)
    if not p.exists():
        return None
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e9


def safe_name(text: str) -> str:
    """A run-name part from a model/task name ("Qwen/Qwen2.5-1.5B" → "Qwen_Qwen2.5-1.5B")."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).strip("_") or "x"
