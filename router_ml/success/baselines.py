"""Baselines a success-predicting router must beat, scored on the same prompts as the router.

Each returns what the metrics consume: a per-prompt score (two models), a per-prompt choice of model, a
``pred``-like matrix, or a cost–quality curve.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.validation import check_array, check_is_fitted

from .metrics import CostQualityCurve, check_grid, cost_quality_curve, curve_from_points

__all__ = [
    "KNNRouter",
    "best_single_choice",
    "cheapest_choice",
    "mix_curve",
    "oracle_choice",
    "oracle_curve",
    "oracle_score",
    "random_score",
]


def random_score(n: int, seed: int = 0) -> np.ndarray:
    """A random two-model router: a uniform score per prompt (its expected APGR is 0.5).

    A constant score gives the expected random curve itself (the diagonal), since tied prompts move together.
    """
    return np.random.default_rng(seed).random(n)


def oracle_score(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """The two-model oracle's score: ``strong − weak`` outcome, so the prompts only the strong model gets go first."""
    return np.asarray(strong, dtype=float) - np.asarray(weak, dtype=float)


def cheapest_choice(scores: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Always the cheapest model (among equally cheap ones, the best on these prompts)."""
    scores, prices = np.asarray(scores, dtype=float), np.asarray(prices, dtype=float)
    cheap = np.flatnonzero(prices == prices.min())
    best = cheap[int(np.argmax(scores[:, cheap].mean(axis=0)))]
    return np.full(len(scores), best)


def best_single_choice(scores: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Always the model with the best mean quality on these prompts (ties: the cheaper one)."""
    scores, prices = np.asarray(scores, dtype=float), np.asarray(prices, dtype=float)
    mean = scores.mean(axis=0)
    best = min(np.flatnonzero(mean == mean.max()), key=lambda j: (prices[j], j))
    return np.full(len(scores), best)


def oracle_choice(scores: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Per prompt the cheapest model with the top score (so the cheapest correct one, else the cheapest)."""
    scores, prices = np.asarray(scores, dtype=float), np.asarray(prices, dtype=float)
    order = np.argsort(prices, kind="stable")
    return order[np.argmax(scores[:, order], axis=1)]


def oracle_curve(scores: np.ndarray, prices: np.ndarray) -> CostQualityCurve:
    """The oracle's cost–quality curve: the λ policy on the true outcomes (its λ = 0 point is :func:`oracle_choice`)."""
    return cost_quality_curve(scores, scores, prices)


def mix_curve(scores: np.ndarray, prices: np.ndarray) -> CostQualityCurve:
    """Random mixing of single models (RouterBench's zero router): each model is a point, the frontier their hull.

    Sending each prompt at random to model ``a`` with probability ``t`` and else to ``b`` lands on the straight
    line between the two models' points, so the best a router without a look at the prompt can do is the upper
    concave envelope of the single models.
    """
    _, scores, prices = check_grid(scores, scores, prices)
    return curve_from_points(np.full(len(prices), np.nan), prices.copy(), scores.mean(axis=0))


class KNNRouter(BaseEstimator):
    """RouterBench's kNN router: a model's P(success) is its mean outcome on the k nearest training prompts.

    Nearness is cosine similarity of embeddings. Sparse training outcomes are allowed: a model is averaged over
    those of the k neighbours that have its outcome, and falls back to its mean over the whole training set when
    none has.

    Args:
        k (int): neighbours per prompt. RouterBench uses 5–40; the default 80 scored best in a grouped check
            (APGR on MMLU held out by subject; quality at the best single price on dcrouter held out by cluster).

    Example:
        >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> y = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> KNNRouter(k=2).fit(X, y).predict_success(np.array([[1.0, 0.05]])).tolist()
        [[1.0, 0.0]]
    """

    def __init__(self, k: int = 80) -> None:
        self.k = k

    def fit(self, X: np.ndarray, scores: np.ndarray) -> KNNRouter:
        """Store the training prompts' embeddings and outcomes (``(n, n_models)``, NaN = unknown)."""
        X = check_array(X, dtype=float)
        scores = check_array(scores, dtype=float, ensure_all_finite="allow-nan")
        if len(X) != len(scores):
            raise ValueError(f"X has {len(X)} prompts but scores has {len(scores)}; they must be the same prompts")
        if not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        known = ~np.isnan(scores)
        if not known.any(axis=0).all():
            missing = np.flatnonzero(~known.any(axis=0)).tolist()
            raise ValueError(f"models at columns {missing} have no outcome in the training set; drop them first")
        self.n_features_in_ = X.shape[1]
        self.scores_ = scores
        self.global_mean_ = np.nanmean(scores, axis=0)
        self.index_ = NearestNeighbors(n_neighbors=min(self.k, len(X)), metric="cosine", algorithm="brute").fit(X)
        return self

    def predict_success(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_models)`` predicted P(success): the NaN-aware mean outcome of each prompt's k nearest."""
        check_is_fitted(self)
        X = check_array(X, dtype=float)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but the router was fitted with {self.n_features_in_}")
        neighbours = self.index_.kneighbors(X, return_distance=False)  # (n, k)
        outcomes = self.scores_[neighbours]  # (n, k, n_models)
        known = ~np.isnan(outcomes)
        count = known.sum(axis=1)
        total = np.where(known, outcomes, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
        return np.where(count > 0, mean, self.global_mean_[None, :])
