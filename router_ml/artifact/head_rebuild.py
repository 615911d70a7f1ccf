"""Rebuild the fitted scikit-learn pieces of a head from checked data (see :mod:`router_ml.artifact.head_format`).

Each piece is constructed with the parameters its fit used and given the fitted attributes it predicts with, in
the dtypes the fit produced, so predictions are the same arithmetic on the same numbers. Calibration is rebuilt
as scikit-learn's own ``CalibratedClassifierCV`` (``ensemble=False``: one classifier, its calibrators), whose
per-fold pair class is private to scikit-learn: the library versions recorded in the manifest warn on drift.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion

from ..instruction import VIEWS
from ..model import fitted_vectorizer, logistic_regression

__all__ = ["calibrated", "logistic", "vectorizer_union"]


def vectorizer_union(entries: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> FeatureUnion:
    """The fitted TF-IDF vectorizers, joined as :func:`router_ml.model.tfidf_features` joins them."""
    transformers = []
    for i, entry in enumerate(entries):
        params = dict(entry["params"])
        params["dtype"] = np.dtype(params["dtype"]).type
        params["ngram_range"] = tuple(params["ngram_range"])
        params["preprocessor"] = VIEWS[params["preprocessor"]] if params["preprocessor"] else None
        transformer = TfidfTransformer(
            norm=params["norm"], use_idf=True, smooth_idf=params["smooth_idf"], sublinear_tf=params["sublinear_tf"]
        )
        transformer.idf_ = arrays[f"vectorizers.{i}.idf"]
        vectorizer = fitted_vectorizer(TfidfVectorizer(**params), entry["vocabulary"], transformer)
        transformers.append((entry["name"], vectorizer))
    return FeatureUnion(transformers)


def logistic(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> LogisticRegression:
    """The fitted logistic regression, with the parameters :class:`~router_ml.model.EmbeddingClassifier` fits."""
    params = spec["params"]
    lr = logistic_regression(params["C"], params["class_weight"], params["max_iter"])
    lr.coef_ = arrays["logistic.coef"]
    lr.intercept_ = arrays["logistic.intercept"]
    n_classes = len(spec["classes"])
    indices = spec["logistic"]["classes"] == "indices"
    lr.classes_ = np.arange(n_classes) if indices else np.asarray(spec["classes"])
    lr.n_features_in_ = int(lr.coef_.shape[1])
    lr.n_iter_ = np.asarray(spec["logistic"]["n_iter"], dtype=np.int32)
    return lr


def _calibrators(method: str, rows: int, arrays: dict[str, np.ndarray], increasing: list[bool] | None) -> list[Any]:
    from sklearn.calibration import _SigmoidCalibration, _TemperatureScaling

    if method == "temperature":
        scaling = _TemperatureScaling()
        scaling.beta_ = arrays["calibration.beta"][0]
        return [scaling]
    calibrators: list[Any] = []
    for r in range(rows):
        if method == "sigmoid":
            sigmoid = _SigmoidCalibration()
            sigmoid.a_, sigmoid.b_ = arrays["calibration.a"][r], arrays["calibration.b"][r]
            calibrators.append(sigmoid)
            continue
        isotonic = IsotonicRegression(out_of_bounds="clip")
        x, y = arrays[f"calibration.{r}.x"], arrays[f"calibration.{r}.y"]
        isotonic.X_min_, isotonic.X_max_ = arrays[f"calibration.{r}.bounds"]
        isotonic.X_thresholds_, isotonic.y_thresholds_ = x, y
        isotonic.increasing_ = bool(increasing[r]) if increasing is not None else True
        isotonic._build_f(x, y)  # the interpolation its fit (and its unpickling) builds
        calibrators.append(isotonic)
    return calibrators


def calibrated(spec: dict[str, Any], lr: LogisticRegression, arrays: dict[str, np.ndarray]) -> CalibratedClassifierCV:
    """The fitted ``CalibratedClassifierCV`` around ``lr``, as :class:`~router_ml.model.EmbeddingClassifier` fits."""
    from sklearn.calibration import _CalibratedClassifier

    params, calibration = spec["params"], spec["calibration"]
    method, classes = calibration["method"], np.asarray(spec["classes"])
    template = logistic_regression(params["C"], params["class_weight"], params["max_iter"])
    estimator = CalibratedClassifierCV(template, method=method, cv=calibration["cv"], ensemble=False)
    calibrators = _calibrators(method, lr.coef_.shape[0], arrays, calibration["increasing"])
    estimator.calibrated_classifiers_ = [_CalibratedClassifier(lr, calibrators, classes=classes, method=method)]
    estimator.classes_ = classes
    estimator.n_features_in_ = lr.n_features_in_
    return estimator
