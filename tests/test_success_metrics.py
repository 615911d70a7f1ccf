from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from router_ml.success.baselines import (
    KNNRouter,
    best_single_choice,
    cheapest_choice,
    mix_curve,
    oracle_choice,
    oracle_curve,
    oracle_score,
    random_score,
)
from router_ml.success.metrics import (
    apgr,
    choice_point,
    cost_quality_curve,
    cpt,
    expected_calibration_error,
    frontier,
    paired_bootstrap_lead,
    pgr_curve,
    price_at_quality,
    quality_at_price,
)
from router_ml.success.report import evaluate_outcomes

GSM8K = Path("/work/shared/outcomes/routellm-gsm8k.jsonl")
MODELS_JSON = GSM8K.with_name("models.json")


def pair(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weak and strong 0/1 outcomes, the strong model better on average."""
    rng = np.random.default_rng(seed)
    return (rng.random(n) < 0.5).astype(float), (rng.random(n) < 0.75).astype(float)


def grid(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """0/1 outcomes of four models whose skill rises with price, and their prices."""
    rng = np.random.default_rng(seed)
    skill = np.array([0.3, 0.5, 0.6, 0.8])
    return (rng.random((n, 4)) < skill).astype(float), np.array([0.1, 0.3, 0.5, 1.0])


# ---------------------------------------------------------------------------------------------------- two models


def test_pgr_curve_moves_tied_prompts_together():
    weak, strong = np.array([0.0, 0, 1, 1]), np.ones(4)
    shares, pgr = pgr_curve(np.array([0.5, 0.5, 0.0, 0.0]), weak, strong)
    assert shares.tolist() == [0.0, 0.5, 1.0]
    assert pgr.tolist() == [0.0, 1.0, 1.0]
    # a constant score is one tied block: the diagonal, never a lucky order
    assert apgr(np.zeros(4), np.array([1.0, 1, 0, 0]), np.ones(4)) == pytest.approx(0.5)


def test_random_routing_averages_apgr_one_half_and_oracle_beats_it():
    values = []
    for seed in range(200):
        weak, strong = pair(seed=seed)
        values.append(apgr(random_score(len(weak), seed=10_000 + seed), weak, strong))  # not the outcomes' stream
    assert np.mean(values) == pytest.approx(0.5, abs=0.01)
    weak, strong = pair()
    oracle = apgr(oracle_score(weak, strong), weak, strong)
    assert oracle > 0.9
    assert oracle > max(values)


def test_routellm_quantile_sweep_is_close_to_every_cut():
    weak, strong = pair(n=2000)
    score = oracle_score(weak, strong) + np.random.default_rng(1).normal(0, 0.8, len(weak))
    fine, coarse = apgr(score, weak, strong), apgr(score, weak, strong, n_thresholds=10)
    assert fine > 0.6
    assert coarse == pytest.approx(fine, abs=0.02)
    shares, _ = pgr_curve(score, weak, strong, n_thresholds=10)
    assert len(shares) == 11 and shares[0] == 0.0 and shares[-1] == 1.0


def test_cpt_is_monotone_and_random_cpt_is_the_identity():
    weak, strong = pair(n=1000)
    score = oracle_score(weak, strong) + np.random.default_rng(2).normal(0, 1.0, len(weak))
    levels = np.linspace(0.0, 1.0, 21)
    shares = [cpt(score, weak, strong, x) for x in levels]
    assert np.all(np.diff(shares) >= 0)
    assert shares[0] == 0.0 and shares[-1] <= 1.0
    assert shares[10] < 0.45  # an informative score recovers half the gap with fewer than half the calls
    constant = [cpt(np.zeros(len(weak)), weak, strong, x) for x in (0.5, 0.8, 0.95)]
    assert constant == pytest.approx([0.5, 0.8, 0.95])
    assert np.isnan(cpt(np.zeros(len(weak)), weak, strong, 1.5))


def test_two_model_metrics_refuse_nan_and_a_tied_pair():
    weak, strong = pair(n=10)
    with pytest.raises(ValueError, match="NaN"):
        apgr(np.full(10, np.nan), weak, strong)
    with pytest.raises(ValueError, match="same mean quality"):
        apgr(np.zeros(10), weak, weak)


# --------------------------------------------------------------------------------------------------- many models


def test_exact_lambda_sweep_matches_a_dense_grid():
    scores, prices = grid()
    pred = np.clip(scores * 0.6 + np.random.default_rng(3).random(scores.shape) * 0.4, 0, 1)
    exact = cost_quality_curve(pred, scores, prices)
    assert np.all(np.diff(exact.lambdas) > 0) and np.all(np.diff(exact.price) <= 1e-12)
    lambdas = np.concatenate([[0.0], np.logspace(-3, 1.5, 200)])
    dense = cost_quality_curve(pred, scores, prices, lambdas=lambdas)
    for lam, price, quality in zip(lambdas, dense.price, dense.quality, strict=True):
        j = np.searchsorted(exact.lambdas, lam, side="right") - 1  # the last switch at or below λ
        if np.isclose(exact.lambdas, lam).any():
            continue  # exactly at a switch the two conventions may differ by the prompts switching there
        assert (price, quality) == pytest.approx((exact.price[j], exact.quality[j]))
    assert exact.price[-1] == pytest.approx(prices.min())  # a big λ sends everything to the cheapest model


def test_ties_go_to_the_cheaper_model():
    scores, prices = grid(n=20)
    curve = cost_quality_curve(np.full(scores.shape, 0.5), scores, prices)
    assert curve.price.tolist() == [pytest.approx(0.1)]
    assert curve.quality[0] == pytest.approx(scores[:, 0].mean())


def test_a_perfect_predictor_reaches_the_oracle():
    scores, prices = grid()
    oracle = choice_point(oracle_choice(scores, prices), scores, prices)
    perfect = cost_quality_curve(scores, scores, prices)
    assert (perfect.price[0], perfect.quality[0]) == pytest.approx(oracle)
    assert perfect.frontier_quality[-1] == pytest.approx(oracle[1])
    noisy = cost_quality_curve(np.random.default_rng(4).random(scores.shape), scores, prices)
    assert noisy.frontier_quality.max() < oracle[1] - 0.1


def test_price_and_quality_lookups_are_inverse():
    scores, prices = grid()
    pred = np.clip(scores * 0.5 + np.random.default_rng(5).random(scores.shape) * 0.5, 0, 1)
    curve = cost_quality_curve(pred, scores, prices)
    fq = curve.frontier_quality
    for q in np.linspace(fq[0], fq[-1], 15):
        price = price_at_quality(curve, q)
        assert price is not None
        assert quality_at_price(curve, price) == pytest.approx(q)
    assert price_at_quality(curve, fq[-1] + 0.01) is None
    assert quality_at_price(curve, curve.frontier_price[0] / 2) is None
    assert quality_at_price(curve, 10.0) == pytest.approx(fq[-1])


def test_frontier_is_the_rising_upper_envelope():
    price = np.array([0.1, 0.2, 0.3, 0.5, 0.9, 0.3])
    quality = np.array([0.5, 0.52, 0.7, 0.8, 0.75, 0.4])
    fp, fq = frontier(price, quality)
    assert fp.tolist() == [0.1, 0.3, 0.5]  # (0.2, 0.52) lies under the 0.1→0.3 chord; 0.9 is worse than 0.5
    assert fq.tolist() == [0.5, 0.7, 0.8]


def test_single_model_baselines():
    scores = np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    prices = np.array([1.0, 2.0, 5.0])
    assert oracle_choice(scores, prices).tolist() == [1, 0, 0, 2]  # cheapest correct, else cheapest
    assert oracle_choice(scores, np.array([2.0, 1.0, 5.0])).tolist() == [1, 1, 1, 2]  # by price, not by column
    assert cheapest_choice(scores, prices).tolist() == [0] * 4
    assert best_single_choice(scores, prices).tolist() == [1] * 4  # 1 and 2 tie on quality: the cheaper
    mix = mix_curve(scores, prices)
    assert mix.frontier_price.tolist() == [1.0, 2.0]
    assert quality_at_price(mix, 1.5) == pytest.approx(0.375)  # half-way along the 1→2 chord
    assert oracle_curve(scores, prices).quality[0] == pytest.approx(0.75)


# ------------------------------------------------------------------------------------------ calibration, bootstrap


def test_ece_zero_when_calibrated_and_large_when_not():
    pred = np.array([0.25] * 4 + [0.75] * 4)
    outcome = np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=float)
    assert expected_calibration_error(pred, outcome) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(10, 0.9), np.zeros(10)) == pytest.approx(0.9)
    assert expected_calibration_error(pred, np.array([0.25] * 4 + [0.5] * 4)) == pytest.approx(0.125)
    # right on average, wrong in every bin: the bins' errors add up instead of cancelling
    assert expected_calibration_error(
        np.array([0.2] * 4 + [0.8] * 4), 1 - np.array([0.2] * 4 + [0.8] * 4)
    ) == pytest.approx(0.6)


def test_paired_bootstrap_lead_brackets_the_difference():
    weak, strong = pair(n=500)
    oracle = np.stack([weak, strong], axis=1)
    noise = np.random.default_rng(6).random(oracle.shape)

    def metric(p: np.ndarray, y: np.ndarray) -> float:
        return apgr(p[:, 1] - p[:, 0], y[:, 0], y[:, 1])

    y = oracle
    lead = paired_bootstrap_lead(metric, (oracle, y), (noise, y), n_resamples=300)
    assert lead.lead == pytest.approx(metric(oracle, y) - metric(noise, y))
    assert 0 < lead.low < lead.lead < lead.high
    same = paired_bootstrap_lead(metric, (noise, y), (noise, y), n_resamples=100)
    assert same == pytest.approx((0.0, 0.0, 0.0))


# ---------------------------------------------------------------------------------------------------------- kNN


def test_knn_recovers_a_planted_structure_and_skips_unknown_outcomes():
    rng = np.random.default_rng(7)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    X = np.vstack([centres[i] + rng.normal(0, 0.05, (50, 3)) for i in (0, 1)])
    scores = np.vstack([np.tile([1.0, 0.0], (50, 1)), np.tile([0.0, 1.0], (50, 1))])
    scores[:50:2, 1] = np.nan  # half the first cluster never tried model 1
    knn = KNNRouter(k=10)
    with pytest.raises(NotFittedError):
        knn.predict_success(X)
    assert knn.fit(X, scores) is knn and knn.get_params() == {"k": 10}
    pred = knn.predict_success(np.array([[2.0, 0.1, 0.0], [0.1, 3.0, 0.0]]))
    assert pred == pytest.approx(np.array([[1.0, 0.0], [0.0, 1.0]]))
    sparse = scores.copy()
    sparse[:50, 1] = np.nan  # nobody near the first cluster tried model 1: fall back to its global mean
    pred = KNNRouter(k=10).fit(X, sparse).predict_success(np.array([[1.0, 0.0, 0.0]]))
    assert pred[0, 1] == pytest.approx(1.0) and pred[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="features"):
        knn.predict_success(np.ones((1, 2)))


# ------------------------------------------------------------------------------------------------------- report


def test_two_model_report_saves_a_png_and_json(tmp_path):
    weak, strong = pair(n=300)
    scores = np.stack([weak, strong], axis=1)
    rng = np.random.default_rng(8)
    router = np.clip(scores * 0.5 + rng.random(scores.shape) * 0.5, 0, 1)
    knn = rng.random(scores.shape)
    groups = np.array(["a", "b", "c"])[np.arange(300) % 3]
    report = evaluate_outcomes(
        {"heads": router}, scores, ["w", "s"], [1.0, 10.0], knn_pred=knn, category_choice=np.zeros(300, int),
        groups=groups, bootstrap=200,
    )  # fmt: skip
    assert report.mode == "two" and report.weak == "w" and report.strong == "s"
    assert report.rows["random"]["apgr"] == pytest.approx(0.5)
    assert report.rows["oracle"]["apgr"] > report.rows["heads"]["apgr"] > report.rows["knn"]["apgr"]
    assert report.lead["heads"]["low"] > 0
    category = report.rows["category"]  # always the weak model: no strong calls, no gap recovered
    assert category["share_strong"] == 0.0 and category["pgr"] == pytest.approx(0.0)
    assert set(report.groups) == {"a", "b", "c"}
    text = report.format()
    assert "APGR" in text and "CPT50" in text and "heads" in text and "heads − knn (apgr)" in text
    paths = report.save(tmp_path)
    assert [p.name for p in paths] == ["report.json", "cost_quality.png"]
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = json.loads(paths[0].read_text())
    assert {"mode", "rows", "ece", "lead_over_knn", "groups", "frontiers", "pgr_curves", "best_single"} <= set(loaded)
    assert len(loaded["pgr_curves"]["heads"]["pgr"]) == 101
    assert loaded["rows"]["heads"]["apgr"] == round(report.rows["heads"]["apgr"], 4)


def test_many_model_report(tmp_path):
    scores, prices = grid()
    rng = np.random.default_rng(9)
    router = np.clip(scores * 0.6 + rng.random(scores.shape) * 0.4, 0, 1)
    report = evaluate_outcomes(
        {"heads": router}, scores, list("abcd"), prices, knn_pred=rng.random(scores.shape), bootstrap=100
    )
    assert report.mode == "many" and report.best_single["model"] == "d"
    heads, best = report.rows["heads"], report.best_single
    assert heads["quality_at_best_price"] > best["quality"]
    assert heads["price_at_best_quality"] < best["price"]
    assert report.rows["oracle"]["quality_at_best_price"] >= heads["quality_at_best_price"]
    assert report.lead["heads"]["metric"] == "quality_at_best_price"
    assert set(report.ece["heads"]) == set("abcd")
    assert "Q@best$" in report.format()
    paths = report.save(tmp_path)
    assert paths[1].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="reserved"):
        evaluate_outcomes({"oracle": router}, scores, list("abcd"), prices)


@pytest.mark.skipif(not GSM8K.exists(), reason="the shared outcome data is not on this machine")
def test_real_gsm8k_oracle_and_random():
    pair_names = json.loads(MODELS_JSON.read_text())["routellm"]
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines() if line.strip()]
    weak = np.array([r["scores"][pair_names["weak"]] for r in rows], dtype=float)
    strong = np.array([r["scores"][pair_names["strong"]] for r in rows], dtype=float)
    assert apgr(oracle_score(weak, strong), weak, strong) > 0.9
    random = [apgr(random_score(len(weak), seed), weak, strong) for seed in range(50)]
    assert np.mean(random) == pytest.approx(0.5, abs=0.02)
