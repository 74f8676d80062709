"""What rollouts exchange with the learner: a prompt to sample for (`Request`), a scored response
(`Sample`), and a batch of samples as the learner's padded tensors (`collate`).

Both rollout workers (rollout.RolloutWorker, rollout_vllm.VLLMRolloutWorker) and the trainer
import these from here, so neither worker module imports the other.

Why not generation.backends.base.Request/Generation: the learner trains on the exact token ids
that were sampled (prompt ids as the chat template gives them, response ids up to and including
EOS), which Generation does not carry (text and log-probs; re-tokenising text is not the
identity); and a rollout's randomness is one torch.Generator per chunk of requests seeded by
(seed, step, chunk), so a resumed run samples what an uninterrupted one did, where Request has a
per-request seed the transformers backend would ignore. A Request here is a chat prompt plus the
sample's metadata (domain, ground truth, GRPO group); sampling settings are the worker's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Request:
    domain: str
    messages: list[dict]
    ground_truth: str
    group: int  # responses to the same prompt share a group (GRPO advantages)


@dataclass
class Sample:
    domain: str
    group: int
    prompt_ids: list[int]
    response_ids: list[int]  # sampled tokens, up to and including EOS
    text: str  # decoded response, without EOS
    score: float


def collate(samples: list[Sample], domains: list[str], pad_id: int, device: str) -> dict[str, torch.Tensor]:
    """Samples -> padded tensors: prompts left-padded [B, L], responses right-padded [B, T],
    their masks, scores [B], domain index [B] (into `domains`) and group [B]."""
    L = max(len(s.prompt_ids) for s in samples)
    T = max(len(s.response_ids) for s in samples)
    prompt = torch.full((len(samples), L), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(samples), L))
    resp = torch.full((len(samples), T), pad_id, dtype=torch.long)
    resp_mask = torch.zeros((len(samples), T))
    for i, s in enumerate(samples):
        prompt[i, L - len(s.prompt_ids) :] = torch.tensor(s.prompt_ids)
        prompt_mask[i, L - len(s.prompt_ids) :] = 1
        resp[i, : len(s.response_ids)] = torch.tensor(s.response_ids)
        resp_mask[i, : len(s.response_ids)] = 1
    return {
        "prompt": prompt.to(device),
        "prompt_mask": prompt_mask.to(device),
        "resp": resp.to(device),
        "mask": resp_mask.to(device),
        "scores": torch.tensor([s.score for s in samples], device=device),
        "domain": torch.tensor([domains.index(s.domain) for s in samples], device=device),
        "group": torch.tensor([s.group for s in samples], device=device),
    }
