"""Rollouts: sample responses with a copy of the policy and score them with the domain rewards.

`RolloutWorker` is a plain class (transformers; `rollout_vllm.VLLMRolloutWorker` is the vLLM one
with the same interface); `Rollouts` runs N of them as Ray actors (N = rollout.workers) spread
over the allocation's nodes (ray_cluster.py), or one in this process when N is 0. The learner
pushes its new weights to every worker after each update, so samples come from the current policy.

Sampling is a pure function of (weights, requests, seed): each chunk of requests draws from its
own torch.Generator, so a resumed run samples exactly what an uninterrupted one would.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from orchestrator.core.refs import load_ref
from orchestrator.generation import backends
from orchestrator.kinds.train.config import ROLLOUT_WORKERS, TrainConfig
from orchestrator.kinds.train.ray_cluster import connect, spread
from orchestrator.kinds.train.samples import Request, Sample
from orchestrator.scoring.rewards import load_reward


@torch.no_grad()
def sample_tokens(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Autoregressive sampling with a KV cache. input_ids/attention_mask [B, L], left-padded.

    Returns (tokens [B, T], mask [B, T]) right-padded with pad_id; mask is 1 up to and including
    EOS. Position ids count real tokens only, exactly as the learner computes them.
    """
    positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True)
    cache, logits = out.past_key_values, out.logits[:, -1]
    next_pos = positions[:, -1:] + 1
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    tokens, masks = [], []
    for t in range(max_new_tokens):
        if greedy:
            tok = logits.argmax(-1)
        else:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            tok = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        tokens.append(tok)
        masks.append(~done)
        done = done | (tok == eos_id)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=-1)
        out = model(
            input_ids=tok.unsqueeze(-1),
            attention_mask=attention_mask,
            position_ids=next_pos,
            past_key_values=cache,
            use_cache=True,
        )
        cache, logits = out.past_key_values, out.logits[:, -1]
        next_pos = next_pos + 1
    return torch.stack(tokens, 1), torch.stack(masks, 1).float()


class RolloutWorker:
    """A policy copy (transformers, CPU or GPU) plus the reward functions of every domain."""

    def __init__(
        self,
        model_path: str,
        rewards: dict[str, str],
        max_new_tokens: int,
        temperature: float = 1.0,
        device: str = "cpu",
        threads: int | None = None,
        micro_batch: int = 256,
        dtype: str = "float32",
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        # the learner recomputes every log-prob it trains on: sampling precision is only a speed/memory choice
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(device).eval()
        self.rewards = {d: load_reward(ref) for d, ref in rewards.items()}
        self.max_new_tokens, self.temperature, self.micro_batch = max_new_tokens, temperature, micro_batch
        self.version = -1

    def set_weights(self, state_dict: dict, version: int) -> int:
        self.model.load_state_dict(state_dict)
        self.version = version
        return version

    def prompt_text(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def generate(self, requests: list[Request], seed: int, greedy: bool = False) -> list[Sample]:
        """Sample (or decode greedily) one response per request, `micro_batch` requests at a time."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        return [
            s
            for i in range(0, len(requests), self.micro_batch)
            for s in self._generate(requests[i : i + self.micro_batch], gen, greedy)
        ]

    def _generate(self, requests: list[Request], gen: torch.Generator, greedy: bool) -> list[Sample]:
        tok = self.tokenizer
        enc = tok(
            [self.prompt_text(r.messages) for r in requests],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        out, out_mask = sample_tokens(
            self.model,
            ids,
            mask,
            self.max_new_tokens,
            tok.eos_token_id,
            tok.pad_token_id,
            self.temperature,
            greedy,
            gen,
        )
        samples = []
        for i, r in enumerate(requests):
            n = int(out_mask[i].sum())
            resp = out[i, :n].tolist()
            text = tok.decode([t for t in resp if t != tok.eos_token_id], skip_special_tokens=True)
            prompt = ids[i][mask[i].bool()].tolist()
            samples.append(
                Sample(r.domain, r.group, prompt, resp, text, float(self.rewards[r.domain](text, r.ground_truth)))
            )
        return samples


class Rollouts:
    """N rollout workers (Ray actors), or one in-process worker when workers == 0."""

    def __init__(
        self,
        workers: int,
        worker_kwargs: dict,
        num_cpus: float = 1,
        num_gpus: float = 0,
        backend: str = backends.DEFAULT,
    ) -> None:
        self.n = workers
        worker_cls = load_ref(ROLLOUT_WORKERS[backend])
        if workers == 0:
            self.local = worker_cls(**worker_kwargs)
            self.actors = []
            return
        connect()  # the Ray cluster of this SLURM allocation (templates/ray.sh.j2), or a local one
        self.local = None
        self.actors = spread(
            worker_cls, workers, actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus}, **worker_kwargs
        )

    @classmethod
    def for_config(cls, cfg: TrainConfig, device: str) -> Rollouts:
        """The rollout workers an arm's config asks for, sampling on `device`."""
        t, r = cfg.trainer, cfg.rollout
        kwargs = dict(
            model_path=cfg.model,
            rewards={n: d.reward for n, d in cfg.domains.items()},
            max_new_tokens=t.max_response_tokens,
            temperature=t.temperature,
            device=device,
            threads=r.threads,
            micro_batch=r.micro_batch,
            dtype=r.dtype,
        )
        if r.backend == "vllm":
            kwargs.update(
                tensor_parallel_size=r.tensor_parallel_size,
                gpu_memory_utilization=r.gpu_memory_utilization,
                kv_cache_gb=r.kv_cache_gb,
            )
        return cls(r.workers, kwargs, num_cpus=r.num_cpus, num_gpus=r.num_gpus, backend=r.backend)

    def push_weights(self, state_dict: dict, version: int) -> None:
        """Every worker gets the learner's weights (one object-store copy shared by all). The
        workers copy them in (load_state_dict, ray.put): live tensors are fine."""
        cpu = {k: v.detach().to("cpu") for k, v in state_dict.items()}
        if self.local is not None:
            self.local.set_weights(cpu, version)
            return
        import ray

        ref = ray.put(cpu)
        got = ray.get([a.set_weights.remote(ref, version) for a in self.actors])
        assert got == [version] * len(self.actors)

    def generate(self, requests: list[Request], seed: int, greedy: bool = False) -> list[Sample]:
        """Split requests into contiguous chunks, one per worker; chunk i samples with seed+i."""
        n = max(self.n, 1)
        size = -(-len(requests) // n)
        chunks = [requests[i * size : (i + 1) * size] for i in range(n)]
        if self.local is not None:
            return [s for i, c in enumerate(chunks) for s in self.local.generate(c, seed + i, greedy)]
        import ray

        results = ray.get([a.generate.remote(c, seed + i, greedy) for i, (a, c) in enumerate(zip(self.actors, chunks))])
        return [s for r in results for s in r]

    def close(self) -> None:
        if self.actors:
            import ray

            for a in self.actors:
                ray.kill(a)
            self.actors = []
