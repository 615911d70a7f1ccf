"""Model selection's shortcuts give what the plain scikit-learn fits give: the fold TF-IDF cut from shared n-gram
counts, the grid's decision values, and the calibration fitted on out-of-fold decision values."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from router_ml import embed, training
from router_ml.calibration import calibrated_from_decisions, cross_fitted_proba, proba_from_decisions
from router_ml.embed import DEFAULT_MODEL
from router_ml.exceptions import EmbedderError
from router_ml.model import EmbeddingClassifier, logistic_regression, tfidf_features
from router_ml.selection import NgramCounts, Setting, cross_validate_and_fit, cross_validate_grid, parallel_jobs
from router_ml.training import TrainConfig


@pytest.fixture(scope="module")
def splits(small_data):
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    return list(folds.split(np.zeros(len(small_data)), small_data.labels))


@pytest.mark.parametrize("instruction", [True, False])
def test_fold_tfidf_from_shared_counts_equals_a_vectorizer_fitted_on_the_fold(small_data, splits, instruction):
    texts = np.asarray(small_data.texts, dtype=object)
    train_rows, test_rows = splits[0]
    counts = NgramCounts(small_data.texts)
    cut_train, cut_test = counts.features(train_rows, [train_rows, test_rows], instruction)
    vectorizer = tfidf_features(instruction).fit(list(texts[train_rows]))
    expected_train = vectorizer.transform(list(texts[train_rows]))
    expected_test = vectorizer.transform(list(texts[test_rows]))
    assert cut_train.shape == expected_train.shape and cut_test.shape == expected_test.shape
    assert cut_train.dtype == expected_train.dtype == np.float32
    np.testing.assert_allclose(cut_train.toarray(), expected_train.toarray(), atol=1e-6)
    np.testing.assert_allclose(cut_test.toarray(), expected_test.toarray(), atol=1e-6)


def test_grid_decisions_equal_plain_fold_fits(small_data, small_result, splits):
    X, y, texts = small_result.embeddings, np.asarray(small_data.labels), small_data.texts
    settings = [Setting(4.0, "balanced", True), Setting(4.0, "balanced", True, False), Setting(16.0, None, False)]
    decisions = cross_validate_grid(X, y, texts, settings, splits, n_jobs=1)
    assert set(decisions) == set(settings)
    for setting in settings:
        expected = np.zeros_like(decisions[setting])
        for train_rows, test_rows in splits:
            head = EmbeddingClassifier(
                C=setting.C, class_weight=setting.class_weight, tfidf=setting.tfidf, instruction=setting.instruction
            )
            head.set_params(calibration="none").fit(X[train_rows], y[train_rows], [texts[i] for i in train_rows])
            features = head._features(X[test_rows], [texts[i] for i in test_rows], fit=False)
            expected[test_rows] = head.estimator_.decision_function(features)
        np.testing.assert_allclose(decisions[setting], expected, atol=2e-3)
        agree = (decisions[setting].argmax(axis=1) == expected.argmax(axis=1)).mean()
        assert agree > 0.99


@pytest.mark.parametrize("method", ["temperature", "sigmoid", "isotonic"])
def test_calibration_from_decisions_equals_calibrated_classifier_cv(small_result, small_data, splits, method):
    X, y = small_result.embeddings.astype(np.float64), np.asarray(small_data.labels)
    lr = LogisticRegression(C=4.0, max_iter=5000)
    decisions = cross_val_predict(lr, X, y, cv=splits, method="decision_function")
    ours = calibrated_from_decisions(LogisticRegression(C=4.0, max_iter=5000).fit(X, y), decisions, y, method, 3)
    reference = CalibratedClassifierCV(lr, method=method, cv=splits, ensemble=False).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), reference.predict_proba(X), atol=1e-6)
    assert list(ours.classes_) == list(reference.classes_)


def test_cross_fitted_calibration_never_sees_the_rows_it_scores(small_result, small_data, splits):
    X, y = small_result.embeddings.astype(np.float64), np.asarray(small_data.labels)
    classes = np.unique(y)
    decisions = cross_val_predict(LogisticRegression(C=4.0, max_iter=5000), X, y, cv=splits, method="decision_function")
    proba = cross_fitted_proba(decisions, y, classes, "temperature", [test for _, test in splits])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert (proba.argmax(axis=1) == decisions.argmax(axis=1)).all()  # temperature keeps the arg-max
    poisoned = decisions.copy()
    first_test = splits[0][1]
    poisoned[first_test] *= 50.0  # only the first fold's own rows change: its calibrator is fitted on the others
    changed = cross_fitted_proba(poisoned, y, classes, "temperature", [test for _, test in splits])
    rest = np.setdiff1d(np.arange(len(y)), first_test)
    assert not np.allclose(changed[rest], proba[rest])  # the other folds' calibrators saw the change
    assert np.allclose(proba_from_decisions(decisions), cross_fitted_proba(decisions, y, classes, "none", []))


def test_parallel_jobs_are_sized_to_cores_and_tasks(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert parallel_jobs(-1, 15) == 2
    assert parallel_jobs(None, 1) == 1
    assert parallel_jobs(8, 15) == 2
    assert parallel_jobs(1, 15) == 1


def test_training_falls_back_to_torch_with_one_line(small_data, monkeypatch, caplog):
    real = embed.make_embedder

    def no_onnx(name, backend="torch", **kwargs):
        if backend != "torch":
            raise EmbedderError("exporting to ONNX failed: no exporter here")
        return real(name, backend, **kwargs)

    monkeypatch.setattr(training, "make_embedder", no_onnx)
    with caplog.at_level(logging.WARNING, logger="router_ml.training"):
        embedder = training.training_embedder(TrainConfig(embedder=DEFAULT_MODEL))
    assert embedder.backend == "torch"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "embedding on torch" in lines[0] and "no exporter here" in lines[0]
    assert "\n" not in lines[0]


def test_training_records_the_embedding_backend_rate_and_stages(small_result, small_data):
    m = small_result.metrics
    assert m["embedding"]["backend"] == small_result.model.embedder.backend
    assert m["embedding"]["prompts"] == len(small_data)
    assert m["embedding"]["prompts_per_second"] > 0
    assert set(m["stage_seconds"]) == {"embed", "select", "fit"}
    assert m["train_seconds"] == pytest.approx(sum(m["stage_seconds"].values()), abs=0.05)


def test_final_head_is_calibrated_on_the_chosen_settings_decisions(small_data, small_result):
    head = small_result.model.head_
    assert isinstance(head.estimator_, CalibratedClassifierCV)
    assert len(head.estimator_.calibrated_classifiers_) == 1
    features = head._features(small_result.embeddings, small_data.texts, fit=False)
    assert sp.issparse(features)
    proba = head.predict_proba(small_result.embeddings, small_data.texts)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    fresh = tfidf_features().fit(small_data.texts)  # the final vectorizer, fitted alongside model selection
    assert [v.vocabulary_ for _, v in head.vectorizer_.transformer_list] == [
        v.vocabulary_ for _, v in fresh.transformer_list
    ]
    lr = head.estimator_.calibrated_classifiers_[0].estimator
    assert (head.classes_[proba.argmax(axis=1)] == lr.predict(features)).all()  # temperature keeps the arg-max
    assert (head.classes_[proba.argmax(axis=1)] == np.asarray(small_data.labels)).mean() > 0.9


def test_a_one_setting_grid_fits_the_final_regression_alongside_the_folds(small_data, small_result, splits):
    X, y, texts = small_result.embeddings, np.asarray(small_data.labels), small_data.texts
    setting = Setting(4.0, "balanced", True)
    vectorizer = tfidf_features()
    features = sp.hstack([sp.csr_matrix(X), vectorizer.fit_transform(texts)], format="csr")
    values, regression = cross_validate_and_fit(X, y, texts, setting, splits, features, n_jobs=2)
    np.testing.assert_allclose(values, cross_validate_grid(X, y, texts, [setting], splits, n_jobs=1)[setting])
    plain = logistic_regression(4.0, "balanced", 5000).fit(features, y)  # the head's own solver
    np.testing.assert_allclose(regression.coef_, plain.coef_, atol=1e-6)
    head = EmbeddingClassifier(C=4.0).fit(
        X, y, texts, oof_decisions=values, ngrams=(vectorizer, features[:, X.shape[1] :]), regression=regression
    )
    assert head.estimator_.calibrated_classifiers_[0].estimator is regression  # used as it is, not refitted


def test_a_pre_fitted_regression_must_be_the_heads_own(small_data, small_result, splits):
    X, y, texts = small_result.embeddings, np.asarray(small_data.labels), small_data.texts
    setting = Setting(4.0, "balanced", False)
    values, regression = cross_validate_and_fit(X, y, texts, setting, splits, X, n_jobs=1)
    head = EmbeddingClassifier(C=4.0, tfidf=False)
    assert head.fit(X, y, oof_decisions=values, regression=regression).predict(X[:3]).shape == (3,)
    with pytest.raises(ValueError, match="C"):  # another C
        EmbeddingClassifier(C=8.0, tfidf=False).fit(X, y, oof_decisions=values, regression=regression)
    with pytest.raises(ValueError, match="features"):  # fitted on other features
        EmbeddingClassifier(C=4.0).fit(X, y, texts, oof_decisions=values, regression=regression)
    with pytest.raises(ValueError, match="oof_decisions"):  # nothing to calibrate it on
        EmbeddingClassifier(C=4.0, tfidf=False).fit(X, y, regression=regression)


@pytest.mark.parametrize("instruction", [True, False])
def test_the_final_tfidf_cut_from_counts_equals_a_vectorizer_fitted_on_every_text(small_data, instruction):
    counts = NgramCounts(small_data.texts, instruction=True, n_jobs=2)  # blocks counted in two processes
    union, matrix = counts.fitted(instruction)
    reference = tfidf_features(instruction)
    expected = reference.fit_transform(small_data.texts)
    assert [v.vocabulary_ for _, v in union.transformer_list] == [v.vocabulary_ for _, v in reference.transformer_list]
    np.testing.assert_allclose(matrix.toarray(), expected.toarray(), atol=1e-6)
    unseen = ["Write a haiku about a lighthouse.", "fix this:\n```py\nprint(1\n```\nit fails"]
    np.testing.assert_allclose(union.transform(unseen).toarray(), reference.transform(unseen).toarray(), atol=1e-6)
