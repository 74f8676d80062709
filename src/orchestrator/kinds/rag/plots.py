"""The RAG report's plots (drawn from `analysis.section`'s context only; the shared style and
PNG writer of `reporting/plots.py`). Local models are circles in blue, API models triangles in orange."""

from __future__ import annotations

from typing import Any

from orchestrator.reporting.plots import STYLE, bars, figure, png
from orchestrator.scoring.wattbot import WEIGHTS

LOCAL = {"marker": "o", "color": "#4C72B0", "label": "local"}
API = {"marker": "^", "color": "#DD8452", "label": "API"}


def _points(ax, rows: list[dict], x: str, y: str, size=None) -> None:
    for kind, style in ((False, LOCAL), (True, API)):
        pts = [r for r in rows if r["api"] is kind and r.get(x) is not None and r.get(y) is not None]
        if not pts:
            continue
        sizes = [20 + 400 * (size(r) or 0) for r in pts] if size else None
        ax.scatter([r[x] for r in pts], [r[y] for r in pts], s=sizes, alpha=0.75, **style)
        for r in pts:
            ax.annotate(r["run"], (r[x], r[y]), textcoords="offset points", xytext=(3, 3), fontsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # no overlapping long labels
    if y in ("overall", *WEIGHTS):
        ax.set_ylim(-0.05, 1.05)  # scores live in [0, 1]: runs compare across panels


def _scatter(rows, x, y, xlabel, ylabel, title, size=None) -> bytes:
    fig, (ax,) = figure(1, width=6.0, height=4.0)
    _points(ax, rows, x, y, size)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return png(fig)


def _size_vs_components(rows: list[dict]) -> bytes:
    fig, axes = figure(4, width=3.4, height=3.0)
    for ax, metric in zip(axes, ("overall", *WEIGHTS)):
        _points(ax, rows, "params_b", metric)
        ax.set_xlabel("parameters (billions)")
        ax.set_title(metric)
    return png(fig)


def _breakdown(rows: list[dict]) -> bytes:
    """Stacked weighted components per run: the bar's length is the overall score."""
    fig, (ax,) = figure(1, width=6.5, height=max(2.0, 0.35 * len(rows) + 1.2))
    left = [0.0] * len(rows)
    for (metric, w), color in zip(WEIGHTS.items(), ("#4C72B0", "#55A868", "#C44E52")):
        vals = [w * (r[metric] or 0.0) for r in rows]
        ax.barh(range(len(rows)), vals, left=left, color=color, label=f"{w:g}·{metric}")
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(range(len(rows)), [r["run"] + (" (API)" if r["api"] else "") for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("weighted score")
    ax.legend(fontsize=7)
    ax.set_title("Score breakdown per model")
    return png(fig)


def draw_all(ctx: dict[str, Any]) -> dict[str, bytes]:
    import matplotlib

    rows = [r for r in ctx["comparison"] if r["overall"] is not None]
    out: dict[str, bytes] = {}
    if not rows:
        return out
    with matplotlib.rc_context(STYLE):
        out["ranking.png"] = bars(
            [r["run"] for r in rows], [r["overall"] for r in rows], "Overall ranking (WattBot score)", "score"
        )
        out["score_breakdown.png"] = _breakdown(rows)
        out["cost_vs_performance.png"] = _scatter(
            rows, "cost_usd", "overall", "cost (USD)", "overall", "Cost vs performance"
        )
        if any(r["params_b"] for r in rows):
            out["size_vs_score.png"] = _size_vs_components(rows)
            out["size_vs_latency.png"] = _scatter(
                rows, "params_b", "latency_s", "parameters (billions)", "mean latency (s)", "Size vs latency"
            )
            out["size_vs_cost.png"] = _scatter(
                rows, "params_b", "cost_usd", "parameters (billions)", "cost (USD)", "Size vs cost"
            )
            top = max((r["cost_usd"] or 0.0) for r in rows) or 1.0
            out["size_score_cost.png"] = _scatter(
                rows,
                "params_b",
                "overall",
                "parameters (billions)",
                "overall",
                "Size × score × cost (bubble: cost)",
                size=lambda r: (r["cost_usd"] or 0.0) / top,
            )
    return out
