"""The report of the `inference` and `sweep` kinds: the reader of inference runs (predictions.jsonl,
results.json, summary.json: rows of the results table, plus the per-example records the matrices,
votes and audits use, `Results.examples`) and the "Inference sweep" section (analyses: `sweep.py`;
markdown: `report.md.j2`; plots below)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.kinds import Section
from orchestrator.kinds.inference import sweep
from orchestrator.reporting.matrix import matrix_csv
from orchestrator.reporting.plots import bars, figure, png, styled
from orchestrator.reporting.readers import Reader
from orchestrator.reporting.table import Example, Results, Row, as_int, as_str, finite, higher_is_better, relative

TEMPLATE = Path(__file__).with_name("report.md.j2")


def sections(res: Results, opts: Any) -> list[Section]:
    inf = sweep.section(res, opts.high_latency_factor)
    if not inf:
        return [Section({"inference": None})]
    files = {
        "results_matrix.csv": matrix_csv(inf["matrix"]),
        "scaling.csv": sweep.scaling_csv(inf["scaling"]),
        "scaling.json": json.dumps(inf["scaling"]["rows"], indent=1, sort_keys=True) + "\n",
    }
    return [
        Section(
            {"inference": inf},
            TEMPLATE,
            order=60,
            recommendations=sweep.recommendations(inf),
            plots=lambda: styled(lambda: _plots(inf)),
            files=files,
        )
    ]


def is_inference_dir(d: Path) -> bool:
    return any((d / f).exists() for f in (paths.PREDICTIONS_FILE, paths.RESULTS_FILE)) or (
        "__" in d.name and (d / paths.SUMMARY_FILE).exists()
    )


def read(reader: Reader, run_dir: Path) -> bool:
    """An inference run's files → rows and examples; False when the folder is not an inference run."""
    if not is_inference_dir(run_dir):
        return False
    res, run = reader.res, run_dir.name
    summary_path = run_dir / paths.SUMMARY_FILE
    s = reader.json_file(summary_path) if summary_path.exists() else None
    model, _, task = run.partition("__")
    if s:
        model, task = str(s.get("model") or model), str(s.get("task") or task)
    examples = _examples(reader, run_dir, run, model, task)
    domain = next((e.domain for e in examples if e.domain), "")
    res.inference_runs.setdefault((model, task), []).append(run)
    size = _model_size(s or {})
    base = dict(arm=model, run=run, task=task, domain=domain, file=relative(summary_path))
    if s is None:
        if not examples:
            return True
        reader.warn(summary_path, "missing: metrics recomputed from the predictions (unfinished run?)")
        judged = [e.correct for e in examples if e.correct is not None]
        values: dict[str, float | None] = {"accuracy": sum(judged) / len(judged) if judged else None}
        n = len(examples)
        base["file"] = relative(run_dir / paths.PREDICTIONS_FILE)
    else:
        values = {}
        for k, v in (s.get("metrics") or {}).items():
            values[k] = finite(v)
        for k, v in (s.get("calibration") or {}).items():
            values[k] = finite(v)
        for k in ("throughput_tokens_per_s", "wall_time_s", "load_time_s"):
            values[k] = finite(s.get(k))
        for k, v in (s.get("hardware") or {}).items():
            if k != "gpu_name":
                values[f"hardware/{k}"] = finite(v)
        n = s.get("n") if isinstance(s.get("n"), int) else len(examples) or None
    if examples:
        lat = [e.latency_s for e in examples if e.latency_s is not None]
        values.setdefault("latency_s_mean", sum(lat) / len(lat) if lat else None)
    values["params_b"] = size
    for k in sorted(values):
        res.rows.append(
            Row("inference", reader.exp, metric=k, value=values[k], higher_is_better=higher_is_better(k), n=n, **base)
        )
    return True


def _examples(reader: Reader, run_dir: Path, run: str, model: str, task: str) -> list[Example]:
    pred_path = run_dir / paths.PREDICTIONS_FILE
    records: list[dict] = []
    if pred_path.exists():
        records = [r for _, r in reader.jsonl(pred_path)]
    elif (run_dir / paths.RESULTS_FILE).exists():
        d = reader.json_file(run_dir / paths.RESULTS_FILE)
        records = [r for r in (d or {}).get("examples", []) if isinstance(r, dict)]
    out = []
    for r in records:
        if "id" not in r:
            continue
        conf = r.get("confidence")
        out.append(
            Example(
                run=run,
                model=str(r.get("model") or model),
                task=str(r.get("task") or task),
                domain=str(r.get("domain") or ""),
                id=str(r["id"]),
                prediction=as_str(r.get("prediction")),
                correct=r.get("correct") if isinstance(r.get("correct"), bool) else None,
                confidence=finite(conf.get("mean")) if isinstance(conf, dict) else finite(conf),
                latency_s=finite(r.get("latency_s")),
                prompt_tokens=as_int(r.get("prompt_tokens")),
                completion_tokens=as_int(r.get("completion_tokens")),
                finish_reason=as_str(r.get("finish_reason")),
            )
        )
    reader.res.examples.extend(out)
    return out


def _model_size(summary: dict) -> float | None:
    """Billions of parameters, from the run's model config when it says."""
    cfg = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    for holder in (cfg.get("model") if isinstance(cfg.get("model"), dict) else {}, cfg, summary):
        v = finite(holder.get("params_b"))
        if v is not None:
            return v
    return None


# --------------------------------------------------------------------------- plots


def _size_vs_score(rows: list[dict]) -> bytes:
    fig, (ax,) = figure(1, width=6.0, height=4.0)
    pts = [r for r in rows if r["params_b"] and r["score"] is not None]
    ax.scatter([r["params_b"] for r in pts], [r["score"] for r in pts], color="#4C72B0")
    for r in pts:
        ax.annotate(r["model"], (r["params_b"], r["score"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.margins(x=0.15, y=0.1)
    sizes = [r["params_b"] for r in pts]
    if sizes and min(sizes) > 0 and max(sizes) / min(sizes) >= 20:  # log only where sizes span decades
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_xscale("log")  # plain tick labels: the default 10^k ones are mathtext
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters (billions)")
    ax.set_ylabel("score (mean over tasks)")
    ax.set_title("Model size vs score")
    return png(fig)


def _plots(inf: dict[str, Any]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    rows = inf["scaling"]["rows"]
    if not rows:
        return out
    by_rank = sorted(
        (r for r in rows if r["score"] is not None), key=lambda r: inf["scaling"]["ranking"].index(r["model"])
    )
    if by_rank:
        out["ranking.png"] = bars(
            [r["model"] for r in by_rank],
            [r["score"] for r in by_rank],
            "Overall ranking (mean score over tasks)",
            "score",
        )
    if any(r["params_b"] for r in rows if r["score"] is not None):
        out["size_vs_score.png"] = _size_vs_score(rows)
    lat = [r for r in rows if r["latency_s_mean"] is not None]
    if lat:
        out["latency.png"] = bars(
            [r["model"] for r in lat], [r["latency_s_mean"] for r in lat], "Mean latency per example", "seconds"
        )
    energy = [r for r in rows if r["energy_wh"] is not None]
    if energy:
        out["energy.png"] = bars(
            [r["model"] for r in energy], [r["energy_wh"] for r in energy], "Energy (all tasks)", "Wh"
        )
    return out
