"""The vLLM backend (optional extra `vllm`, GPU only), written against vLLM's documented API:

    LLM(model=..., tensor_parallel_size=..., dtype=..., quantization=..., max_model_len=..., seed=...)
    SamplingParams(max_tokens=..., temperature=..., top_p=..., stop=[...], logprobs=1, seed=...)
    llm.generate(prompts, sampling_params) -> [RequestOutput(prompt_token_ids, outputs=[CompletionOutput(
        text, token_ids, logprobs=[{token_id: Logprob(logprob=...)}], finish_reason)])]

vllm is imported in the constructor only, so nothing else pays for it. 4-/8-bit models use
vLLM's in-flight bitsandbytes quantization (`quantization="bitsandbytes"`). Not exercised by
the test suite (no GPU there); the transformers backend is the tested path.
"""

from __future__ import annotations

from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.generation.backends.base import Generation, Request, as_user_turn
from orchestrator.generation.models import ModelConfig


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: ModelConfig, gpu_memory_utilization: float = 0.9, **options: Any):
        try:
            from vllm import LLM
        except ImportError as e:
            raise UserError(
                f"model {model.name}: backend vllm needs the optional extra: pip install 'orchestrator[vllm]' ({e})"
            ) from None
        options.pop("batch_size", None)  # vLLM schedules its own batches
        options.pop("device", None)
        kwargs: dict[str, Any] = dict(
            model=model.path,
            tensor_parallel_size=model.tensor_parallel_size,
            dtype=model.dtype,
            max_model_len=model.max_length,
            gpu_memory_utilization=gpu_memory_utilization,
            trust_remote_code=model.trust_remote_code,
            **options,
        )
        if model.quantization != "none":
            kwargs["quantization"] = "bitsandbytes"  # in-flight 4/8-bit, as with transformers
        self.model_config = model
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def apply_chat_template(self, prompt: str) -> str:
        return as_user_turn(self.tokenizer, prompt, self.model_config.chat_template)

    def generate(self, requests: list[Request]) -> list[Generation]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                max_tokens=r.max_new_tokens,
                temperature=r.temperature,
                top_p=r.top_p,
                stop=list(r.stop) or None,
                logprobs=1,
                seed=r.seed,
            )
            for r in requests
        ]
        outputs = self.llm.generate([r.prompt for r in requests], params, use_tqdm=False)
        gens = []
        for r, out in zip(requests, outputs):
            c = out.outputs[0]
            # each position's dict holds the sampled token (plus the top-1 when they differ)
            lps = [pos[tid].logprob for tid, pos in zip(c.token_ids, c.logprobs or [])]
            gens.append(
                Generation(
                    id=r.id,
                    text=c.text,
                    token_logprobs=lps,
                    prompt_tokens=len(out.prompt_token_ids),
                    completion_tokens=len(c.token_ids),
                    finish_reason="stop" if c.finish_reason == "stop" else "length",
                )
            )
        return gens

    def close(self) -> None:
        self.llm = None
