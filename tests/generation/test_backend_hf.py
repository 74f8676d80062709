"""The transformers backend on the tiny model: the contract others call (evaluation, rollouts)."""

from __future__ import annotations

import pytest

from orchestrator.core.errors import UserError
from orchestrator.generation.backends.base import Request
from orchestrator.generation.models import ModelConfig

PROMPTS = ["Question: what is two plus two?\nAnswer:", "hi", "The story so far: a cat sat on a mat.", "x" * 30, "ab"]


def test_one_generation_per_request_in_order_with_logprobs(tiny_backend):
    reqs = [Request(id=f"r{i}", prompt=p, max_new_tokens=6) for i, p in enumerate(PROMPTS)]
    gens = tiny_backend.generate(reqs)
    assert [g.id for g in gens] == [r.id for r in reqs]
    for g, r in zip(gens, reqs):
        assert 1 <= g.completion_tokens <= 6
        assert len(g.token_logprobs) == g.completion_tokens
        assert all(lp <= 0 for lp in g.token_logprobs)
        assert g.finish_reason in ("stop", "length")
        assert g.prompt_tokens == len(tiny_backend.tokenizer(r.prompt)["input_ids"])


def test_batched_equals_one_at_a_time(tiny_backend):
    reqs = [Request(id=str(i), prompt=p, max_new_tokens=8) for i, p in enumerate(PROMPTS)]
    batched = tiny_backend.generate(reqs)
    single = [tiny_backend.generate([r])[0] for r in reqs]
    assert [g.text for g in batched] == [g.text for g in single]
    for a, b in zip(batched, single):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)


def test_logprobs_are_the_models_own(tiny_backend):
    """The returned logprob of each generated token equals log_softmax of a plain forward pass."""
    import torch

    prompt = "Question: what is two plus two?"
    (g,) = tiny_backend.generate([Request(id="a", prompt=prompt, max_new_tokens=5)])
    tok, lm = tiny_backend.tokenizer, tiny_backend.model
    p_ids = tok(prompt, return_tensors="pt")["input_ids"]
    c_ids = tok(g.text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, : g.completion_tokens]
    if g.finish_reason == "stop" and c_ids.shape[1] < g.completion_tokens:  # EOS was generated
        c_ids = torch.cat([c_ids, torch.tensor([[tok.eos_token_id]])], dim=1)
    ids = torch.cat([p_ids, c_ids], dim=1)
    with torch.no_grad():
        logp = torch.log_softmax(lm(ids).logits[0].float(), dim=-1)
    expected = [logp[p_ids.shape[1] - 1 + k, ids[0, p_ids.shape[1] + k]].item() for k in range(c_ids.shape[1])]
    assert g.token_logprobs == pytest.approx(expected, abs=1e-4)


def test_stop_string_cuts_text_and_logprobs(tiny_backend):
    (free,) = tiny_backend.generate([Request(id="a", prompt="hello", max_new_tokens=12)])
    if len(free.text) < 3:
        pytest.skip("tiny model ended too early to pick a stop string")  # deterministic for seed 0
    stop = free.text[2]
    (g,) = tiny_backend.generate([Request(id="a", prompt="hello", max_new_tokens=12, stop=(stop,))])
    assert g.text == free.text[: free.text.index(stop)]
    assert g.finish_reason == "stop"
    assert g.completion_tokens == free.text.index(stop) + 1  # char-level: the stop char is the last token
    assert g.token_logprobs == pytest.approx(free.token_logprobs[: g.completion_tokens], abs=1e-4)


def test_sampling_with_seed_is_reproducible(tiny_backend):
    r = Request(id="s", prompt="hello", max_new_tokens=10, temperature=1.0, seed=7)
    assert tiny_backend.generate([r])[0].text == tiny_backend.generate([r])[0].text


def test_chat_template_applied(tiny_backend):
    assert tiny_backend.apply_chat_template("hi") == "user: hi\nassistant: "


def test_quantization_without_bitsandbytes_is_a_user_error_naming_the_extra(tiny_model_path, monkeypatch):
    # 8/4-bit now run on CPU too (tests/generation/test_quantization.py); without the packages: the extra
    import importlib.util

    from orchestrator.generation.backends import load_backend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    with pytest.raises(UserError, match=r"needs bitsandbytes: pip install 'orchestrator\[quant\]'"):
        load_backend("transformers", ModelConfig(name="q", path=str(tiny_model_path), quantization="4bit"))


def test_unknown_backend_and_option(tiny_model_path):
    from orchestrator.generation.backends import load_backend

    m = ModelConfig(name="t", path=str(tiny_model_path))
    with pytest.raises(UserError, match="unknown"):
        load_backend("nope", m)
    with pytest.raises(UserError, match="unknown options"):
        load_backend("transformers", m, batchsize=3)
