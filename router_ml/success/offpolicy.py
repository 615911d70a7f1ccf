"""Off-policy evaluation: what another router would have scored on traffic that this one served.

Each logged request has one answer: the model the serving policy chose with a known probability (its
*propensity*, :mod:`router_ml.success.explore`), and that answer's score. A new policy that would have chosen a
different model for the prompt has no observed score there, so its value is *estimated*, doubly robust
(Dudík, Langford & Li 2011): the success heads' predicted success for the model it would choose, corrected on
the requests where the logged model is that model by the inverse-propensity-weighted residual::

    V̂ = mean_i [ q̂(xᵢ, π(xᵢ)) + 1{aᵢ = π(xᵢ)} / pᵢ · (rᵢ − q̂(xᵢ, aᵢ)) ]

It is unbiased when either the propensities or the predictions are right. The variance of the correction grows
with 1/p: requests logged by a policy far from the evaluated one (an early, cold router) carry little
information about it. So the log is split by the policy that served it (the router version), each part gives its
own estimate, and the parts are combined with inverse-variance weights; the interval is a stratified bootstrap.
Comparing two policies on the same requests uses the per-request differences, whose variance is far smaller
where the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["PolicyEstimate", "dr_terms", "estimate_value"]


@dataclass(frozen=True)
class PolicyEstimate:
    """A policy's estimated mean score on logged traffic.

    Attributes:
        value (float): the doubly robust estimate.
        low, high (float): its stratified bootstrap interval.
        n (int): logged requests used.
        clip (float | None): the cap on importance weights (``None``: uncapped, unbiased).
        clipped (float): the share of matching requests whose weight was capped.
        matched (int): requests whose logged model is the one the policy would choose.
    """

    value: float
    low: float
    high: float
    n: int
    clip: float | None
    clipped: float
    matched: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def dr_terms(
    target: np.ndarray,
    logged: np.ndarray,
    rewards: np.ndarray,
    propensities: np.ndarray,
    predicted: np.ndarray,
    clip: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-request doubly robust terms of a deterministic policy, and each request's importance weight.

    Args:
        target (np.ndarray): ``(n,)`` the column the evaluated policy would choose per request.
        logged (np.ndarray): ``(n,)`` the column that was called.
        rewards (np.ndarray): ``(n,)`` the logged scores in [0, 1].
        propensities (np.ndarray): ``(n,)`` the logged choice's probability under the serving policy.
        predicted (np.ndarray): ``(n, k)`` predicted success of every column (the direct model).
        clip (float | None): cap on the importance weight ``1/p``; ``None`` leaves it uncapped.
    """
    rows = np.arange(len(target))
    weight = (target == logged) / np.asarray(propensities, dtype=np.float64)
    if clip is not None:
        weight = np.minimum(weight, clip)
    terms = predicted[rows, target] + weight * (rewards - predicted[rows, logged])
    return terms, weight


def _combine(parts: list[np.ndarray]) -> float:
    """Inverse-variance weighted mean of each stratum's mean (a stratum of one request has no variance to weigh it
    by and is left out, unless every stratum is one request: then the plain mean)."""
    means = np.array([p.mean() for p in parts])
    variances = np.array([p.var(ddof=1) / len(p) if len(p) > 1 else np.inf for p in parts])
    if not np.isfinite(variances).any():
        return float(np.concatenate(parts).mean())
    floor = max(float(np.min(variances[np.isfinite(variances)])), 1e-9)
    weights = np.where(np.isfinite(variances), 1.0 / np.maximum(variances, floor), 0.0)
    return float(np.sum(weights * means) / np.sum(weights))


def estimate_value(
    terms: np.ndarray,
    strata: Sequence[Any] | None = None,
    *,
    weight: np.ndarray | None = None,
    clip: float | None = None,
    n_boot: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> PolicyEstimate:
    """Combine per-request terms (of :func:`dr_terms`, or the differences of two policies' terms) into an estimate.

    Args:
        terms (np.ndarray): ``(n,)`` per-request terms.
        strata (Sequence | None): the serving policy of each request (e.g. the router version); each is
            estimated alone and the estimates combined by inverse variance. ``None``: one stratum.
        weight (np.ndarray | None): the importance weights, to report how many matched and were capped.
        clip (float | None): the cap that was applied (reported).
        n_boot (int): bootstrap resamples (within strata). Default 500.
        confidence (float): the interval's coverage. Default 0.95.
        seed (int): seeds the bootstrap.
    """
    terms = np.asarray(terms, dtype=np.float64)
    labels = (
        np.zeros(len(terms), dtype=int) if strata is None else np.unique(np.asarray(strata), return_inverse=True)[1]
    )
    parts = [terms[labels == g] for g in np.unique(labels)]
    value = _combine(parts)
    rng = np.random.default_rng(seed)
    draws = [_combine([rng.choice(p, len(p)) for p in parts]) for _ in range(n_boot)]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail]) if draws else (value, value)
    matched = weight > 0 if weight is not None else np.zeros(len(terms), dtype=bool)
    capped = float(np.mean(weight[matched] >= clip)) if clip is not None and matched.any() else 0.0
    return PolicyEstimate(float(value), float(low), float(high), len(terms), clip, capped, int(matched.sum()))
