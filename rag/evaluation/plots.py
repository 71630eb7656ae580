"""The plots of report.md: metrics.png, kinds.png, reliability.png and latency.png (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import metrics as M
from .report import metric_label
from .scoring import METRICS, Record, timed


def write_plots(summary: Mapping[str, Any], records: Sequence[Record], out: Path) -> list[str]:
    """metrics.png (rates with their intervals), kinds.png (accuracy per kind, when there are several),
    reliability.png (when answers carry a confidence) and latency.png; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = summary["config"].get("k")
    names = [n for n in METRICS if summary["metrics"].get(n) is not None]
    rows = [(metric_label(n, k) + ("" if METRICS[n][2] else " (lower is better)"), summary["metrics"][n],
             (summary.get("ci") or {}).get(n), summary["counts"].get(n, 0), METRICS[n][2]) for n in names]
    files = [_interval_plot(plt, rows, out / "metrics.png",
                            f"{summary['config'].get('model')}, k={k}: {summary['questions']} questions", "rate")]
    kinds = summary.get("by_kind") or {}
    if len(kinds) > 1:
        rows = [(f"{kind} ({g['questions']})", g["metrics"]["accuracy"], g["ci"]["accuracy"], g["questions"], True)
                for kind, g in kinds.items() if g["metrics"].get("accuracy") is not None]
        files.append(_interval_plot(plt, rows, out / "kinds.png", "Overall accuracy per kind (questions)",
                                    "overall accuracy (answered right or rightly refused)"))
    if summary.get("calibration"):
        files.append(reliability_plot(plt, summary["calibration"], out / "reliability.png"))

    fresh = timed(records)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for key, label in (("first_token_s", "first token"), ("total_s", "total")):
        vals = [r["timings"][key] for r in fresh]
        if vals:
            p50, p95 = M.percentile(vals, 50), M.percentile(vals, 95)
            ax.hist(vals, bins=20, alpha=0.6, label=f"{label} (p50 {p50:.2f} s, p95 {p95:.2f} s)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("questions")
    ax.set_title("Latency per question")
    if fresh:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    return [*files, "latency.png"]


def _interval_plot(plt: Any, rows: Sequence[tuple[str, float, Sequence[float] | None, int, bool]], path: Path,
                   title: str, xlabel: str) -> str:
    """Horizontal bars with their 95% interval as whiskers; the figures are written in a column to the
    right of the axes, so no text overlaps a bar or a whisker."""
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.4))
    ys = list(range(len(rows)))[::-1]
    for y, (_, v, ci, n, higher) in zip(ys, rows, strict=True):
        ax.barh(y, v, color="#4c72b0" if higher else "#c44e52", height=0.6)
        ax.plot([v], [y], "o", color="black", ms=4)  # a zero still shows
        if ci:
            ax.errorbar(v, y, xerr=[[v - ci[0]], [ci[1] - v]], fmt="none", ecolor="black", capsize=3, lw=1)
        text = f"{v:.2f}" + (f"  [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f"  n={n}"
        ax.text(1.04, y, text, va="center", fontsize=9, transform=ax.get_yaxis_transform(), clip_on=False)
    ax.set_yticks(ys, [r[0] for r in rows])
    ax.set_xlim(-0.01, 1.01)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel(f"{xlabel} (whiskers: 95% interval)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def reliability_plot(plt: Any, cal: Mapping[str, Any], path: Path) -> str:
    """Accuracy against mean confidence per bin (the diagonal is perfect calibration), and how many
    answers fall in each bin."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bins = [b for b in cal["bins"] if b["count"]]
    width = cal["bins"][0]["high"] - cal["bins"][0]["low"]
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect calibration")
    ax.bar([b["low"] + width / 2 for b in bins], [b["accuracy"] for b in bins], width=width * 0.9,
           color="#4c72b0", alpha=0.8, label="accuracy of the answers in the bin")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="black",
            label="(mean confidence, accuracy)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability: ECE {cal['ece']:.3f} over {cal['n']} answers")
    ax.legend(loc="upper left", fontsize=8)
    hist.bar([b["low"] + width / 2 for b in cal["bins"]], [b["count"] for b in cal["bins"]], width=width * 0.9,
             color="#888888")
    hist.set_xlabel("confidence the answer carries")
    hist.set_ylabel("answers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
