from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from router_ml.evaluation import cross_validate_methods, evaluate
from router_ml.model import EmbeddingClassifier
from router_ml.plots import write_plots
from router_ml.route_table import load_routes

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


def test_baselines_are_fitted_once_per_training_set(small_data, small_result, monkeypatch):
    from router_ml import baselines
    from router_ml.evaluation import compare_baselines

    fits = []
    real = baselines.TEXT_BASELINES["tfidf-lr"]

    def counted():
        fits.append(1)
        return real()

    monkeypatch.setitem(baselines.TEXT_BASELINES, "tfidf-lr", counted)
    monkeypatch.setattr(baselines, "_fitted", OrderedDict())  # forget the fits of earlier tests
    rows = range(0, len(small_data), 3)  # a third of the small set: three fits of the TF-IDF baseline follow
    part = small_data.subset(rows)
    X, y, texts = small_result.embeddings[rows], list(part.labels), list(part.texts)
    labels = sorted(set(y))
    first = compare_baselines(X, y, texts, X[:40], y[:40], texts[:40], labels)
    again = compare_baselines(X, y, texts, X[40:80], y[40:80], texts[40:80], labels)  # another test set
    assert len(fits) == 1 and set(first) == set(again) == BASELINES
    relabelled = y[1:] + y[:1]  # same texts and embeddings, other labels: another training set
    compare_baselines(X, relabelled, texts, X[:40], y[:40], texts[:40], labels)
    compare_baselines(X[:-1], y[:-1], texts[:-1], X[:40], y[:40], texts[:40], labels)
    assert len(fits) == 3


def test_text_baselines_started_in_a_worker_process_are_the_ones_used(small_data, small_result, monkeypatch):
    from concurrent.futures import Future

    from router_ml import baselines

    monkeypatch.setattr(baselines, "_fitted", OrderedDict())
    rows = range(0, len(small_data), 2)
    part = small_data.subset(rows)
    X, y, texts = small_result.embeddings[rows], list(part.labels), list(part.texts)
    baselines.start_text_baselines(y, texts)
    assert [type(v) for v in baselines._fitted.values()] == [Future]  # fitting elsewhere meanwhile
    models = baselines.fitted_baselines(X, y, texts)
    expected = baselines.tfidf_logistic_regression().fit(texts, y)
    probe = [*texts[::7], "Write a sonnet about rain.", "What is 17 * 23?"]
    np.testing.assert_allclose(models["tfidf-lr"].predict_proba(probe), expected.predict_proba(probe), atol=1e-9)
    baselines.start_text_baselines(y, texts)  # fitted already: nothing more is started
    assert [type(v) for v in baselines._fitted.values()] == [dict]


def test_temperature_calibration_keeps_the_labels_cross_validation_scores(small_data, small_result):
    X, y, texts = small_result.embeddings, np.asarray(small_data.labels), np.asarray(small_data.texts, dtype=object)
    train, test = np.arange(len(y)) % 3 != 0, np.arange(len(y)) % 3 == 0
    fitted = {
        c: EmbeddingClassifier(C=4.0, calibration=c).fit(X[train], y[train], list(texts[train]))
        for c in ("temperature", "none")
    }
    calibrated, plain = (fitted[c].predict_proba(X[test], list(texts[test])) for c in ("temperature", "none"))
    assert not np.allclose(calibrated, plain)  # the calibration changes the probabilities ...
    assert (calibrated.argmax(axis=1) == plain.argmax(axis=1)).all()  # ... never the label


def test_a_failed_background_fit_is_fitted_here_or_reported(small_data, small_result, monkeypatch, caplog):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from router_ml import baselines

    monkeypatch.setattr(baselines, "_fitted", OrderedDict())
    rows = range(0, len(small_data), 4)
    part = small_data.subset(rows)
    X, y, texts = small_result.embeddings[rows], list(part.labels), list(part.texts)
    key = baselines._text_key(y, texts)
    died: Future = Future()
    died.set_exception(BrokenProcessPool("the worker was killed"))
    baselines._fitted[key] = died
    with caplog.at_level("WARNING", logger="router_ml.baselines"):
        models = baselines.fitted_baselines(X, y, texts)  # fitted here instead
    assert "the worker process failed" in caplog.text and "tfidf-lr" in models
    assert baselines._fitted[key] is not died
    failed: Future = Future()
    failed.set_exception(ValueError("bad labels"))
    baselines._fitted[key] = failed
    with pytest.raises(ValueError, match="bad labels"):
        baselines.fitted_baselines(X, y, texts)
    assert key not in baselines._fitted  # not kept: the next call fits again
