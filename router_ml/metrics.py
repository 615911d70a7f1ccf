"""Routing quality metrics: accuracy, macro-F1, per-class scores, confusion matrix, calibration, thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

__all__ = [
    "Calibration",
    "ClassificationReport",
    "calibration",
    "classification_report",
    "paired_bootstrap",
    "per_group_scores",
    "threshold_for_precision",
    "threshold_for_route_share",
]


@dataclass(frozen=True)
class Calibration:
    """Reliability of the top-class confidence.

    Attributes:
        ece (float): expected calibration error (bin-weighted |accuracy - confidence|).
        bin_edges (list[float]): ``n_bins + 1`` edges on [0, 1].
        bin_accuracy (list[float | None]): accuracy per bin (``None`` for an empty bin).
        bin_confidence (list[float | None]): mean confidence per bin.
        bin_count (list[int]): predictions per bin.
    """

    ece: float
    bin_edges: list[float]
    bin_accuracy: list[float | None]
    bin_confidence: list[float | None]
    bin_count: list[int]


def calibration(proba: np.ndarray, y_true: Sequence[str], classes: Sequence[str], n_bins: int = 10) -> Calibration:
    """Expected calibration error and reliability bins of the top-class probability."""
    classes = np.asarray(classes)
    confidence = proba.max(axis=1)
    correct = classes[proba.argmax(axis=1)] == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    acc: list[float | None] = []
    conf: list[float | None] = []
    count: list[int] = []
    ece = 0.0
    for b in range(n_bins):
        mask = which == b
        n = int(mask.sum())
        count.append(n)
        if n == 0:
            acc.append(None)
            conf.append(None)
            continue
        a, c = float(correct[mask].mean()), float(confidence[mask].mean())
        acc.append(a)
        conf.append(c)
        ece += n / len(confidence) * abs(a - c)
    return Calibration(float(ece), edges.tolist(), acc, conf, count)


@dataclass(frozen=True)
class ClassificationReport:
    """Scores of predicted labels against true labels.

    Attributes:
        n (int): number of prompts.
        accuracy (float): share of exact matches.
        macro_f1 (float): unweighted mean of per-class F1.
        per_class (dict[str, dict[str, float]]): precision, recall, f1 and support for each class.
        labels (list[str]): the order of the confusion matrix rows (true) and columns (predicted).
        confusion (list[list[int]]): counts, rows = true label, columns = predicted label.
    """

    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    labels: list[str]
    confusion: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def format(self) -> str:
        """A plain-text table for terminals."""
        width = max(len(label) for label in self.labels) + 2
        lines = [f"n={self.n}  accuracy={self.accuracy:.3f}  macro-F1={self.macro_f1:.3f}", ""]
        lines.append(f"{'':<{width}}precision  recall  f1     support")
        for label in self.labels:
            s = self.per_class[label]
            lines.append(
                f"{label:<{width}}{s['precision']:<11.3f}{s['recall']:<8.3f}{s['f1']:<7.3f}{int(s['support'])}"
            )
        lines += ["", "confusion (rows = true, columns = predicted)"]
        lines.append(" " * width + "".join(f"{label[:9]:>10}" for label in self.labels))
        for label, row in zip(self.labels, self.confusion, strict=True):
            lines.append(f"{label:<{width}}" + "".join(f"{v:>10}" for v in row))
        return "\n".join(lines)


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> ClassificationReport:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix."""
    labels = sorted(set(y_true) | set(y_pred)) if labels is None else list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    present = [label for label in labels if label in set(y_true)]
    return ClassificationReport(
        n=len(y_true),
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        per_class=per_class,
        labels=labels,
        confusion=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    )


def threshold_for_precision(
    proba: np.ndarray, y_true: Sequence[str], classes: Sequence[str], target_precision: float
) -> tuple[float, float, float]:
    """Lowest confidence threshold whose answered (non-abstained) decisions reach ``target_precision``.

    Returns:
        tuple[float, float, float]: ``(threshold, precision, coverage)``; coverage is the share not abstained.
        If no threshold reaches the target, the one with the best precision is returned.
    """
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    confidence = proba.max(axis=1)
    correct = np.asarray(classes)[proba.argmax(axis=1)] == np.asarray(y_true)
    order = np.argsort(-confidence)
    precision_at = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision_at >= target_precision)[0]
    k = int(ok.max()) if len(ok) else int(np.argmax(precision_at))
    threshold = float(confidence[order][k])
    return threshold, float(precision_at[k]), (k + 1) / len(order)


def threshold_for_route_share(
    proba: np.ndarray, classes: Sequence[str], route: str, target_share: float, default_route: str
) -> tuple[float, float]:
    """Confidence threshold that sends closest to ``target_share`` of the traffic to ``route``.

    Decisions below the threshold abstain to ``default_route``, so raising the threshold moves traffic there.

    Returns:
        tuple[float, float]: ``(threshold, achieved share)``; ties go to the lower threshold.
    """
    if not 0.0 <= target_share <= 1.0:
        raise ValueError(f"target_share must be in [0, 1], got {target_share}")
    classes = list(classes)
    if route not in classes or default_route not in classes:
        raise ValueError(f"route {route!r} and default {default_route!r} must be among {classes}")
    confidence = proba.max(axis=1)
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    best: tuple[float, float] | None = None
    for threshold in np.concatenate([[0.0], np.unique(confidence)]):
        final = np.where(confidence >= threshold, predicted, default_route)
        share = float(np.mean(final == route))
        if best is None or abs(share - target_share) < abs(best[1] - target_share) - 1e-12:
            best = (float(threshold), share)
    assert best is not None
    return best


def per_group_scores(
    y_true: Sequence[str], y_pred: Sequence[str], groups: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 of each source (a data set, a batch, a customer), worst macro-F1 first.

    A source's macro-F1 averages over the labels it actually contains, so a source of one label scores its F1.
    """
    by_group: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        by_group.setdefault(group, []).append(i)
    scores = {}
    for group, rows in by_group.items():
        truth, pred = [y_true[i] for i in rows], [y_pred[i] for i in rows]
        present = sorted(set(truth))
        scores[group] = {
            "n": len(rows),
            "accuracy": float(accuracy_score(truth, pred)),
            "macro_f1": float(f1_score(truth, pred, labels=present, average="macro", zero_division=0)),
        }
    return dict(sorted(scores.items(), key=lambda item: (item[1]["macro_f1"], item[0])))


def _macro_f1_batched(truth: np.ndarray, pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Macro-F1 along the last axis of integer-coded labels (labels absent from a row's truth are left out)."""
    f1s, present = [], []
    for k in range(n_labels):
        is_true, is_pred = truth == k, pred == k
        tp = np.sum(is_true & is_pred, axis=-1)
        denominator = np.sum(is_true, axis=-1) + np.sum(is_pred, axis=-1)
        f1s.append(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0))
        present.append(np.any(is_true, axis=-1))
    f1, mask = np.stack(f1s), np.stack(present)
    return (f1 * mask).sum(axis=0) / np.maximum(mask.sum(axis=0), 1)


def paired_bootstrap(
    y_true: Sequence[str],
    pred_a: Sequence[str],
    pred_b: Sequence[str],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """The macro-F1 difference ``b − a`` on the same prompts, with a paired bootstrap confidence interval.

    Prompts are resampled with replacement, the same prompts for both predictions (scipy's ``bootstrap`` with
    ``paired=True``, percentile method), so the interval reflects how much the difference depends on which
    prompts happened to be in the set.

    Returns:
        dict: ``delta`` (on the full set), ``low`` and ``high`` (the interval), ``confidence``, ``n``.
    """
    from scipy.stats import bootstrap

    labels = sorted(set(y_true) | set(pred_a) | set(pred_b))
    code = {label: i for i, label in enumerate(labels)}
    t, a, b = (np.array([code[v] for v in values]) for values in (y_true, pred_a, pred_b))

    def delta(t: np.ndarray, a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return _macro_f1_batched(t, b, len(labels)) - _macro_f1_batched(t, a, len(labels))

    result = bootstrap(
        (t, a, b), delta, paired=True, vectorized=True, n_resamples=n_resamples, confidence_level=confidence,
        method="percentile", random_state=np.random.default_rng(seed),
    )  # fmt: skip
    interval = result.confidence_interval
    return {
        "delta": round(float(delta(t, a, b)), 4),
        "low": round(float(interval.low), 4),
        "high": round(float(interval.high), 4),
        "confidence": confidence,
        "n": len(t),
    }
