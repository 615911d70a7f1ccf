"""Cost–quality evaluation of success-predicting routers: PGR/APGR/CPT for two models, cost–quality curves for many.

All functions are pure and work on numpy arrays of one evaluation set:

- ``scores``: ``(n_prompts, n_models)`` real outcome of each model on each prompt, in [0, 1];
- ``pred``: the same shape, a router's predicted P(success);
- ``prices``: ``(n_models,)`` price per call (any unit: only ratios matter).

The evaluation sets are full grids, so these functions refuse NaN with a message saying where it is.

Two models follow RouteLLM's definitions (``routellm/evals/evaluate.py``): a router's score ranks prompts, the
top share ``c`` go to the strong model, PGR(c) = (quality(c) − quality(weak)) / (quality(strong) − quality(weak)),
APGR is the trapezoid area under PGR over c ∈ [0, 1], and CPT(x) the least c at which PGR reaches x.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "CostQualityCurve",
    "Lead",
    "apgr",
    "check_grid",
    "choice_point",
    "cost_quality_curve",
    "cpt",
    "curve_from_points",
    "expected_calibration_error",
    "frontier",
    "paired_bootstrap_lead",
    "pgr_curve",
    "price_at_quality",
    "quality_at_price",
]


def _finite(name: str, a: np.ndarray) -> np.ndarray:
    """``a`` as a float array; a ValueError naming the first NaN if there is one."""
    a = np.asarray(a, dtype=float)
    if np.isnan(a).any():
        where = np.argwhere(np.isnan(a))[0].tolist()
        raise ValueError(
            f"{name} has {int(np.isnan(a).sum())} NaN values (first at index {where}); evaluation needs a full "
            "grid of outcomes: keep only the prompts that every model answered, or fill predictions first"
        )
    return a


# ---------------------------------------------------------------------------------------------------- two models


def _quantile_shares(score: np.ndarray, gain: np.ndarray, n_thresholds: int) -> tuple[np.ndarray, np.ndarray]:
    """RouteLLM's sweep: thresholds at ``n_thresholds`` equal-count quantiles, ``score >= t`` goes strong."""
    thresholds = np.quantile(score, np.linspace(0.0, 1.0, n_thresholds + 1))
    strong = score[None, :] >= thresholds[:-1, None]
    strong = np.vstack([strong, score[None, :] > thresholds[-1]])  # the last threshold sends nothing strong
    shares = strong.mean(axis=1)
    gains = (strong * gain[None, :]).sum(axis=1)
    order = np.argsort(shares, kind="stable")
    return shares[order], gains[order]


def pgr_curve(
    score: np.ndarray, weak: np.ndarray, strong: np.ndarray, *, n_thresholds: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The performance-gap-recovered curve of a two-model router.

    The prompts with the highest ``score`` go to the strong model. By default every cut is taken: prompts with
    equal scores move together, one point per distinct score, so a tie is never broken in the router's favour
    (the straight segment across a tied block is the expected curve of breaking it at random; a constant score
    gives the random router's diagonal and APGR 0.5 exactly). ``n_thresholds=10`` reproduces RouteLLM's coarser
    sweep (thresholds at equal-count quantiles of the score, ``score >= threshold`` goes strong).

    Args:
        score (np.ndarray): ``(n,)`` preference for the strong model, e.g. ``P(strong) − P(weak)``.
        weak (np.ndarray): ``(n,)`` the weak model's outcomes in [0, 1].
        strong (np.ndarray): ``(n,)`` the strong model's outcomes.
        n_thresholds (int | None): None for every cut, else RouteLLM's number of quantile bins.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(shares, pgr)``, shares of strong calls rising from 0 to 1, and PGR there.

    Example:
        >>> s, p = pgr_curve(np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 1.0]))
        >>> s.tolist(), p.tolist()
        ([0.0, 0.5, 1.0], [0.0, 1.0, 1.0])
    """
    score, weak, strong = _finite("score", score), _finite("weak", weak), _finite("strong", strong)
    if not score.shape == weak.shape == strong.shape or score.ndim != 1 or len(score) == 0:
        shapes = f"{score.shape}, {weak.shape}, {strong.shape}"
        raise ValueError(f"score, weak and strong must be equal-length non-empty 1-D arrays, got {shapes}")
    gap = strong.mean() - weak.mean()
    if abs(gap) < 1e-12:
        raise ValueError("the weak and strong models have the same mean quality here, so PGR is undefined")
    gain = strong - weak
    if n_thresholds is not None:
        shares, gains = _quantile_shares(score, gain, n_thresholds)
    else:
        order = np.argsort(-score, kind="stable")
        ranked = score[order]
        ends = np.append(np.nonzero(ranked[1:] != ranked[:-1])[0] + 1, len(score))  # cut after each tied block
        shares = np.concatenate([[0.0], ends / len(score)])
        gains = np.concatenate([[0.0], np.cumsum(gain[order])[ends - 1]])
    return shares, gains / len(score) / gap


def apgr(score: np.ndarray, weak: np.ndarray, strong: np.ndarray, *, n_thresholds: int | None = None) -> float:
    """Average PGR: the trapezoid area under :func:`pgr_curve` over c ∈ [0, 1] (random 0.5, weak-only 0).

    Example:
        >>> apgr(np.zeros(4), np.array([0.0, 0, 1, 1]), np.ones(4))
        0.5
    """
    shares, pgr = pgr_curve(score, weak, strong, n_thresholds=n_thresholds)
    return float(np.trapezoid(pgr, shares))


def _first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float | None:
    """The least x at which the piecewise-linear y(x) reaches ``target`` (None if it never does)."""
    above = np.nonzero(y >= target - 1e-12)[0]
    if len(above) == 0:
        return None
    j = int(above[0])
    if j == 0:
        return float(x[0])
    t = (target - y[j - 1]) / (y[j] - y[j - 1])
    return float(x[j - 1] + t * (x[j] - x[j - 1]))


def cpt(score: np.ndarray, weak: np.ndarray, strong: np.ndarray, x: float, *, n_thresholds: int | None = None) -> float:
    """Call-performance threshold: the least share of strong calls at which PGR reaches ``x`` (e.g. 0.5).

    Interpolates linearly inside the segment where the curve first crosses ``x`` (as RouteLLM's ``np.interp``
    does, without assuming the curve is monotone). NaN when PGR never reaches ``x`` (only possible for x > 1).
    """
    if x < 0:
        raise ValueError(f"x is a share of the performance gap, expected >= 0, got {x}")
    shares, pgr = pgr_curve(score, weak, strong, n_thresholds=n_thresholds)
    found = _first_crossing(shares, pgr, x)
    return float("nan") if found is None else found


# --------------------------------------------------------------------------------------------------- many models


@dataclass(frozen=True)
class CostQualityCurve:
    """The operating points of a policy, and their frontier.

    Attributes:
        lambdas (np.ndarray): the price weight of each point (NaN for points that are not a λ sweep).
        price (np.ndarray): mean price per call at each point.
        quality (np.ndarray): mean outcome of the chosen models at each point.
        frontier_price (np.ndarray): the frontier's prices, rising.
        frontier_quality (np.ndarray): the frontier's qualities, rising. The frontier is the upper concave
            envelope of the points up to the best quality: every point on it is attainable by sending each prompt
            at random to one of two operating points, so reading it by linear interpolation is honest.
    """

    lambdas: np.ndarray
    price: np.ndarray
    quality: np.ndarray
    frontier_price: np.ndarray
    frontier_quality: np.ndarray


def frontier(price: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper concave envelope of points (price, quality), from the cheapest point to the best quality."""
    price, quality = np.asarray(price, dtype=float), np.asarray(quality, dtype=float)
    order = np.lexsort((-quality, price))  # by price, the best quality first among equal prices
    hull: list[int] = []
    for i in order:
        if hull and price[hull[-1]] == price[i]:
            continue  # dominated by the better point at the same price
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = (price[hull[-2]], quality[hull[-2]]), (price[hull[-1]], quality[hull[-1]])
            if (x1 - x0) * (quality[i] - y0) - (y1 - y0) * (price[i] - x0) >= 0:  # hull[-1] is on or below
                hull.pop()
            else:
                break
        hull.append(int(i))
    top = int(np.argmax(quality[hull]))
    kept = hull[: top + 1]
    return price[kept], quality[kept]


def curve_from_points(lambdas: np.ndarray, price: np.ndarray, quality: np.ndarray) -> CostQualityCurve:
    """A :class:`CostQualityCurve` of these operating points, with their frontier."""
    fp, fq = frontier(price, quality)
    return CostQualityCurve(lambdas, price, quality, fp, fq)


def check_grid(pred: np.ndarray, scores: np.ndarray, prices: np.ndarray) -> tuple[np.ndarray, ...]:
    """``pred``, ``scores`` and ``prices`` as float arrays, or a ValueError saying what is wrong with them."""
    pred, scores, prices = _finite("pred", pred), _finite("scores", scores), _finite("prices", prices)
    if pred.shape != scores.shape or scores.ndim != 2 or prices.shape != (scores.shape[1],):
        raise ValueError(
            f"expected pred and scores of shape (n_prompts, n_models) and prices of shape (n_models,), got "
            f"{pred.shape}, {scores.shape} and {prices.shape}"
        )
    if (prices < 0).any() or prices.max() <= 0:
        raise ValueError(f"prices must be >= 0 with a positive maximum, got {prices.tolist()}")
    return pred, scores, prices


def choice_point(choice: np.ndarray, scores: np.ndarray, prices: np.ndarray) -> tuple[float, float]:
    """``(mean price, mean quality)`` of sending prompt ``i`` to model ``choice[i]``."""
    scores, prices = _finite("scores", scores), np.asarray(prices, dtype=float)
    choice = np.asarray(choice, dtype=int)
    return float(prices[choice].mean()), float(scores[np.arange(len(choice)), choice].mean())


def _switch_events(pred: np.ndarray, unit: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every prompt's switches as λ rises: ``(first choice, λ, prompt, from, to)``, models in price order."""
    n, m = pred.shape
    rows = np.arange(n)
    current = np.argmax(pred, axis=1)  # the first maximum is the cheapest tied model
    first = current.copy()
    events: list[tuple[np.ndarray, ...]] = []
    cheaper = unit[None, :] < unit[:, None]  # cheaper[a, b]: model b is strictly cheaper than model a
    for _ in range(m):
        drop = unit[current][:, None] - unit[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (pred[rows, current][:, None] - pred) / drop
        at = np.where(cheaper[current], at, np.inf)
        nxt = np.argmin(at, axis=1)  # the first minimum: at equal λ the cheapest model
        lam = at[rows, nxt]
        moving = np.isfinite(lam)
        if not moving.any():
            break
        events.append((lam[moving], rows[moving], current[moving], nxt[moving]))
        current = np.where(moving, nxt, current)
    if not events:
        empty = np.zeros(0)
        return first, empty, empty.astype(int), empty.astype(int), empty.astype(int)
    return first, *(np.concatenate(parts) for parts in zip(*events, strict=True))


def cost_quality_curve(
    pred: np.ndarray, scores: np.ndarray, prices: np.ndarray, lambdas: Sequence[float] | None = None
) -> CostQualityCurve:
    """Sweep the policy ``argmax_m pred[i, m] − λ · price[m] / max(price)`` and score each operating point.

    Ties go to the cheaper model. With ``lambdas=None`` the sweep is exact: λ = 0 plus every λ at which some
    prompt's choice switches (found per prompt by walking down its upper envelope), so consecutive points differ
    only by the prompts switching at that λ; prompts switching at the same λ move together. Otherwise the given
    λ values are evaluated.

    Returns:
        CostQualityCurve: points in rising λ (falling price), and the frontier.
    """
    pred, scores, prices = check_grid(pred, scores, prices)
    order = np.argsort(prices, kind="stable")  # column j of the sorted grid is cheaper than (or ties) column j+1
    pred, scores, prices = pred[:, order], scores[:, order], prices[order]
    unit = prices / prices.max()
    n = len(pred)
    if lambdas is not None:
        lam = np.sort(np.asarray(lambdas, dtype=float))
        choice = np.argmax(pred[:, None, :] - lam[None, :, None] * unit[None, None, :], axis=2)  # (n, L)
        quality = np.take_along_axis(scores, choice, axis=1).mean(axis=0)
        return curve_from_points(lam, prices[choice].mean(axis=0), quality)
    first, at, rows, src, dst = _switch_events(pred, unit)
    by_lambda = np.argsort(at, kind="stable")
    at, rows, src, dst = at[by_lambda], rows[by_lambda], src[by_lambda], dst[by_lambda]
    d_price = np.cumsum(prices[dst] - prices[src]) / n
    d_quality = np.cumsum(scores[rows, dst] - scores[rows, src]) / n
    last = np.append(np.nonzero(at[1:] != at[:-1])[0], len(at) - 1) if len(at) else np.zeros(0, dtype=int)
    price0, quality0 = float(prices[first].mean()), float(scores[np.arange(n), first].mean())
    return curve_from_points(
        np.concatenate([[0.0], at[last]]),
        np.concatenate([[price0], price0 + d_price[last]]),
        np.concatenate([[quality0], quality0 + d_quality[last]]),
    )


def quality_at_price(curve: CostQualityCurve, price: float) -> float | None:
    """The best quality at a mean price ≤ ``price``, interpolating the frontier linearly (None below its start)."""
    fp, fq = curve.frontier_price, curve.frontier_quality
    if price < fp[0] - 1e-12:
        return None
    return float(np.interp(price, fp, fq))


def price_at_quality(curve: CostQualityCurve, quality: float) -> float | None:
    """The least mean price at which the frontier reaches ``quality`` (linear interpolation; None if never)."""
    return _first_crossing(curve.frontier_price, curve.frontier_quality, quality)


# ------------------------------------------------------------------------------------------ calibration, bootstrap


def expected_calibration_error(pred_col: np.ndarray, scores_col: np.ndarray, n_bins: int = 10) -> float:
    """ECE of one success head: equal-width bins of the predicted P(success), ``Σ n_b/n · |mean pred − mean outcome|``.

    Outcomes may be fractional, so this bins directly instead of going through the classifier's
    :func:`router_ml.metrics.calibration` (which scores the top-class confidence of labels); its bins are the same
    (right-closed, the first one also holding 0).
    """
    p, y = _finite("pred_col", pred_col), _finite("scores_col", scores_col)
    if p.shape != y.shape or p.ndim != 1 or len(p) == 0:
        raise ValueError(f"pred_col and scores_col must be equal-length 1-D arrays, got {p.shape} and {y.shape}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    gap = np.abs(np.bincount(which, p, n_bins) - np.bincount(which, y, n_bins))  # n_b · |mean p − mean y|
    return float(gap.sum() / count.sum())


class Lead(NamedTuple):
    """``metric(a) − metric(b)`` on the full set, and its paired bootstrap interval."""

    lead: float
    low: float
    high: float


def paired_bootstrap_lead(
    metric: Callable[..., float],
    args_a: Sequence[np.ndarray],
    args_b: Sequence[np.ndarray],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Lead:
    """How far router ``a`` leads router ``b`` on ``metric``, with a paired bootstrap interval.

    Prompts are resampled with replacement, the same prompts for both routers, and the lead recomputed on each
    resample (scipy's ``bootstrap``, percentile method, as :func:`router_ml.metrics.paired_bootstrap` does for
    macro-F1; this one takes any metric of per-prompt arrays).

    Args:
        metric (Callable[..., float]): a scalar of arrays whose first axis is the prompts, e.g. :func:`apgr`.
        args_a (Sequence[np.ndarray]): the arguments of ``metric`` for router ``a``.
        args_b (Sequence[np.ndarray]): the same for router ``b``, on the same prompts in the same order.

    Returns:
        Lead: ``(lead, low, high)``.
    """
    from scipy.stats import bootstrap

    args_a, args_b = [np.asarray(a) for a in args_a], [np.asarray(b) for b in args_b]
    n = len(args_a[0])
    if any(len(a) != n for a in [*args_a, *args_b]):
        raise ValueError("every argument of both routers must have the same number of prompts (first axis)")

    def lead(idx: np.ndarray) -> float:
        return metric(*(a[idx] for a in args_a)) - metric(*(b[idx] for b in args_b))

    full = lead(np.arange(n))
    result = bootstrap(
        (np.arange(n),), lead, vectorized=False, n_resamples=n_resamples, confidence_level=confidence,
        method="percentile", random_state=np.random.default_rng(seed),
    )  # fmt: skip
    interval = result.confidence_interval
    return Lead(float(full), float(interval.low), float(interval.high))
