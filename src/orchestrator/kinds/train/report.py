"""The report of the `train` kind: the reader of training arms (metrics.jsonl, summary.json) into
rows of the results table, and the training experiment's sections: its arms in the overview, then
arm against baseline, learning curves, checkpoint choice and gradient conflicts (analyses:
`compare.py`, over the training rows and the evaluation rows the `eval` kind read; markdown:
`arms.md.j2`, `report.md.j2`; plots below)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.kinds import Section
from orchestrator.kinds.train import compare
from orchestrator.reporting.formatting import num
from orchestrator.reporting.plots import epoch_axis, figure, png, styled
from orchestrator.reporting.readers import Reader
from orchestrator.reporting.table import Results, Row, finite, higher_is_better, relative

HERE = Path(__file__).parent


def is_training_dir(d: Path) -> bool:
    if (d / paths.METRICS_FILE).exists():
        return True
    try:
        s = json.loads((d / paths.SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(s, dict) and "arm" in s


def sections(res: Results, opts: Any) -> list[Section]:
    cmp = compare.comparisons(res, opts.baseline)
    evo = compare.evolution(res, opts.overfit_threshold)
    grads = compare.gradients(res)
    body = {
        "comparison": cmp,
        "all_arms": compare.arms_vs_baseline(res, opts.baseline),
        "evolution": evo,
        "choice": compare.checkpoint_choice(res),
        "gradients": grads,
    }

    def plots() -> dict[str, bytes]:
        out = {}
        if evo:
            out["evolution.png"] = _evolution(evo)
        if grads:
            out["gradients.png"] = _gradients(grads)
        return out

    return [
        Section({"arms": arms(res)}, HERE / "arms.md.j2", order=10, overview=True),
        Section(
            body,
            HERE / "report.md.j2",
            order=10,
            recommendations=compare.recommendations(cmp, evo),
            plots=lambda: styled(plots),
        ),
    ]


def arms(res: Results) -> list[dict]:
    """Per arm: its job's state and hours, epochs, early stop, best checkpoint."""
    by_run = {(r.experiment, r.run): r for r in res.of("job")}
    summaries = {r.arm: r for r in res.of("train_summary")}
    last_epoch: dict[str, int] = {}
    for r in res.of("train"):
        last_epoch[r.arm] = max(last_epoch.get(r.arm, 0), r.epoch if r.epoch is not None else 0)
    rows = []
    for arm in compare.arms_of(res):
        s, job = summaries.get(arm), by_run.get((res.experiment, arm))
        rows.append(
            {
                "arm": arm,
                "state": job.state if job else "",
                "node": job.node if job else "",
                "epochs": last_epoch.get(arm),
                "wall_hours": job.wall_hours if job and job.wall_hours is not None else (s.wall_hours if s else None),
                "device_hours": job.device_hours
                if job and job.device_hours is not None
                else (s.device_hours if s else None),
                "stopped_early": s.state == "STOPPED_EARLY" if s else None,
                "stop_epoch": s.epoch if s else None,
                "stop_reason": s.detail if s else "",
                "best": f"{s.metric} = {num(s.value)} at {s.checkpoint}" if s and s.metric else "",
            }
        )
    return rows


# --------------------------------------------------------------------------- reading


def read(reader: Reader, arm_dir: Path) -> bool:
    """A training arm's metrics.jsonl and summary.json → rows; False when the folder is not an arm."""
    if not is_training_dir(arm_dir):
        return False
    arm = arm_dir.name
    metrics_path = arm_dir / paths.METRICS_FILE
    rel = relative(metrics_path)
    if metrics_path.exists():
        for i, rec in reader.jsonl(metrics_path):
            epoch = rec.get("epoch")
            if not isinstance(epoch, int):
                reader.warn(metrics_path, f"record {i} has no integer 'epoch'; skipped")
                continue
            for key, value in rec.items():
                v = finite(value)
                if key in ("schema_version", "epoch") or v is None:
                    continue
                parts = key.split("/")
                domain = parts[1] if len(parts) == 3 and parts[0] == "val" else ""
                reader.res.rows.append(
                    Row(
                        "train",
                        reader.exp,
                        arm=arm,
                        run=arm,
                        epoch=epoch,
                        domain=domain,
                        metric=key,
                        value=v,
                        higher_is_better=higher_is_better(key),
                        file=rel,
                    )
                )
    summary_path = arm_dir / paths.SUMMARY_FILE
    if summary_path.exists():
        s = reader.json_file(summary_path)
        if s is None:
            return True
        best = s.get("best") if isinstance(s.get("best"), dict) else {}
        best_epoch = best.get("epoch") if isinstance(best.get("epoch"), int) else None
        stop_epoch = s.get("stop_epoch") if isinstance(s.get("stop_epoch"), int) else None
        wall = finite(s.get("wall_time_s"))
        metric = str(best.get("metric") or "")
        reader.res.rows.append(
            Row(
                "train_summary",
                reader.exp,
                arm=str(s.get("arm") or arm),
                run=arm,
                checkpoint=f"epoch_{best_epoch}" if best_epoch is not None else "",
                epoch=stop_epoch,
                metric=metric,
                value=finite(best.get("value")),
                higher_is_better=higher_is_better(metric) if metric else None,
                state="STOPPED_EARLY" if s.get("stopped_early") else "FINISHED",
                wall_hours=wall / 3600 if wall is not None else None,
                device_hours=finite(s.get("device_hours")),
                detail=str(s.get("stop_reason") or ""),
                file=relative(summary_path),
            )
        )
        ev = s.get("evaluation") if isinstance(s.get("evaluation"), dict) else {}
        if ev.get("significance_test") in ("bootstrap", "mcnemar"):  # the choice's verdict
            reader.res.paired_tests[str(s.get("arm") or arm)] = ev["significance_test"]
        for which in ("heldout", "reward"):  # evaluation.every_save: the two checkpoint choices
            choice = s.get(f"best_{which}")
            if isinstance(choice, dict) and isinstance(choice.get("epoch"), int):
                m = str(choice.get("metric") or "")
                reader.res.rows.append(
                    Row(
                        "choice",
                        reader.exp,
                        arm=str(s.get("arm") or arm),
                        run=arm,
                        checkpoint=f"epoch_{choice['epoch']}",
                        epoch=choice["epoch"],
                        metric=m,
                        value=finite(choice.get("value")),
                        higher_is_better=higher_is_better(m) if m else None,
                        detail=which,
                        file=relative(summary_path),
                    )
                )

    # --------------------------------------------------------------------------- plots
    return True


def _evolution(evo: dict) -> bytes:
    domains = list(evo["curves"])
    fig, axes = figure(len(domains))
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
        epoch_axis(ax)
        ax.set_ylabel("score")
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"Learning curves per domain ({evo['source']}); * = best checkpoint")
    return png(fig)


def _gradients(grads: dict) -> bytes:
    metrics = sorted({m for series in grads["series"].values() for m in series})
    fig, axes = figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        for arm, series in grads["series"].items():
            if metric in series:
                pts = sorted(series[metric])
                ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", label=arm)
        if "cosine" in metric:
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(metric)
        epoch_axis(ax)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle("Gradient-conflict diagnostics (training)")
    return png(fig)
