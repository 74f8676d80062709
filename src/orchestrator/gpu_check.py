"""`make gpu-check` (scripts/gpu-check.sh): every GPU path checked in one run, one table.

    bash scripts/gpu-check.sh            # or: PYTHONPATH=src python -m orchestrator.gpu_check

It runs from the source tree with any Python whose torch sees a CUDA GPU, on a machine that is
not a set-up cluster node: the project's light dependencies (pydantic, jinja2, pyyaml, submitit,
rich, pytest, nvidia-ml-py, bitsandbytes when it fits) are installed first from the wheel folder
`make gpu-wheels` fills (`.whl/`, or GPU_CHECK_WHEELS) into a temporary directory, and only those
this Python lacks. Every check runs in its own process group with a time limit, within an overall
budget (GPU_CHECK_BUDGET_S, default 450 s, under 8 minutes with the set-up); a check whose package
is missing (vLLM, bitsandbytes, datasets...) is `skip` with the reason, a crash or timeout is
`fail` with the last lines of its log. The table (check, result, figure) is printed and written
as JSON to GPU_CHECK_OUT (default logs/gpu-check.json), each check's output beside it
(<out>.logs/<check>.log). Exit 0: nothing failed; 1: a check failed; 2: no GPU, nothing checked
(one line). GPU_CHECK_ALLOW_CPU=1 runs the same checks on CPU where they can run: a dry run of
the plumbing, labelled as such, never a GPU result (time limits × 5). GPU_CHECK_ONLY=a,b runs only
those checks.

Only the standard library is imported before the wheels are in place; torch is imported to find
the GPU, and the project's modules inside the checks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARK = "GPU_CHECK_RESULT "
PROMPTS = [f"Q: {w}?\nA:" for w in ("cat", "river", "seven", "blue sky", "x+y", "Paris", "2+2", "why")]


# ---------------------------------------------------------------- the checks (run in a child process)


def tiny_model(where: Path) -> Path:
    """The tiny random-weight model, varied enough that greedy texts differ per prompt; head_dim
    32, which vLLM's attention backends take."""
    from orchestrator.generation.tiny import build_model

    return build_model(where / "tiny", hidden=64, layers=2, heads=2, init_std=0.3)


def requests(n: int, tokens: int):
    from orchestrator.generation.backends.base import Request

    return [
        Request(id=str(i), prompt=PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)), max_new_tokens=tokens)
        for i in range(n)
    ]


def generate(backend_name: str, path: Path, reqs, model: dict | None = None, **options):
    """(generations, seconds, the class of the first attention projection) for one backend on the
    tiny model (the layer class tells which quantized layers transformers loaded)."""
    from orchestrator.generation.backends import load_backend
    from orchestrator.generation.models import ModelConfig

    config = ModelConfig(name="tiny", path=str(path), max_length=512, **(model or {}))  # the tiny has 1024 positions
    backend = load_backend(backend_name, config, **options)
    try:
        layer = type(backend.model.model.layers[0].self_attn.q_proj).__name__ if backend_name == "transformers" else ""
        backend.generate(reqs[:2])  # warm-up: first-call compilation and allocation are not throughput
        started = time.perf_counter()
        gens = backend.generate(reqs)
        return gens, time.perf_counter() - started, layer
    finally:
        backend.close()


def check_suite(device: str, work: Path) -> tuple[str, str]:
    """tests/gpu with pytest (its tests skip themselves without CUDA or a package)."""
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/gpu", "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    print(res.stdout[-6000:], res.stderr[-3000:])
    last = [line for line in res.stdout.splitlines() if line.strip()][-1:] or ["no output"]
    return ("pass" if res.returncode == 0 else "fail"), last[0].strip("= ")


def check_transformers(device: str, work: Path) -> tuple[str, str]:
    """Greedy generation on the device equals the CPU's (float32): same texts, close log-probs."""
    path = tiny_model(work)
    reqs = requests(8, 12)
    on_device, _, _ = generate("transformers", path, reqs, batch_size=8, device=device)
    on_cpu, _, _ = generate("transformers", path, reqs, batch_size=8, device="cpu")
    same = sum(a.text == b.text for a, b in zip(on_device, on_cpu))
    diff = max(abs(x - y) for a, b in zip(on_device, on_cpu) for x, y in zip(a.token_logprobs, b.token_logprobs))
    ok = same == len(reqs) and diff < 1e-3
    return ("pass" if ok else "fail"), f"{same}/{len(reqs)} texts equal to CPU, max |Δ logprob| {diff:.1e}"


def check_bitsandbytes(device: str, work: Path) -> tuple[str, str]:
    """8-bit and 4-bit (nf4) load + generate through the transformers backend."""
    import math

    path = tiny_model(work)
    reqs = requests(8, 8)
    parts, ok = [], True
    for quantization, layer in (("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")):
        gens, seconds, got = generate(
            "transformers", path, reqs, batch_size=8, device=device, model={"quantization": quantization}
        )
        good = got == layer and all(
            g.completion_tokens == len(g.token_logprobs) > 0 and all(math.isfinite(x) for x in g.token_logprobs)
            for g in gens
        )
        ok &= good
        parts.append(f"{quantization} {got} {sum(g.completion_tokens for g in gens) / seconds:.0f} tok/s")
    return ("pass" if ok else "fail"), ", ".join(parts)


FSDP_STEPS = textwrap.dedent("""
    import json, sys, time, torch
    from transformers import AutoModelForCausalLM
    from orchestrator.kinds.train import distributed
    from orchestrator.kinds.train.aggregation import Aggregator, gramian

    device, path, out = sys.argv[1:4]
    world = distributed.init(device, timeout_min=3, single=True)
    where = f"cuda:{world.local_rank}" if device == "cuda" else "cpu"
    model = distributed.shard(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(where))
    params = list(model.parameters())
    before = distributed.full_state_dict(model)
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    tasks = [torch.randint(4, vocab, (8, 24), generator=g), torch.randint(4, vocab // 2, (8, 24), generator=g)]
    seconds = []
    for step in range(4):
        started = time.perf_counter()
        grads = []
        for batch in tasks:  # one gradient per task; each rank takes rows r, r+W, ...
            optimizer.zero_grad(set_to_none=True)
            rows = batch[world.rank :: world.size].to(where)
            model(input_ids=rows, labels=rows).loss.backward()
            grads.append(distributed.flat_grad(params))
        shards = torch.stack(grads)  # torchjd's PCGrad on the Gramian: one [T, T] all-reduce
        combined, _ = Aggregator("pcgrad", len(tasks), step).combine(shards, gramian(shards, distributed=world.distributed))
        distributed.set_flat_grad(params, combined)
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    after = distributed.full_state_dict(model)
    if world.main:
        torch.save({"before": before, "after": after, "step_s": seconds[1:]}, out)
    distributed.shutdown()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(device: str, ranks: int, path: Path, out: Path) -> dict:
    import torch

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(ranks))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FSDP_STEPS, device, str(path), str(out)],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
        )
        for r in range(ranks)
    ]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"{ranks} {device} rank(s) exited {codes}")
    return torch.load(out, weights_only=False)


def check_fsdp2(device: str, work: Path) -> tuple[str, str]:
    """FSDP2 steps with PCGrad over two tasks (gradient dot products across the shards): 2 NCCL
    ranks when 2+ GPUs are visible, else 1; the update is compared with one CPU learner's."""
    import torch

    path = tiny_model(work)
    ranks = 2 if device == "cpu" or torch.cuda.device_count() >= 2 else 1
    reference = run_ranks("cpu", 1, path, work / "cpu.pt")
    got = run_ranks(device, ranks, path, work / f"{device}.pt")

    def update(r: dict) -> torch.Tensor:
        return torch.cat([(r["after"][k] - r["before"][k]).flatten().float() for k in sorted(r["after"])])

    cosine = float(torch.nn.functional.cosine_similarity(update(got), update(reference), dim=0))
    backend = "NCCL" if device == "cuda" else "gloo"
    how = f"{ranks} {backend} ranks" if ranks > 1 else f"1 rank (1 GPU: {backend} across ranks needs 2)"
    step_ms = 1000 * sum(got["step_s"]) / len(got["step_s"])
    return ("pass" if cosine > 0.999 else "fail"), f"{how}: update cosine {cosine:.5f} vs CPU, {step_ms:.0f} ms/step"


def check_vllm(device: str, work: Path, tp: int) -> tuple[str, str]:
    """vLLM greedy texts vs transformers' on the same prompts, and tokens/s of each (float32)."""
    path = tiny_model(work)
    reqs = requests(64, 32)
    hf, hf_s, _ = generate("transformers", path, reqs, batch_size=64, device=device, model={"dtype": "float32"})
    vl, vl_s, _ = generate(
        "vllm", path, reqs, kv_cache_gb=1.0, enforce_eager=True, model={"dtype": "float32", "tensor_parallel_size": tp}
    )
    same = sum(a.text == b.text for a, b in zip(vl, hf))
    first = sum(a.text[:1] == b.text[:1] for a, b in zip(vl, hf))
    rate_vl = sum(g.completion_tokens for g in vl) / vl_s
    rate_hf = sum(g.completion_tokens for g in hf) / hf_s
    ok = first == len(reqs) and same >= 0.9 * len(reqs)
    return ("pass" if ok else "fail"), (
        f"{same}/{len(reqs)} texts equal to transformers; vLLM {rate_vl:.0f} tok/s vs transformers "
        f"{rate_hf:.0f} tok/s ({rate_vl / rate_hf:.1f}×, eager, tiny model)"
    )


def check_nvml(device: str, work: Path) -> tuple[str, str]:
    """Every hardware reading the inference jobs record is non-null while the GPU works."""
    import torch

    from orchestrator.generation.hardware import HardwareMonitor

    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    with HardwareMonitor(interval=0.2) as hw:
        end = time.time() + 3
        while time.time() < end:
            x = (x @ x).clamp_(-1, 1)
        torch.cuda.synchronize()
    m = hw.metrics()
    nulls = sorted(k for k, v in m.items() if v is None)
    figure = (
        f"{m['gpu_name']} ×{m['gpu_count']}: {m['power_avg_w'] or 0:.0f} W avg, {m['power_peak_w'] or 0:.0f} W peak, "
        f"{m['gpu_memory_peak_gb'] or 0:.1f} GB peak"
    )
    return ("fail", f"null readings: {', '.join(nulls)}") if nulls else ("pass", figure)


PPO_STEP = textwrap.dedent("""
    import json, sys, time, torch
    from orchestrator.kinds.train.entry import prepare
    from orchestrator.kinds.train.recipe import PPOTrainer
    from orchestrator.kinds.train.config import TrainConfig

    device, work = sys.argv[1:3]
    prepare(work, "x", ["arithmetic", "copy"], {}, n_train=16, n_val=4, seed=0)
    cfg = TrainConfig.model_validate({
        "model": f"{work}/model",
        "domains": {d: {"train": f"{work}/data/{d}_train.parquet", "val": f"{work}/data/{d}_val.parquet",
                        "reward": "exact"} for d in ("arithmetic", "copy")},
        "algorithm": {"advantage": "gae", "group_size": 1},
        "trainer": {"batch_size": 8, "mini_batches": 2, "max_response_tokens": 8, "seed": 0, "device": device},
        "rollout": {"workers": 0}, "mtl": {"enabled": True}, "wandb": {"enabled": False},
    })
    trainer = PPOTrainer(cfg, "gpu-check", "arm", f"{work}/run")
    trainer.setup()
    seconds = []
    for step in range(3):
        started = time.perf_counter()
        trainer.train_step(trainer.train_data[:8], diagnose=False)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    trainer.cleanup()
    print("STEP_S", json.dumps(seconds[1:]))
""")


def check_ppo(device: str, work: Path) -> tuple[str, str]:
    """The PPO trainer's step on the tiny preset (rollout, GAE, PCGrad over two domains, update)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
    env["ORCH_HOME"] = str(work / "home")
    res = subprocess.run([sys.executable, "-c", PPO_STEP, device, str(work)], env=env, capture_output=True, text=True)
    print(res.stdout[-4000:], res.stderr[-4000:])
    line = next((x for x in res.stdout.splitlines() if x.startswith("STEP_S ")), None)
    if res.returncode != 0 or line is None:
        return "fail", f"exit {res.returncode}: {(res.stderr.strip().splitlines() or ['no output'])[-1]}"
    seconds = json.loads(line.removeprefix("STEP_S "))
    return "pass", f"{1000 * sum(seconds) / len(seconds):.0f} ms/step (batch 8, 8 response tokens, 1 learner)"


# name → (function, extra arguments, modules it needs, time limit in seconds, CPU dry run possible)
CHECKS: dict[str, tuple] = {
    "tests/gpu": (check_suite, (), ("pytest", "pydantic"), 150, True),
    "transformers-cuda": (check_transformers, (), ("transformers", "pydantic"), 60, True),
    "bitsandbytes": (check_bitsandbytes, (), ("bitsandbytes", "accelerate", "pydantic"), 60, True),
    "fsdp2-pcgrad": (check_fsdp2, (), ("transformers", "torchjd"), 90, True),
    "nvml": (check_nvml, (), ("pynvml", "pydantic"), 30, False),
    "ppo-step": (check_ppo, (), ("pydantic", "datasets", "pyarrow"), 90, True),
    "vllm-tp1": (check_vllm, (1,), ("vllm", "pydantic"), 150, True),
    "vllm-tp2": (check_vllm, (2,), ("vllm", "pydantic"), 150, False),
}
WHY_MISSING = {
    "vllm": "vLLM is not installed on this Python (its wheel is far over the 64 MiB that travels with the tree)",
    "bitsandbytes": "bitsandbytes is not installed and not in the wheel folder (make gpu-wheels adds it when it fits)",
    "datasets": "the trainer reads parquet through datasets + pyarrow, not on this Python (too big for the wheel folder)",
    "pyarrow": "the trainer reads parquet through datasets + pyarrow, not on this Python (too big for the wheel folder)",
    "pytest": "pytest is not installed (make gpu-wheels puts it in the wheel folder)",
    "pydantic": "pydantic is not installed (make gpu-wheels puts it in the wheel folder)",
    "torchjd": "torchjd is not installed (make gpu-wheels puts it in the wheel folder)",
}


def run_one(name: str, device: str, work: Path) -> None:
    fn, extra, *_ = CHECKS[name]
    result, figure = fn(device, work, *extra)
    print(MARK + json.dumps({"result": result, "figure": figure}), flush=True)


# ---------------------------------------------------------------- the driver


def wheel_folder() -> Path:
    return Path(os.environ.get("GPU_CHECK_WHEELS", REPO / ".whl"))


# `make gpu-wheels`: what gpu-check installs on a GPU machine that reaches no registry. Compiled
# ones (pydantic-core, pyyaml, markupsafe) for each CPython below; bitsandbytes (one wheel, ~41 MB)
# only while the folder and the tracked tree stay within what travels to that machine.
LIGHT = ("pydantic", "jinja2", "pyyaml", "submitit", "rich", "pytest", "nvidia-ml-py")
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_28_x86_64")
TRAVELS_MIB = 64  # the most that travels with the tree to the lent GPU machine
MARGIN_MIB = 4  # for files added to the tree meanwhile


def _mib(paths) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 2**20


def download_wheels(folder: Path) -> int:
    def download(dest: Path, version: str, *names: str) -> None:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest), "--only-binary=:all:"]
        cmd += ["--implementation", "cp", "--python-version", version, *(f"--platform={p}" for p in PLATFORMS)]
        subprocess.run([*cmd, *names], check=True)

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for version in PYTHONS:
        download(folder, version, *LIGHT)
    download(folder, "3.12", "--no-deps", "torchjd")  # pure Python; it runs on the machine's own torch
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True).stdout.split("\0")
    tree = _mib(REPO / f for f in tracked if f)
    room = TRAVELS_MIB - MARGIN_MIB - tree - _mib(folder.iterdir())
    with tempfile.TemporaryDirectory() as tmp:
        download(Path(tmp), "3.12", "--no-deps", "bitsandbytes")
        bnb = list(Path(tmp).iterdir())
        bnb_mib = _mib(bnb)
        if bnb_mib <= room:
            for w in bnb:
                shutil.move(w, folder / w.name)
            note = f"bitsandbytes included ({bnb_mib:.0f} MiB)"
        else:
            note = f"bitsandbytes left out: {bnb_mib:.0f} MiB, {room:.0f} MiB of room"
    size = _mib(folder.iterdir())
    print(
        f"{folder}: {len(list(folder.iterdir()))} wheels, {size:.1f} MiB; with the tracked tree ({tree:.1f} MiB) "
        f"{size + tree:.1f} of the {TRAVELS_MIB} MiB that travel; {note}"
    )
    return 0


def install_wheels(folder: Path, target: Path) -> tuple[str, str]:
    """Install the wheels' projects this Python cannot import yet into `target` (prepended to the
    path): pip without an index, else unpacking the wheels that fit this interpreter."""
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if not wheels:
        return "skip", f"no wheel folder {folder} (make gpu-wheels fills it); using what this Python has"
    tops: dict[str, set[str]] = {}
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            names = {n.split("/")[0] for n in z.namelist()}
        project = w.name.split("-")[0]
        tops.setdefault(project, set()).update(
            n.split(".")[0] for n in names if not n.endswith((".dist-info", ".data", ".pth"))
        )
    missing = sorted(p for p, mods in tops.items() if not all(importlib.util.find_spec(m) for m in mods if m))
    if not missing:
        return "pass", f"nothing to install: this Python has all {len(tops)} projects of {folder}"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--find-links", str(folder)]
    res = subprocess.run([*pip, "--target", str(target), *missing], capture_output=True, text=True)
    if res.returncode != 0:  # no pip, or a project without a wheel for this Python: unpack what fits
        tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
        usable = [w for w in wheels if w.name.split("-")[0] in missing and ("-none-" in w.name or f"-{tag}-" in w.name)]
        for w in usable:
            with zipfile.ZipFile(w) as z:
                z.extractall(target)
        got = {w.name.split("-")[0] for w in usable}
        lacking = [p for p in missing if p not in got]
        note = f"; no wheel for this Python: {', '.join(lacking)}" if lacking else ""
        return "pass", f"unpacked {len(got)} of {len(missing)} missing projects (pip: exit {res.returncode}){note}"
    return "pass", f"installed {len(missing)} projects from {folder.name}/: {', '.join(missing)}"


def cuda_device() -> tuple[str | None, str]:
    """('cuda', description), (None, why not)."""
    try:
        import torch
    except ImportError:
        return None, f"{sys.executable} has no torch"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} on {sys.executable} sees no CUDA device"
    names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
    return (
        "cuda",
        f"{torch.cuda.device_count()} × {', '.join(names)}, torch {torch.__version__} (CUDA {torch.version.cuda})",
    )


def run_check(name: str, device: str, limit: float, logs: Path, env: dict) -> dict:
    """One check in its own process group (killed whole on its time limit); its output to a log."""
    started = time.monotonic()
    log = logs / f"{name.replace('/', '-')}.log"
    work = Path(tempfile.mkdtemp(prefix=f"gpu-check-{name.replace('/', '-')}-"))
    cmd = [sys.executable, "-m", "orchestrator.gpu_check", "--one", name, device, str(work)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    shutil.rmtree(work, ignore_errors=True)
    text = log.read_text(errors="replace")
    seconds = round(time.monotonic() - started, 1)
    found = [line for line in text.splitlines() if line.startswith(MARK)]
    if found:
        return {"check": name, **json.loads(found[-1].removeprefix(MARK)), "seconds": seconds}
    tail = [line for line in text.splitlines() if line.strip()][-3:]
    why = f"timed out after {limit:.0f} s" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
    return {"check": name, "result": "fail", "figure": f"{why}: {' | '.join(tail)[-300:]}", "seconds": seconds}


def table(rows: list[dict]) -> str:
    width = max(len(r["check"]) for r in rows)
    lines = [f"{'check':<{width}}  result  figure", f"{'-' * width}  ------  ------"]
    lines += [f"{r['check']:<{width}}  {r['result']:<6}  {r['figure']}" for r in rows]
    return "\n".join(lines)


def main() -> int:
    dry = os.environ.get("GPU_CHECK_ALLOW_CPU") == "1"
    device, description = cuda_device()
    if device is None and not dry:
        print(f"gpu-check: no GPU here ({description}); nothing checked")
        return 2
    device = device or "cpu"
    slower = 5 if device == "cpu" else 1  # a CPU dry run: the limits are the GPU's, stretched
    budget = slower * float(os.environ.get("GPU_CHECK_BUDGET_S", "450"))
    out = Path(os.environ.get("GPU_CHECK_OUT", REPO / "logs" / "gpu-check.json"))
    logs = out.with_name(out.name + ".logs")
    logs.mkdir(parents=True, exist_ok=True)
    only = [x for x in os.environ.get("GPU_CHECK_ONLY", "").split(",") if x]
    unknown = sorted(set(only) - set(CHECKS))
    if unknown:
        print(f"gpu-check: GPU_CHECK_ONLY names unknown checks {unknown}; known: {', '.join(CHECKS)}")
        return 2
    started = time.monotonic()
    site = Path(tempfile.mkdtemp(prefix="gpu-check-site-"))
    result, figure = install_wheels(wheel_folder(), site)
    rows = [{"check": "wheels", "result": result, "figure": figure, "seconds": round(time.monotonic() - started, 1)}]
    sys.path[:0] = [str(site), str(REPO / "src")]
    importlib.invalidate_caches()
    path = os.pathsep.join(p for p in (str(site), str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    for name, (_, _, needs, limit, on_cpu) in CHECKS.items():
        if only and name not in only:
            continue
        absent = [m for m in needs if importlib.util.find_spec(m) is None]
        left = budget - (time.monotonic() - started)
        if device == "cpu" and not on_cpu:
            rows.append({"check": name, "result": "skip", "figure": "needs a GPU (CPU dry run)"})
        elif absent:
            rows.append({"check": name, "result": "skip", "figure": WHY_MISSING.get(absent[0], f"{absent[0]} missing")})
        elif name == "vllm-tp2" and device == "cuda" and _gpus() < 2:
            rows.append({"check": name, "result": "skip", "figure": f"{_gpus()} GPU here: TP=2 needs 2"})
        elif left < 20:
            rows.append({"check": name, "result": "skip", "figure": f"no time left in the {budget:.0f} s budget"})
        else:
            rows.append(run_check(name, device, min(slower * limit, left), logs, env))
    shutil.rmtree(site, ignore_errors=True)
    title = f"gpu-check on {description}" if device == "cuda" else "gpu-check DRY RUN ON CPU (not a GPU check)"
    print(f"{title}, {time.monotonic() - started:.0f} s\n{table(rows)}")
    report = {
        "device": description if device == "cuda" else "cpu (dry run: GPU_CHECK_ALLOW_CPU=1)",
        "dry_run": device == "cpu",
        "python": sys.version.split()[0],
        "platform": sysconfig.get_platform(),
        "seconds": round(time.monotonic() - started, 1),
        "checks": rows,
    }
    from orchestrator.core.files import write_json_atomic  # stdlib only

    write_json_atomic(out, report)
    print(f"written: {out}")
    return 1 if any(r["result"] == "fail" for r in rows) else 0


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        run_one(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
    elif sys.argv[1:2] == ["--wheels"]:
        sys.exit(download_wheels(wheel_folder()))
    else:
        sys.exit(main())
