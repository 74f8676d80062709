"""Inference benchmark on the tiny model (CPU), ratios measured in one run:

1. transformers backend, batched generation vs one example at a time (how hand-made scripts
   run it: a loop of tokenizer → generate per example); target >= 5x throughput;
2. tokens/s of each;
3. the overhead of our layer (`run_inference`: task loading, prompts, scoring, fsynced
   predictions, results/summary) over calling the backend directly on the same requests.

    python benchmarks/bench_inference.py [--n 64] [--batch-size 32] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    args = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from orchestrator.generation.backends import load_backend
    from orchestrator.generation.backends.base import Request
    from orchestrator.generation.examples import build_examples
    from orchestrator.generation.models import ModelConfig
    from orchestrator.generation.tasks import load_task
    from orchestrator.generation.tiny import build_model
    from orchestrator.kinds.inference.job import run_inference

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    tmp = Path(tempfile.mkdtemp(prefix="bench-infer-"))
    os.environ["ORCH_HOME"] = str(tmp)
    path = build_model(tmp / "tiny")
    model = ModelConfig(name="tiny", path=str(path))
    rows = [
        {"id": f"q{i}", "question": f"what is item number {i}?" + " please" * (i % 4), "answers": [str(i)]}
        for i in range(args.n)
    ]
    data = tmp / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = load_task(
        {
            "task": "qa",
            "dataset": {"data_files": str(data)},
            "generation": {"max_new_tokens": args.max_new_tokens, "stop": []},
        }
    )
    # the exact prompts run_inference sends (task template + chat template)
    tok = AutoTokenizer.from_pretrained(path)
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": ex["prompt"]}], tokenize=False, add_generation_prompt=True)
        for ex in build_examples(task)
    ]
    reqs = [Request(id=str(i), prompt=p, max_new_tokens=args.max_new_tokens) for i, p in enumerate(prompts)]

    # 1. one at a time, plain transformers (the hand-made script)
    lm = AutoModelForCausalLM.from_pretrained(path).eval()
    t = time.perf_counter()
    single_tokens = 0
    with torch.inference_mode():
        for p in prompts:
            enc = tok(p, return_tensors="pt")
            out = lm.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            single_tokens += out.shape[1] - enc["input_ids"].shape[1]
    single_s = time.perf_counter() - t

    # 2. our backend, batched
    backend = load_backend("transformers", model, batch_size=args.batch_size, device="cpu")
    backend.generate(reqs[:2])  # warm-up
    t = time.perf_counter()
    gens = backend.generate(reqs)
    batched_s = time.perf_counter() - t
    batched_tokens = sum(g.completion_tokens for g in gens)
    backend.close()

    # 3. the whole layer: run_inference on the same task (model load excluded)
    t = time.perf_counter()
    run_inference(
        run_dir=str(tmp / "run"),
        experiment="bench",
        model=model.model_dump(mode="json"),
        task=task.model_dump(mode="json"),
        batch_size=args.batch_size,
        device="cpu",
        wandb={"enabled": False},
    )
    layer_total = time.perf_counter() - t
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    layer_s = layer_total - summary["load_time_s"]

    print(
        f"tiny model, {args.n} examples, max_new_tokens={args.max_new_tokens}, batch_size={args.batch_size}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(f"one at a time (plain transformers loop): {single_s:7.2f} s  {single_tokens / single_s:8.1f} tokens/s")
    print(f"batched (TransformersBackend):           {batched_s:7.2f} s  {batched_tokens / batched_s:8.1f} tokens/s")
    print(
        f"run_inference (whole layer, no load):    {layer_s:7.2f} s  "
        f"{summary['throughput_tokens_per_s']:8.1f} tokens/s (generation only)"
    )
    ratio = (batched_tokens / batched_s) / (single_tokens / single_s)
    print(f"batched / one-at-a-time throughput: {ratio:.1f}x (target >= 5x)")
    print(
        f"our layer's overhead over calling the backend directly: {100 * (layer_s / batched_s - 1):+.1f}% "
        f"({layer_s - batched_s:+.2f} s for {args.n} examples)"
    )


if __name__ == "__main__":
    main()
