"""Rollout workers: Ray actors sample what the in-process worker samples, and follow pushed weights."""

from __future__ import annotations

import pytest
import torch

from orchestrator.generation.tiny import build_model
from orchestrator.kinds.train.rollout import Request, Rollouts, RolloutWorker


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_model(tmp_path_factory.mktemp("m") / "model", hidden=32, layers=1, heads=2))


def _requests(n: int) -> list[Request]:
    return [
        Request("copy", [{"role": "user", "content": f"copy: {'abcdefgh'[i % 8]}"}], "abcdefgh"[i % 8], i)
        for i in range(n)
    ]


def _kwargs(model_dir):
    return dict(model_path=model_dir, rewards={"copy": "exact"}, max_new_tokens=3, threads=1)


def test_weights_pushed_to_workers_change_what_they_sample(model_dir):
    from transformers import AutoModelForCausalLM

    r = Rollouts(0, _kwargs(model_dir))
    before = [s.response_ids for s in r.generate(_requests(8), seed=0, greedy=True)]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():  # a zeroed final norm gives every position the same logits
        model.model.norm.weight.zero_()
    r.push_weights(model.state_dict(), version=1)
    assert r.local.version == 1
    after = [s.response_ids for s in r.generate(_requests(8), seed=0, greedy=True)]
    assert after != before and len({tuple(a) for a in after}) == 1
    samples = r.generate(_requests(4), seed=3)
    assert all(s.prompt_ids and 1 <= len(s.response_ids) <= 3 and s.score in (0.0, 1.0) for s in samples)


@pytest.mark.slow
def test_two_ray_workers_match_the_in_process_worker(model_dir):
    requests = _requests(10)
    local = RolloutWorker(**_kwargs(model_dir))
    # contiguous chunks, chunk i sampled with seed + i: the split is part of the (deterministic) result
    expected = local.generate(requests[:5], seed=7) + local.generate(requests[5:], seed=8)
    ray_rollouts = Rollouts(2, _kwargs(model_dir), num_cpus=0.5)
    try:
        got = ray_rollouts.generate(requests, seed=7)
        assert [(s.group, s.response_ids, s.score) for s in got] == [
            (s.group, s.response_ids, s.score) for s in expected
        ]
        state = {k: v + 0.01 for k, v in local.model.state_dict().items()}
        ray_rollouts.push_weights(state, version=5)
        local.set_weights(state, 5)
        got = ray_rollouts.generate(requests, seed=7, greedy=True)
        expected = local.generate(requests[:5], seed=7, greedy=True) + local.generate(requests[5:], seed=8, greedy=True)
        assert [s.response_ids for s in got] == [s.response_ids for s in expected]
    finally:
        ray_rollouts.close()
