from __future__ import annotations

import numpy as np
import pytest

from router_ml.evaluation import cross_validate_methods, evaluate
from router_ml.model import EmbeddingClassifier
from router_ml.plots import write_plots
from router_ml.routes import load_routes

BASELINES = {"nearest-centroid", "knn-10", "topk-similarity-vote", "tfidf-lr"}


@pytest.fixture(scope="module")
def report(small_result, small_data, embedder):
    from router_ml.data import load_bundled

    heldout = load_bundled("heldout").subset(range(0, 400, 4))
    return evaluate(
        small_result.model,
        heldout,
        load_routes(),
        threshold=small_result.threshold,
        dataset="heldout sample",
        train=small_data,
        train_embeddings=small_result.embeddings,
    )


def test_report_is_consistent(report):
    r = report.report
    assert r.n == 100 and sum(map(sum, r.confusion)) == 100
    assert r.accuracy == pytest.approx(np.trace(np.array(r.confusion)) / 100)
    assert r.macro_f1 > 0.6  # 4 × PER_LABEL training prompts already route most held-out prompts right
    assert set(report.baselines) == BASELINES
    assert 0.0 <= report.abstention_rate <= 1.0
    assert 0.0 <= report.calibration.ece <= 1.0
    assert report.cost["premium_usd"] >= report.cost["routed_usd"] > 0
    assert all(e["label"] != e["predicted"] for e in report.errors)
    assert len(report.errors) == r.n - round(r.accuracy * r.n)
    assert "baselines on the same data" in report.format()
    assert report.to_dict()["report"]["labels"] == ["code", "creative", "reasoning", "simple"]


def test_plots_are_written(report, tmp_path):
    paths = write_plots(report.report, report.calibration, tmp_path)
    assert [p.name for p in paths] == ["confusion_matrix.png", "reliability.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_cross_validation_scores_every_method(small_data, small_result):
    scores = cross_validate_methods(
        small_data.texts, small_data.labels, small_result.embeddings, EmbeddingClassifier(C=4.0), folds=3
    )
    assert set(scores) == BASELINES | {"router"}
    assert all(0.0 <= s["macro_f1_mean"] <= 1.0 for s in scores.values())
