"""PNG plots of an evaluation: confusion matrix and reliability diagram.

Figures are built with matplotlib's object API (no pyplot state, no backend switch), so they render inline in
Jupyter when returned from a cell and save headless anywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .metrics import Calibration, ClassificationReport

__all__ = ["plot_confusion", "plot_reliability", "write_plots"]


def plot_confusion(report: ClassificationReport, title: str = "Routing confusion matrix") -> Figure:
    """A confusion-matrix figure: counts, with rows normalised to recall for the colours."""
    counts = np.asarray(report.confusion)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(5.5, 4.8))
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(report.labels)), report.labels, rotation=30)
    ax.set_yticks(range(len(report.labels)), report.labels)
    ax.set_xlabel("predicted route")
    ax.set_ylabel("true route")
    for i in range(len(report.labels)):
        for j in range(len(report.labels)):
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, f"{counts[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center", color=colour, fontsize=9)
    ax.set_title(f"{title}\naccuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true route")
    fig.tight_layout()
    return fig


def plot_reliability(cal: Calibration, title: str = "Reliability diagram") -> Figure:
    """Accuracy vs confidence per bin, with the diagonal and the number of predictions per bin."""
    edges = np.asarray(cal.bin_edges)
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    accuracy = np.array([np.nan if a is None else a for a in cal.bin_accuracy])
    fig = Figure(figsize=(5.5, 5.5))
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.bar(centres, np.nan_to_num(accuracy), width=width * 0.9, color="tab:blue", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_ylabel("accuracy in bin")
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.set_title(f"{title}\nexpected calibration error {cal.ece:.3f}")
    bottom.bar(centres, cal.bin_count, width=width * 0.9, color="tab:gray")
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_ylabel("prompts")
    bottom.set_xlim(0, 1)
    fig.tight_layout()
    return fig


def write_plots(report: ClassificationReport, cal: Calibration, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Write ``confusion_matrix.png`` and ``reliability.png`` (with an optional prefix) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in (("confusion_matrix", plot_confusion(report)), ("reliability", plot_reliability(cal))):
        path = out / f"{prefix}{name}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths
