"""Calibrate the head's probabilities from out-of-fold decision values, with scikit-learn's own calibrators.

``CalibratedClassifierCV(ensemble=False)`` cross-validates the logistic regression once more only to collect
out-of-fold decision values, fits its calibrator on them and refits the regression on all rows. Model selection
(:mod:`router_ml.selection`) has already computed those values for the chosen setting, so
:func:`calibrated_from_decisions` does the last two steps directly and returns the same fitted
``CalibratedClassifierCV`` (one classifier, its calibrators) the artifact format stores. scikit-learn's per-fold
pair class and calibrator fitting are private; :mod:`router_ml.artifact.head_rebuild` depends on them the same way,
and the manifest's library versions warn on drift.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import LabelEncoder

__all__ = ["calibrated_from_decisions", "calibrated_shell", "cross_fitted_proba", "proba_from_decisions"]


class _Decisions(ClassifierMixin, BaseEstimator):
    """A stand-in classifier whose decision values are its input, so calibrators run on precomputed values."""

    def __init__(self, classes: np.ndarray) -> None:
        self.classes = classes

    @property
    def classes_(self) -> np.ndarray:
        return self.classes

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return X[:, 0] if X.ndim == 2 and X.shape[1] == 1 else X


def _fit_pair(classifier: object, decisions: np.ndarray, y: Sequence[str], classes: np.ndarray, method: str) -> object:
    from sklearn.calibration import _fit_calibrator

    predictions = decisions.reshape(-1, 1) if decisions.ndim == 1 else decisions
    target = LabelEncoder().fit(classes).transform(y) if method == "temperature" else np.asarray(y)
    return _fit_calibrator(classifier, predictions, target, classes, method, xp=np)


def calibrated_shell(
    lr: LogisticRegression, pair: object, method: str, cv: int, classes: np.ndarray
) -> CalibratedClassifierCV:
    """A fitted ``CalibratedClassifierCV(ensemble=False)`` holding ``lr`` and its fitted calibration ``pair``."""
    template = clone(lr)
    estimator = CalibratedClassifierCV(template, method=method, cv=cv, ensemble=False)
    estimator.calibrated_classifiers_ = [pair]
    estimator.classes_ = classes
    estimator.n_features_in_ = lr.n_features_in_
    return estimator


def calibrated_from_decisions(
    lr: LogisticRegression, decisions: np.ndarray, y: Sequence[str], method: str, cv: int
) -> CalibratedClassifierCV:
    """``lr`` (fitted on all rows) calibrated with ``method`` on out-of-fold ``decisions`` of the same rows: what
    ``CalibratedClassifierCV(lr, method=method, cv=..., ensemble=False).fit`` makes, without its extra folds."""
    pair = _fit_pair(lr, decisions, y, lr.classes_, method)
    return calibrated_shell(lr, pair, method, cv, lr.classes_)


def proba_from_decisions(decisions: np.ndarray) -> np.ndarray:
    """The logistic regression's own probabilities from its decision values (softmax; binary: the logistic)."""
    if decisions.ndim == 1:
        p = expit(decisions)
        return np.column_stack([1.0 - p, p])
    return softmax(decisions, axis=1)


def cross_fitted_proba(
    decisions: np.ndarray, y: Sequence[str], classes: np.ndarray, method: str, folds: Sequence[np.ndarray]
) -> np.ndarray:
    """Calibrated out-of-fold probabilities: each fold's decision values calibrated by a calibrator fitted on the
    other folds' values, so the calibration never sees the rows it is judged on. ``method="none"``: the
    regression's own probabilities."""
    if method == "none":
        return proba_from_decisions(decisions)
    y = np.asarray(y)
    proba = np.zeros((len(y), len(classes)))
    stand_in = _Decisions(classes)
    for test in folds:
        rest = np.setdiff1d(np.arange(len(y)), test)
        pair = _fit_pair(stand_in, decisions[rest], y[rest], classes, method)
        rows = decisions[test]
        proba[test] = pair.predict_proba(rows.reshape(-1, 1) if rows.ndim == 1 else rows)  # type: ignore[attr-defined]
    return proba
