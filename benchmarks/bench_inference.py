"""Inference benchmark on the tiny model (CPU), ratios measured in one run:

1. transformers backend, batched generation vs one example at a time (how hand-made scripts
   run it: a loop of tokenizer → generate per example); target >= 5x throughput;
2. tokens/s of each;
3. the overhead of our layer (`run_inference`: task loading, prompts, scoring, fsynced
   predictions, results/summary) over calling the backend directly on the same requests;
4. that overhead split into a fixed part and a per-example part (goal ≤ 1 ms): `run_inference`
   at 128 / 256 / 512 examples (--smoke: 8 / 16 / 32), its time (model load excluded) less the
   generation time it measured itself, fitted as fixed + per_example × n; and the growth exponent
   of the whole layer's CPU seconds (model load included).

    python benchmarks/bench_inference.py [--smoke] [--n 64] [--batch-size 32] [--max-new-tokens 32]
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from common import Figures, parse_args

SIZES, SMOKE_SIZES = [128, 256, 512], [8, 16, 32]


def options(p) -> None:
    p.add_argument("--n", type=int, default=64, help="examples for the batched / one-at-a-time comparison")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=32)


def layer_run(run_inference, model, task, out: Path, batch_size: int) -> tuple[float, float, float]:
    """(seconds of run_inference without the model load, of which generating; its CPU seconds)."""
    t, cpu = time.perf_counter(), time.process_time()
    run_inference(
        run_dir=str(out),
        experiment="bench",
        model=model.model_dump(mode="json"),
        task=task.model_dump(mode="json"),
        batch_size=batch_size,
        device="cpu",
        wandb={"enabled": False},
    )
    total, cpu = time.perf_counter() - t, time.process_time() - cpu
    summary = json.loads((out / "summary.json").read_text())
    progress = json.loads((out / ".progress.json").read_text())
    return total - summary["load_time_s"], progress["generate_s"], cpu


def main() -> None:
    args = parse_args(__doc__, options)
    if args.smoke:
        args.n, args.max_new_tokens = 8, 8
    sizes = SMOKE_SIZES if args.smoke else SIZES
    figures = Figures("inference", args.smoke)
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

    def make_task(n: int):
        rows = [
            {"id": f"q{i}", "question": f"what is item number {i}?" + " please" * (i % 4), "answers": [str(i)]}
            for i in range(n)
        ]
        data = tmp / f"qa{n}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return load_task(
            {
                "task": "qa",
                "dataset": {"data_files": str(data)},
                "generation": {"max_new_tokens": args.max_new_tokens, "stop": []},
            }
        )

    task = make_task(args.n)
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
    layer_s, _, _ = layer_run(run_inference, model, task, tmp / "run", args.batch_size)
    summary = json.loads((tmp / "run" / "summary.json").read_text())

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
    figures.add(f"throughput, batched / one at a time, {args.n} examples", ratio, (">=", 5.0), "x")
    figures.add(f"run_inference / backend alone, {args.n} examples", layer_s / batched_s, unit="x")

    # 4. fixed and per-example overhead: the layer's time less the generation it timed itself
    cpus, overheads = [], []
    for n in sizes:
        total, generating, cpu = layer_run(run_inference, model, make_task(n), tmp / f"run{n}", args.batch_size)
        cpus.append(cpu)
        overheads.append(total - generating)
        print(f"run_inference over {n} examples: {total:.2f} s, of which {generating:.2f} s generating", flush=True)
    mean_n, mean_o = sum(sizes) / len(sizes), sum(overheads) / len(overheads)
    per_example = sum((n - mean_n) * (o - mean_o) for n, o in zip(sizes, overheads)) / sum(
        (n - mean_n) ** 2 for n in sizes
    )
    fixed = mean_o - per_example * mean_n
    figures.add(f"layer overhead per example ({os.cpu_count()} cores)", per_example * 1000, ("<=", 1.0), " ms")
    figures.add(f"layer overhead, fixed per run ({os.cpu_count()} cores)", fixed, unit=" s")
    figures.growth("run_inference, CPU (model load included)", sizes, cpus, "CPU s")
    figures.save()


if __name__ == "__main__":
    main()
