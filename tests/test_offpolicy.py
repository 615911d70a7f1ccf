"""Off-policy evaluation: the doubly robust estimate of a policy's value from logged, explored traffic.

Synthetic bandit logs with known reward probabilities, so the truth is exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from router_ml.success.offpolicy import dr_terms, estimate_value

K = 3
PROBS = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.5]])  # P(success) of each action in each of two prompt kinds


def _log(rng: np.random.Generator, n: int, greedy: int, eps: float):
    """Prompts of two kinds, served by an ε-greedy policy always choosing ``greedy``; 0/1 rewards."""
    kind = rng.integers(0, 2, n)
    explore = rng.random(n) < eps
    action = np.where(explore, rng.integers(0, K, n), greedy)
    propensity = np.where(action == greedy, 1 - eps + eps / K, eps / K)
    reward = (rng.random(n) < PROBS[kind, action]).astype(float)
    return kind, action, propensity, reward


def _target(kind: np.ndarray) -> np.ndarray:
    return np.where(kind == 0, 0, 1)  # the best action per kind: true value 0.85


def test_the_doubly_robust_estimate_is_unbiased_even_with_a_wrong_direct_model():
    rng = np.random.default_rng(0)
    estimates = {"good": [], "wrong": []}
    for _ in range(300):
        kind, action, p, r = _log(rng, 400, greedy=2, eps=0.3)
        for name, q in (("good", PROBS[kind]), ("wrong", np.full((len(kind), K), 0.95))):
            terms, _ = dr_terms(_target(kind), action, r, p, q)
            estimates[name].append(terms.mean())
    assert np.mean(estimates["good"]) == pytest.approx(0.85, abs=0.01)
    assert np.mean(estimates["wrong"]) == pytest.approx(0.85, abs=0.015)  # the propensities correct the model
    assert np.std(estimates["good"]) < np.std(estimates["wrong"])  # a good model lowers the variance


def test_the_bootstrap_interval_covers_the_truth_at_about_its_level():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(60):
        kind, action, p, r = _log(rng, 600, greedy=2, eps=0.3)
        terms, weight = dr_terms(_target(kind), action, r, p, PROBS[kind] * 0.9)
        est = estimate_value(terms, weight=weight, n_boot=200, seed=int(rng.integers(1 << 30)))
        covered += est.low <= 0.85 <= est.high
        assert est.low <= est.value <= est.high and est.n == 600 and est.matched == int((weight > 0).sum())
    assert covered / 60 >= 0.85


def test_strata_logged_far_from_the_policy_weigh_less_than_a_pooled_mean_gives_them():
    rng = np.random.default_rng(2)
    errors = {"pooled": [], "strata": []}
    for _ in range(150):
        near = _log(rng, 300, greedy=0, eps=0.3)  # often chooses what the target does on kind 0
        far = _log(rng, 300, greedy=2, eps=0.05)  # almost never does: large, rare weights
        parts = [np.concatenate(x) for x in zip(near, far, strict=True)]
        kind, action, p, r = parts
        terms, _ = dr_terms(_target(kind), action, r, p, np.full((len(kind), K), 0.5))
        errors["pooled"].append(terms.mean() - 0.85)
        errors["strata"].append(estimate_value(terms, ["near"] * 300 + ["far"] * 300, n_boot=0).value - 0.85)
    rmse = {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in errors.items()}
    assert rmse["strata"] < 0.8 * rmse["pooled"]


def test_capped_weights_are_reported():
    rng = np.random.default_rng(3)
    kind, action, p, r = _log(rng, 500, greedy=2, eps=0.3)
    terms, weight = dr_terms(_target(kind), action, r, p, PROBS[kind], clip=5.0)
    assert weight.max() == 5.0  # 1/p = 10 for an explored action, capped
    est = estimate_value(terms, weight=weight, clip=5.0, n_boot=50)
    assert est.clip == 5.0 and 0 < est.clipped <= 1
    assert est.clipped == pytest.approx(np.mean(weight[weight > 0] >= 5.0))
