"""The outcome evaluation of success-predicting routers against baselines: numbers, a text table, JSON and a plot."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .baselines import best_single_choice, cheapest_choice, mix_curve
from .metrics import (
    CostQualityCurve,
    apgr,
    check_grid,
    choice_point,
    cost_quality_curve,
    cpt,
    expected_calibration_error,
    paired_bootstrap_lead,
    pgr_curve,
    price_at_quality,
    quality_at_price,
)

__all__ = ["OutcomeReport", "evaluate_outcomes", "plot_report"]

CPT_LEVELS = (0.5, 0.8, 0.95)


def _round(value: Any, digits: int = 4) -> Any:
    """``value`` with every float rounded and numpy scalars and arrays turned into plain Python (NaN → None)."""
    if isinstance(value, dict):
        return {str(k): _round(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_round(v, digits) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else round(float(value), digits)
    return value


@dataclass
class OutcomeReport:
    """How routers that predict per-model success compare with baselines on one evaluation set.

    Attributes:
        mode (str): ``"two"`` (weak/strong pair: APGR and CPT) or ``"many"`` (cost–quality at the best single
            model's price and quality).
        n (int): prompts.
        models (list[str]): the models, in the columns' order.
        prices (list[float]): their prices per call.
        best_single (dict[str, Any]): ``model``, ``price`` and ``quality`` of the best single model here.
        rows (dict[str, dict[str, Any]]): one per router or baseline: ``kind``, ``quality`` and ``price`` of its
            default operating point (λ = 0), ``quality_at_best_price``, ``price_at_best_quality``, and for two
            models ``apgr`` and ``cpt50``/``cpt80``/``cpt95`` (shares of strong calls).
        ece (dict[str, dict[str, float]]): per router, the calibration error of each model's success head.
        lead (dict[str, dict[str, Any]]): per router, its lead over the kNN router with a 95 % paired bootstrap
            interval (``metric``, ``lead``, ``low``, ``high``).
        groups (dict[str, dict[str, Any]]): per group, ``n`` and per router APGR (two) or quality/price at λ = 0.
        weak (str | None): the weak model (two-model mode).
        strong (str | None): the strong model.
        curves (dict[str, CostQualityCurve]): the cost–quality curve of each curve-shaped row.
        pgr (dict[str, tuple[np.ndarray, np.ndarray]]): ``(shares, pgr)`` of each row with a score (two models).
    """

    mode: str
    n: int
    models: list[str]
    prices: list[float]
    best_single: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    ece: dict[str, dict[str, float]] = field(default_factory=dict)
    lead: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    weak: str | None = None
    strong: str | None = None
    curves: dict[str, CostQualityCurve] = field(default_factory=dict, repr=False)
    pgr: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the numbers, each curve's frontier, and each PGR curve at shares 0, 0.01, …, 1."""
        grid = np.linspace(0.0, 1.0, 101)
        return _round(
            {
                "mode": self.mode,
                "n": self.n,
                "models": self.models,
                "prices": self.prices,
                "weak": self.weak,
                "strong": self.strong,
                "best_single": self.best_single,
                "rows": self.rows,
                "ece": self.ece,
                "lead_over_knn": self.lead,
                "groups": self.groups,
                "frontiers": {
                    name: {"price": c.frontier_price, "quality": c.frontier_quality} for name, c in self.curves.items()
                },
                "pgr_curves": {
                    name: {"share": grid, "pgr": np.interp(grid, s, p)} for name, (s, p) in self.pgr.items()
                },
            }
        )

    def format(self) -> str:
        """A plain-text table for terminals: one line per router or baseline, then the leads over kNN."""
        best = self.best_single
        head = (
            f"n={self.n}  best single model: {best['model']} (quality {best['quality']:.3f}, price {best['price']:.3g})"
        )
        if self.mode == "two":
            cols = ["apgr", *(f"cpt{round(x * 100)}" for x in CPT_LEVELS)]
            title = f"{'quality':>8}{'price':>9}{'APGR':>8}" + "".join(f"{c.upper():>8}" for c in cols[1:])
        else:
            cols = ["quality_at_best_price", "price_at_best_quality"]
            title = f"{'quality':>8}{'price':>9}{'Q@best$':>9}{'$@bestQ':>9}"
        width = max(len(name) for name in self.rows) + 2
        lines = [head, *([f"weak {self.weak}, strong {self.strong}"] if self.mode == "two" else []), ""]
        lines.append(" " * width + title)
        for name, row in self.rows.items():
            values = [_cell(row.get(c), 9 if self.mode == "many" else 8) for c in cols]
            lines.append(f"{name:<{width}}{row['quality']:>8.3f}{row['price']:>9.3g}" + "".join(values))
        for name, lead in self.lead.items():
            lines.append(
                f"{name} − knn ({lead['metric']}): {lead['lead']:+.3f} [{lead['low']:+.3f}, {lead['high']:+.3f}]"
            )
        for name, per_model in self.ece.items():
            worst = max(per_model, key=lambda m: per_model[m])
            lines.append(f"{name} calibration: worst ECE {per_model[worst]:.3f} ({worst})")
        return "\n".join(lines)

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``report.json`` and ``cost_quality.png`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        json_path, png_path = out / "report.json", out / "cost_quality.png"
        json_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        plot_report(self).savefig(png_path, dpi=110)
        return [json_path, png_path]


def _cell(value: Any, width: int) -> str:
    """A right-aligned number, or a dash where there is none."""
    return (
        f"{'—':>{width}}"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:>{width}.3f}"
    )


def plot_report(report: OutcomeReport) -> Figure:
    """Quality against mean price per call for every row (and, for two models, PGR against strong calls)."""
    fig = Figure(figsize=(12, 5) if report.mode == "two" else (7, 5))
    axes = fig.subplots(1, 2 if report.mode == "two" else 1, squeeze=False)[0]
    ax = axes[0]
    for name, curve in report.curves.items():
        ax.plot(curve.frontier_price, curve.frontier_quality, marker=".", ms=3, lw=1.5, label=name)
    singles = [report.rows[f"only {m}"] for m in report.models]
    ax.scatter(
        [r["price"] for r in singles], [r["quality"] for r in singles], color="gray", s=25, label="single models"
    )
    for model, row in zip(report.models, singles, strict=True):
        ax.annotate(
            model, (row["price"], row["quality"]), fontsize=7, color="gray", xytext=(3, -8), textcoords="offset points"
        )
    if "category" in report.rows:
        row = report.rows["category"]
        ax.scatter([row["price"]], [row["quality"]], marker="D", color="black", s=40, zorder=3, label="category")
    if max(report.prices) > 20 * max(min(report.prices), 1e-12):
        ax.set_xscale("log")
    ax.set_xlabel("mean price per call")
    ax.set_ylabel("mean quality")
    ax.set_title(f"Cost–quality frontiers (n={report.n})")
    ax.legend(fontsize=8, loc="best")
    if report.mode == "two":
        ax = axes[1]
        for name, (shares, pgr) in report.pgr.items():
            label = f"{name} (APGR {report.rows[name]['apgr']:.3f})"
            ax.plot(shares, pgr, lw=1.5, label=label, ls="--" if name == "random" else "-")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xlabel(f"share of calls to {report.strong}")
        ax.set_ylabel("performance gap recovered")
        ax.set_title("PGR curves")
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _two_model_rows(
    rows: dict[str, dict[str, Any]], scores_by_name: dict[str, np.ndarray], scores: np.ndarray, w: int, s: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Add APGR and CPT to each row with a strong-minus-weak score; return the PGR curves."""
    curves = {}
    for name, score in scores_by_name.items():
        args = (score, scores[:, w], scores[:, s])
        curves[name] = pgr_curve(*args)
        rows[name]["apgr"] = apgr(*args)
        rows[name].update({f"cpt{round(x * 100)}": cpt(*args, x) for x in CPT_LEVELS})
    return curves


def _lead_metric(mode: str, prices: np.ndarray, w: int, s: int, budget: float) -> tuple[str, Callable[..., float]]:
    """The scalar the bootstrap compares: APGR (two models) or quality at the best single model's price."""
    if mode == "two":
        return "apgr", lambda p, y: apgr(p[:, s] - p[:, w], y[:, w], y[:, s])

    def quality(p: np.ndarray, y: np.ndarray) -> float:
        found = quality_at_price(cost_quality_curve(p, y, prices), budget)
        return float("nan") if found is None else found

    return "quality_at_best_price", quality


def _group_rows(
    mode: str,
    preds: dict[str, np.ndarray],
    scores: np.ndarray,
    prices: np.ndarray,
    groups: Sequence[str],
    w: int,
    s: int,
) -> dict[str, dict[str, Any]]:
    """Per group: APGR of each router (two models; None where the pair ties), else quality and price at λ = 0."""
    labels = np.asarray(groups)
    out: dict[str, dict[str, Any]] = {}
    for group in sorted(set(labels.tolist())):
        rows = labels == group
        y = scores[rows]
        entry: dict[str, Any] = {"n": int(rows.sum())}
        for name, p in preds.items():
            if mode == "two":
                gap = y[:, s].mean() - y[:, w].mean()
                entry[name] = apgr(p[rows, s] - p[rows, w], y[:, w], y[:, s]) if abs(gap) > 1e-12 else None
            else:
                curve = cost_quality_curve(p[rows], y, prices)
                entry[name] = {"quality": float(curve.quality[0]), "price": float(curve.price[0])}
        out[str(group)] = entry
    return out


def _cost_quality_rows(
    preds: dict[str, np.ndarray],
    routers: set[str],
    scores: np.ndarray,
    models: list[str],
    prices: np.ndarray,
    category_choice: np.ndarray | None,
    best: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, CostQualityCurve]]:
    """Every row's default operating point and its numbers at the best single model's price and quality."""
    best_price, best_quality = float(prices[best]), float(scores[:, best].mean())
    rows: dict[str, dict[str, Any]] = {}
    curves = {name: cost_quality_curve(p, scores, prices) for name, p in {**preds, "oracle": scores}.items()}
    curves["random"] = mix_curve(scores, prices)
    for name, curve in curves.items():
        kind = "router" if name in routers else "baseline"
        rows[name] = {"kind": kind, "quality": float(curve.quality[0]), "price": float(curve.price[0])}
    rows["random"].update(quality=float(scores.mean()), price=float(prices.mean()))  # the uniform mix
    points = {"cheapest": cheapest_choice(scores, prices)}
    points.update({f"only {m}": np.full(len(scores), j) for j, m in enumerate(models)})
    if category_choice is not None:
        points["category"] = np.asarray(category_choice, dtype=int)
    for name, choice in points.items():
        price, quality = choice_point(choice, scores, prices)
        rows[name] = {"kind": "baseline", "quality": quality, "price": price}
    for name, row in rows.items():
        curve = curves.get(name)
        if curve is None:
            row["quality_at_best_price"] = row["quality"] if row["price"] <= best_price + 1e-12 else None
            row["price_at_best_quality"] = row["price"] if row["quality"] >= best_quality - 1e-12 else None
        else:
            row["quality_at_best_price"] = quality_at_price(curve, best_price)
            row["price_at_best_quality"] = price_at_quality(curve, best_quality)
    return rows, curves


def evaluate_outcomes(
    pred: dict[str, np.ndarray],
    scores: np.ndarray,
    models: Sequence[str],
    prices: Sequence[float],
    *,
    knn_pred: np.ndarray | None = None,
    category_choice: np.ndarray | None = None,
    groups: Sequence[str] | None = None,
    weak: str | None = None,
    strong: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> OutcomeReport:
    """Score routers' predicted P(success) against the real outcomes, with baselines, on the same prompts.

    Each router (and ``knn_pred``, and the oracle, whose prediction is the outcome itself) is swept over the
    price weight λ into a cost–quality curve; its row's quality and price are at λ = 0. The baselines are every
    single model, the cheapest, the best single one, random mixing of single models (the hull of their points;
    its row is the uniform mix), and a category router's ``category_choice`` (model index per prompt). With two
    models (weak = the cheaper unless named) each scored row also gets APGR and CPT. With ``knn_pred``, each
    router's lead over kNN gets a paired bootstrap interval (``bootstrap`` resamples; 0 skips it): on APGR for
    two models, else on the quality at the best single model's price (that price fixed from the full set).

    Args:
        pred (dict[str, np.ndarray]): router name → ``(n, n_models)`` predicted P(success).
        scores (np.ndarray): ``(n, n_models)`` real outcomes in [0, 1], no NaN.
        models (Sequence[str]): the column names.
        prices (Sequence[float]): price per call of each model.
        groups (Sequence[str] | None): a group per prompt for per-group numbers.

    Returns:
        OutcomeReport: the numbers, curves and plot data.
    """
    models = list(models)
    scores, price_arr = _validate(pred, scores, models, prices, groups)
    mode = "two" if len(models) == 2 else "many"
    w, s = _pair(models, price_arr, weak, strong) if mode == "two" else (0, 0)
    best = int(best_single_choice(scores, price_arr)[0])
    best_price = float(price_arr[best])

    preds = dict(pred)
    if knn_pred is not None:
        preds["knn"] = check_grid(knn_pred, scores, price_arr)[0]
    rows, curves = _cost_quality_rows(preds, set(pred), scores, models, price_arr, category_choice, best)
    pair = {"weak": models[w], "strong": models[s]} if mode == "two" else {}
    best_row = {"model": models[best], "price": best_price, "quality": float(scores[:, best].mean())}
    report = OutcomeReport(mode, len(scores), models, price_arr.tolist(), best_row, rows, curves=curves, **pair)
    if mode == "two":
        by_score = {name: p[:, s] - p[:, w] for name, p in {**preds, "oracle": scores}.items()}
        by_score["random"] = np.zeros(len(scores))  # the expected random curve: one tied block, the diagonal
        report.pgr = _two_model_rows(rows, by_score, scores, w, s)
        if category_choice is not None:
            gap = scores[:, s].mean() - scores[:, w].mean()
            rows["category"]["share_strong"] = float(np.mean(np.asarray(category_choice) == s))
            rows["category"]["pgr"] = (rows["category"]["quality"] - scores[:, w].mean()) / gap
    report.ece = {
        name: {m: expected_calibration_error(p[:, j], scores[:, j]) for j, m in enumerate(models)}
        for name, p in preds.items()
    }
    if knn_pred is not None and bootstrap > 0:
        metric_name, metric = _lead_metric(mode, price_arr, w, s, best_price)
        for i, (name, p) in enumerate(pred.items()):
            lead = paired_bootstrap_lead(
                metric, (p, scores), (preds["knn"], scores), n_resamples=bootstrap, seed=seed + i
            )
            report.lead[name] = {"metric": metric_name, **lead._asdict()}
    if groups is not None:
        report.groups = _group_rows(mode, preds, scores, price_arr, groups, w, s)
    return report


def _validate(
    pred: dict[str, np.ndarray], scores: np.ndarray, models: list[str], prices: Sequence[float], groups: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The outcome grid and prices as float arrays, after checking every input against them."""
    _, scores, price_arr = check_grid(scores, scores, prices)
    if len(models) != scores.shape[1]:
        raise ValueError(f"{len(models)} model names for {scores.shape[1]} score columns")
    for name, p in pred.items():
        check_grid(p, scores, price_arr)
        if name in ("knn", "oracle", "random", "cheapest", "category") or name.startswith("only "):
            raise ValueError(f"router name {name!r} is reserved for a baseline; rename it")
    if groups is not None and len(groups) != len(scores):
        raise ValueError(f"groups has {len(groups)} entries for {len(scores)} prompts")
    return scores, price_arr


def _pair(models: list[str], prices: np.ndarray, weak: str | None, strong: str | None) -> tuple[int, int]:
    """Column indices of the weak and strong model: as named, else the cheaper one is weak."""
    if weak is None and strong is None:
        w = int(np.argmin(prices)) if prices[0] != prices[1] else 0
        return w, 1 - w
    for name in (weak, strong):
        if name is not None and name not in models:
            raise ValueError(f"model {name!r} is not among {models}")
    w = models.index(weak) if weak is not None else 1 - models.index(strong)  # type: ignore[arg-type]
    return w, 1 - w
