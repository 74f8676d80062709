"""The transformers backend: batched, left-padded `generate` with per-token logprobs.

    backend = load_backend("transformers", ModelConfig(name="m", path="/x/m"), batch_size=16)
    gens = backend.generate([Request(id="0", prompt="Q: 2+2?\nA:", max_new_tokens=8, stop=("\n",))])

On GPU: `device_map="auto"` spreads a model over the visible GPUs (the job's allocation), so a
model larger than one GPU runs layer by layer across them. On CPU (tests) it runs in float32.
8-/4-bit models (`quantization: 8bit | 4bit`) load through bitsandbytes (the extra
`orchestrator[quant]`) on either: bitsandbytes >= 0.45 has CPU kernels (with accelerate); on GPUs
the quantized layers are placed by the same `device_map="auto"`.
Requests with the same sampling settings are batched together; outputs come back in order.
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.generation.backends.base import Generation, Request, as_user_turn
from orchestrator.generation.models import BNB_QUANTIZATION, ModelConfig


def _require_bitsandbytes(model: ModelConfig) -> None:
    import importlib.util

    if model.quantization not in BNB_QUANTIZATION:  # a pre-quantized checkpoint's method: vLLM's
        raise UserError(
            f"model {model.name}: quantization {model.quantization} is not a bitsandbytes width (8bit, 4bit); "
            "run it with backend: vllm, or set quantization: none (transformers reads the checkpoint's own)"
        )

    missing = [m for m in ("bitsandbytes", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"model {model.name}: {model.quantization} quantization needs {' and '.join(missing)}: "
            "pip install 'orchestrator[quant]'"
        )


class TransformersBackend:
    name = "transformers"

    def __init__(
        self,
        model: ModelConfig,
        batch_size: int = 8,
        device: str = "auto",
        add_special_tokens: bool = True,
        **options: Any,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if options:
            raise UserError(
                f"transformers backend: unknown options {sorted(options)} "
                "(known: batch_size, device, add_special_tokens)"
            )
        self.model_config = model
        self.batch_size = max(1, int(batch_size))
        self.add_special_tokens = add_special_tokens
        cuda = torch.cuda.is_available()
        if device == "auto":
            device = "cuda" if cuda else "cpu"
        if device.startswith("cuda") and not cuda:
            raise UserError(f"model {model.name}: device {device!r} asked for but no CUDA GPU is visible")
        started = time.perf_counter()
        tok = AutoTokenizer.from_pretrained(model.path, padding_side="left", trust_remote_code=model.trust_remote_code)
        if tok.pad_token is None:  # many causal LMs ship without one; eos pads (masked anyway)
            tok.pad_token = tok.eos_token
        kwargs: dict[str, Any] = {"trust_remote_code": model.trust_remote_code}
        if device == "cpu":
            kwargs["dtype"] = torch.float32  # half precision on CPU is slow and lossy
        else:
            kwargs["dtype"] = "auto" if model.dtype == "auto" else getattr(torch, model.dtype)
            kwargs["device_map"] = "auto" if device == "cuda" else device
        if model.quantization != "none":
            from transformers import BitsAndBytesConfig

            _require_bitsandbytes(model)
            if device == "cpu":
                kwargs["device_map"] = "cpu"  # bitsandbytes places the quantized weights itself
                compute = torch.float32
            else:
                compute = torch.bfloat16 if model.dtype in ("auto", "bfloat16") else getattr(torch, model.dtype)
            kwargs["quantization_config"] = (
                BitsAndBytesConfig(load_in_8bit=True)
                if model.quantization == "8bit"
                else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
            )
        lm = AutoModelForCausalLM.from_pretrained(model.path, **kwargs)
        if device == "cpu" and model.quantization == "none":  # quantized models refuse .to()
            lm = lm.to("cpu")
        lm.eval()
        self.tokenizer, self.model, self.device = tok, lm, device
        self.load_time_s = time.perf_counter() - started
        self._end_ids = {i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None}
        gen_eos = getattr(lm.generation_config, "eos_token_id", None)
        self._end_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])

    # ------------------------------------------------------------------ contract

    def apply_chat_template(self, prompt: str) -> str:
        return as_user_turn(self.tokenizer, prompt, self.model_config.chat_template)

    def generate(self, requests: list[Request]) -> list[Generation]:
        """One Generation per Request, in order. Requests sharing sampling settings share batches."""
        out: dict[int, Generation] = {}
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.max_new_tokens, r.temperature, r.top_p, r.stop, r.seed), []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                for i, g in zip(chunk, self._generate_batch([requests[i] for i in chunk])):
                    out[i] = g
        return [out[i] for i in range(len(requests))]

    def close(self) -> None:
        import gc

        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ internals

    def _generate_batch(self, batch: list[Request]) -> list[Generation]:
        import torch

        r0 = batch[0]
        tok = self.tokenizer
        enc = tok(
            [r.prompt for r in batch], return_tensors="pt", padding=True, add_special_tokens=self.add_special_tokens
        )
        input_len = enc["input_ids"].shape[1]
        budget = self.model_config.max_length - input_len
        if budget < 1:
            raise UserError(
                f"model {self.model_config.name}: a prompt of {input_len} tokens leaves no room in "
                f"max_length {self.model_config.max_length}; shorten the prompt or raise max_length"
            )
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = dict(
            max_new_tokens=min(r0.max_new_tokens, budget),
            return_dict_in_generate=True,
            output_logits=True,
            pad_token_id=tok.pad_token_id,
        )
        if r0.temperature > 0:
            kwargs.update(do_sample=True, temperature=r0.temperature, top_p=r0.top_p)
            if r0.seed is not None:
                torch.manual_seed(r0.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if r0.stop:
            kwargs.update(stop_strings=list(r0.stop), tokenizer=tok)  # stop early; cut exactly below
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new = out.sequences[:, input_len:]
        # Model's own log-probabilities (raw logits, before temperature/top-p) of the chosen tokens.
        logits = torch.stack(out.logits, dim=1).float()  # (batch, steps, vocab)
        chosen = torch.log_softmax(logits, dim=-1).gather(-1, new[:, : logits.shape[1], None]).squeeze(-1)
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        return [self._finish(r, new[b].tolist(), chosen[b].tolist(), int(prompt_lens[b])) for b, r in enumerate(batch)]

    def _finish(self, req: Request, ids: list[int], logprobs: list[float], prompt_tokens: int) -> Generation:
        tok = self.tokenizer
        finish = "length"
        n = len(ids)
        for k, t in enumerate(ids):  # end of sequence: keep the EOS token (its probability counts)
            if t in self._end_ids:
                n, finish = k + 1, "stop"
                break
        body = [t for t in ids[:n] if t not in self._end_ids]
        text = tok.decode(body, skip_special_tokens=True)
        cut = min((text.find(s) for s in req.stop if s and s in text), default=-1)
        if cut >= 0:
            stop_end = min(text.find(s) + len(s) for s in req.stop if s and s in text and text.find(s) == cut)
            # the fewest tokens whose text covers the stop string: those are the generated ones
            lo, hi = 1, len(body)
            while lo < hi:
                mid = (lo + hi) // 2
                if len(tok.decode(body[:mid], skip_special_tokens=True)) >= stop_end:
                    hi = mid
                else:
                    lo = mid + 1
            n, text, finish = lo, text[:cut], "stop"
        return Generation(
            id=req.id,
            text=text,
            token_logprobs=[float(x) for x in logprobs[:n]],
            prompt_tokens=prompt_tokens,
            completion_tokens=n,
            finish_reason=finish,
        )
