"""The report's PNG plots, drawn from the report context only (report.build).

Reproducible bytes: the Agg canvas without pyplot (no global figure state, no GUI backend),
fixed rcParams (matplotlib's bundled DejaVu font, fixed size and dpi), and no PNG metadata.
"""

from __future__ import annotations

import io
from typing import Any

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "path.simplify": False,
    "text.parse_math": False,
}  # names are plain text ("$" included); mathtext parsing also costs ~0.5 s
DPI = 100


def _figure(n_panels: int = 1, width: float = 4.2, height: float = 3.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(n_panels, 3)
    rows = (n_panels + cols - 1) // cols
    # fixed margins: constrained layout measures every text artist and cost seconds per report
    fig = Figure(figsize=(width * cols, height * rows + 0.4), dpi=DPI)
    fig.subplots_adjust(
        left=0.08 if cols > 1 else 0.22,
        right=0.97,
        bottom=0.12 / rows,
        top=1 - 0.75 / (height * rows + 0.4),
        wspace=0.3,
        hspace=0.45,
    )
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    return fig, axes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def _evolution(evo: dict) -> bytes:
    domains = list(evo["curves"])
    fig, axes = _figure(len(domains))
    for ax, dom in zip(axes, domains):
        for arm, curve in evo["curves"][dom].items():
            xs, ys = [e for e, _ in curve], [v for _, v in curve]
            (line,) = ax.plot(xs, ys, marker="o", label=arm)
            best = next((r for r in evo["rows"] if r["domain"] == dom and r["arm"] == arm), None)
            if best and best["best_epoch"] is not None:
                ax.plot(
                    [best["best_epoch"]],
                    [best["best"]],
                    marker="*",
                    markersize=12,
                    color=line.get_color(),
                    linestyle="none",
                )
        arrow = "higher" if evo["higher_is_better"][dom] else "lower"
        ax.set_title(f"{dom} ({arrow} is better)")
        _epoch_axis(ax)
        ax.set_ylabel("score")
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"Learning curves per domain ({evo['source']}); * = best checkpoint")
    return _png(fig)


def _gradients(grads: dict) -> bytes:
    metrics = sorted({m for series in grads["series"].values() for m in series})
    fig, axes = _figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        for arm, series in grads["series"].items():
            if metric in series:
                pts = sorted(series[metric])
                ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", label=arm)
        if "cosine" in metric:
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(metric)
        _epoch_axis(ax)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle("Gradient-conflict diagnostics (training)")
    return _png(fig)


def _bars(labels: list[str], values: list[float], title: str, xlabel: str) -> bytes:
    fig, (ax,) = _figure(1, width=6.0, height=max(2.0, 0.35 * len(labels) + 1.0))
    ax.barh(range(len(labels)), values, color="#4C72B0")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def _size_vs_score(rows: list[dict]) -> bytes:
    fig, (ax,) = _figure(1, width=6.0, height=4.0)
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
    return _png(fig)


def draw_all(ctx: dict[str, Any]) -> dict[str, bytes]:
    import matplotlib

    out: dict[str, bytes] = {}
    with matplotlib.rc_context(STYLE):
        if ctx["evolution"]:
            out["evolution.png"] = _evolution(ctx["evolution"])
        if ctx["gradients"]:
            out["gradients.png"] = _gradients(ctx["gradients"])
        inf = ctx["inference"]
        if inf and inf["scaling"]["rows"]:
            rows = inf["scaling"]["rows"]
            by_rank = sorted(
                (r for r in rows if r["score"] is not None), key=lambda r: inf["scaling"]["ranking"].index(r["model"])
            )
            if by_rank:
                out["ranking.png"] = _bars(
                    [r["model"] for r in by_rank],
                    [r["score"] for r in by_rank],
                    "Overall ranking (mean score over tasks)",
                    "score",
                )
            if any(r["params_b"] for r in rows if r["score"] is not None):
                out["size_vs_score.png"] = _size_vs_score(rows)
            lat = [r for r in rows if r["latency_s_mean"] is not None]
            if lat:
                out["latency.png"] = _bars(
                    [r["model"] for r in lat], [r["latency_s_mean"] for r in lat], "Mean latency per example", "seconds"
                )
            energy = [r for r in rows if r["energy_wh"] is not None]
            if energy:
                out["energy.png"] = _bars(
                    [r["model"] for r in energy], [r["energy_wh"] for r in energy], "Energy (all tasks)", "Wh"
                )
    return out
