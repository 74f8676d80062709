"""PPO / GRPO pieces on hand-worked numbers."""

from __future__ import annotations

import math

import pytest
import torch

from orchestrator.kinds.train.ppo import (
    gae,
    group_advantages,
    kl_per_token,
    masked_mean,
    masked_whiten,
    policy_loss,
    token_logprobs,
    token_rewards,
    value_loss,
)


def test_gae_hand_worked():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.5, 0.5]]))  # return-to-go 1 minus V
    assert torch.allclose(ret, torch.ones(1, 3))
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert torch.allclose(adv, torch.tensor([[0.125, 0.25, 0.5]]))


def test_gae_ignores_padding_values():
    rewards = torch.tensor([[0.0, 1.0, 0.0]])
    values = torch.tensor([[0.2, 0.4, 9.0]])  # 9.0 sits on padding: must not bootstrap into t=1
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.8, 0.6, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 0.0]]))


def test_token_rewards_score_on_last_real_token_kl_everywhere():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    r = token_rewards(torch.tensor([1.0, 2.0]), torch.full((2, 3), 0.5), mask, kl_coef=0.1)
    assert torch.allclose(r, torch.tensor([[-0.05, 0.95, 0.0], [-0.05, -0.05, 1.95]]))


def test_group_advantages():
    adv = group_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), [0, 0, 1, 1])
    s = 1 / math.sqrt(2)  # unbiased std of {1, 0}
    assert torch.allclose(adv, torch.tensor([0.5 / s, -0.5 / s, 0.0, 0.0]), atol=1e-5)
    assert torch.allclose(
        group_advantages(torch.tensor([3.0, 1.0]), [7, 7], normalize_std=False), torch.tensor([1.0, -1.0])
    )


def test_policy_loss_clips():
    old = torch.zeros(1, 2)
    new = torch.full((1, 2), math.log(1.5), requires_grad=True)  # ratio 1.5
    mask = torch.tensor([[1.0, 0.0]])
    loss, st = policy_loss(new, old, torch.ones(1, 2), mask, clip_ratio=0.2)
    assert loss.item() == pytest.approx(-1.2) and st["clipfrac"].item() == 1.0
    loss.backward()
    assert torch.all(new.grad == 0)  # clipped: no push beyond 1 + eps
    loss, st = policy_loss(new.detach(), old, -torch.ones(1, 2), mask, clip_ratio=0.2)
    assert loss.item() == pytest.approx(1.5) and st["clipfrac"].item() == 0.0


def test_value_loss_clipped():
    v = value_loss(
        torch.full((1, 1), 2.0), torch.zeros(1, 1), torch.full((1, 1), 2.0), torch.ones(1, 1), clip_range=0.2
    )
    assert v.item() == pytest.approx(0.5 * 1.8**2)


def test_kl_estimators_and_masked_helpers():
    lp, ref = torch.tensor([[0.0, -1.0]]), torch.tensor([[-1.0, -1.0]])
    assert torch.allclose(kl_per_token(lp, ref, "k1"), torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(kl_per_token(lp, ref, "k3"), torch.tensor([[math.exp(-1) + 1 - 1, 0.0]]))
    with pytest.raises(ValueError):
        kl_per_token(lp, ref, "k9")
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    x = torch.tensor([[1.0, 3.0, 100.0]])
    assert masked_mean(x, mask).item() == 2.0
    w = masked_whiten(x, mask)
    assert torch.allclose(w, torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4)


def test_token_logprobs():
    logits = torch.log(torch.tensor([[[0.25, 0.75], [0.5, 0.5]]]))
    lp = token_logprobs(logits, torch.tensor([[1, 0]]))
    assert torch.allclose(lp, torch.log(torch.tensor([[0.75, 0.5]])))
