"""Judge throughput against an endpoint with fixed latency: how `num_workers` scales it.

A local chat-completions server (tests/kinds/judge/chat_server.py) answers each request after 50 ms;
400 (--smoke: 40) predictions are judged with num_workers = 1, 4, 16, 64 into fresh run directories. Printed:
items/s and the speed-up over one worker (ideal: ×num_workers while the server keeps up), plus the
cost of 10 % rate-limited requests (429 with Retry-After: 0.05) at num_workers = 16.

    python benchmarks/bench_judge.py [--smoke]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, Figures, parse_args

sys.path.insert(0, str(REPO / "tests" / "kinds" / "judge"))
from chat_server import ChatServer  # noqa: E402
from judge_data import prediction, write_predictions  # noqa: E402

LATENCY_S = 0.05
N = 400  # --smoke: 40


def run(server: ChatServer, tmp: Path, workers: int, tag: str, n: int) -> tuple[float, dict]:
    from orchestrator.kinds.judge.job import judge_run

    preds = write_predictions(tmp / "in" / "predictions.jsonl", [prediction(i, correct=i % 2 == 0) for i in range(n)])
    run_dir = tmp / f"run-{tag}"
    cfg = {
        "type": "llm",
        "base_url": server.url,
        "model": "judge",
        "api_key_env": "BENCH_JUDGE_KEY",
        "num_workers": workers,
        "backoff_base_s": 0.05,
        "backoff_max_s": 1.0,
    }
    t0 = time.perf_counter()
    judge_run(str(run_dir), "bench", str(preds), cfg)
    wall = time.perf_counter() - t0
    return wall, json.loads((run_dir / "judge_summary.json").read_text())


def main() -> None:
    args = parse_args(__doc__)
    n = 40 if args.smoke else N
    figures = Figures("judge", args.smoke)
    os.environ["BENCH_JUDGE_KEY"] = "bench"
    tmp = Path(tempfile.mkdtemp(prefix="bench-judge-"))
    speedups = {}
    with ChatServer(delay_s=LATENCY_S) as server:
        base = None
        print(f"{n} items, server latency {LATENCY_S * 1000:.0f} ms")
        for w in (1, 4, 16, 64):
            wall, summary = run(server, tmp, w, f"w{w}", n)
            base = base or wall
            assert summary["n"] == n
            speedups[w] = base / wall
            print(
                f"num_workers={w:3d}: {n / wall:7.1f} items/s  speed-up ×{base / wall:5.1f}  "
                f"(max in flight {server.max_in_flight})"
            )
            server.max_in_flight = 0
    with ChatServer(delay_s=LATENCY_S) as server:
        clean, _ = run(server, tmp, 16, "clean16", n)
    with ChatServer(
        delay_s=LATENCY_S,
        script=lambda c: (429, {"Retry-After": "0.05"}, {"error": {"message": "slow"}}) if c.index % 10 == 0 else None,
    ) as server:
        wall_16, summary = run(server, tmp, 16, "limited16", n)
    print(f"10% rate-limited at num_workers=16: {summary['retries']} retries, all {summary['n']} judged once")
    assert summary["n"] == n
    # no targets: the ideal is ×num_workers while the server keeps up, which a loaded host does not
    figures.add("speed-up, 16 workers / 1 (50 ms endpoint)", speedups[16], unit="x")
    figures.add("speed-up, 64 workers / 1 (50 ms endpoint)", speedups[64], unit="x")
    figures.add("wall time, 10% rate-limited / clean, 16 workers", wall_16 / clean, unit="x")
    figures.save()


if __name__ == "__main__":
    main()
