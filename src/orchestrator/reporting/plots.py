"""What every kind's report plots share: the style, the figure and PNG writer, bar charts.

Reproducible bytes: the Agg canvas without pyplot (no global figure state, no GUI backend),
fixed rcParams (matplotlib's bundled DejaVu font, fixed size and dpi), and no PNG metadata.
"""

from __future__ import annotations

import io
from collections.abc import Callable

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


def figure(n_panels: int = 1, width: float = 4.2, height: float = 3.2):
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


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def bars(labels: list[str], values: list[float], title: str, xlabel: str) -> bytes:
    fig, (ax,) = figure(1, width=6.0, height=max(2.0, 0.35 * len(labels) + 1.0))
    ax.barh(range(len(labels)), values, color="#4C72B0")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return png(fig)


def styled(draw: Callable[[], dict[str, bytes]]) -> dict[str, bytes]:
    """Run a kind's plot drawing (name → PNG bytes) under the shared style; matplotlib loads here."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        return draw()
