"""PPO / GRPO pieces as small pure functions over padded response tensors.

Shapes (B = responses in the batch, T = response tokens, padded on the right):
- `mask`      [B, T] float, 1 for real response tokens (up to and including EOS), 0 for padding
- `logprobs`  [B, T] log pi(a_t | s_t) of the sampled tokens (policy, old policy or reference)
- `values`    [B, T] critic estimate V(s_t) before emitting token t
- `rewards`   [B, T] per-token rewards (sequence score on the last real token, KL penalty on all)
- `scores`    [B]    rule-based reward of each whole response
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over positions where mask is 1 (0 if the mask is empty)."""
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over masked positions; padding stays 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """logits [B, T, V] predicting tokens [B, T] -> log-probs [B, T] of those tokens."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL(pi || ref) estimate [B, T] from sampled-token log-probs.

    k1 = log pi - log ref (unbiased, can be negative; used as a reward penalty in PPO);
    k3 = exp(ref - pi) - (ref - pi) - 1 (non-negative, low variance; used as a GRPO loss term).
    """
    diff = logprobs - ref_logprobs
    if estimator == "k1":
        return diff
    if estimator == "k3":
        return torch.exp(-diff) + diff - 1.0
    raise ValueError(f"unknown KL estimator {estimator!r}: use k1 or k3")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """PPO rewards [B, T]: -kl_coef * KL on every token, plus the score on the last real token."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(-1).long() - 1).clamp_min(0)  # index of the last real token of each row
    return rewards.scatter_add(-1, last.unsqueeze(-1), scores.to(rewards.dtype).unsqueeze(-1))


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation. Returns (advantages [B, T], returns [B, T]).

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with V and A
    zero past the last real token; returns = A + V (the critic's regression targets).
    """
    b, t = rewards.shape
    adv = torch.zeros_like(rewards)
    next_value = rewards.new_zeros(b)
    next_adv = rewards.new_zeros(b)
    for i in reversed(range(t)):
        m = mask[:, i]
        delta = rewards[:, i] + gamma * next_value - values[:, i]
        a = delta + gamma * lam * next_adv
        adv[:, i] = a * m
        next_value = values[:, i] * m  # padding: the episode has ended, bootstrap with 0
        next_adv = a * m
    return adv, (adv + values) * mask


def group_advantages(
    scores: torch.Tensor, group_ids: Sequence[int] | torch.Tensor, eps: float = 1e-6, normalize_std: bool = True
) -> torch.Tensor:
    """GRPO: each response's score minus its group's mean (divided by the group's std). [B] -> [B].

    A group is the set of responses sampled for the same prompt; a group whose responses all
    score the same gives zero advantage (no signal, no noise).
    """
    ids = torch.as_tensor(group_ids, device=scores.device)
    out = torch.zeros_like(scores, dtype=torch.float32)
    for g in torch.unique(ids):
        sel = ids == g
        s = scores[sel].float()
        centred = s - s.mean()
        if normalize_std and s.numel() > 1:
            centred = centred / (s.std(unbiased=True) + eps)
        out[sel] = centred
    return out


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_ratio: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate: mean over tokens of max(-A r, -A clip(r, 1±eps)), r = pi/pi_old.

    All inputs [B, T]. Returns (scalar loss, {"clipfrac", "approx_kl"} scalars, detached).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_ratio, 1.0 + clip_ratio)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": masked_mean(0.5 * (logprobs - old_logprobs) ** 2, mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip_range: float = 0.2
) -> torch.Tensor:
    """Clipped value loss 0.5 * max((V - R)^2, (V_clip - R)^2), V_clip within ±clip of the old V. [B, T] -> scalar."""
    clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)
