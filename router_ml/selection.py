"""Model selection for the head: one cross-validation pass that scores every grid setting on shared features.

What makes it cheap, with the same result as fitting each setting's head on each fold from scratch:

- **Texts are analysed into n-grams once.** Finding the word and character n-grams of every prompt is most of a
  TF-IDF fit. :class:`NgramCounts` counts them once for all rows; each fold's TF-IDF features are then cut from
  those counts exactly as a ``TfidfVectorizer`` fitted on the fold's training rows would make them (the terms
  with enough document frequency *in those rows*, their IDF, sub-linear TF, L2 norm): the same vocabulary in the
  same (sorted) column order, so the same numbers.
- **Cutting a fold's features from the counts takes a fraction of a second**, so every fold × setting is its own
  job, in one pool sized to the cores (no core idles on the last fold), while the final head's TF-IDF is fitted
  alongside the counting (:func:`analyse_texts`).
- **Out-of-fold decision values are kept**, so the final head calibrates on the chosen setting's values
  (:func:`router_ml.calibration.calibrated_from_decisions`) instead of cross-validating again.

Warm starts along the ``C`` path were measured and left out: L-BFGS stops at once on a warm start (the optimum
for the previous ``C`` already meets its gradient tolerance for the next one), so every ``C`` returned the first
``C``'s model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from .model import tfidf_features

__all__ = ["NgramCounts", "Setting", "analyse_texts", "cross_validate_grid", "parallel_jobs"]

_COUNT_PARAMS = set(CountVectorizer().get_params()) - {"min_df", "max_df", "max_features", "vocabulary"}


@dataclass(frozen=True)
class Setting:
    """One point of the hyper-parameter grid."""

    C: float
    class_weight: str | None
    tfidf: bool
    instruction: bool = True


def parallel_jobs(n_jobs: int | None, tasks: int) -> int:
    """Workers for ``tasks`` parallel jobs: ``n_jobs`` (``-1`` or ``None`` = every core), never more than tasks."""
    cores = os.cpu_count() or 1
    wanted = cores if n_jobs is None or n_jobs < 0 else n_jobs
    return max(1, min(wanted, cores, tasks))


class NgramCounts:
    """Raw n-gram counts of every text, for each TF-IDF block of :func:`~router_ml.model.tfidf_features`.

    Args:
        texts (Sequence[str]): all rows' texts, analysed once.
        instruction (bool): also count the blocks of the instruction view (see :func:`tfidf_features`).
    """

    def __init__(self, texts: Sequence[str], instruction: bool = True) -> None:
        self.instruction = instruction
        self.vectorizers: list[TfidfVectorizer] = [v for _, v in tfidf_features(instruction).transformer_list]
        self.counts: list[sp.csr_matrix] = []
        for vectorizer in self.vectorizers:
            params = {k: v for k, v in vectorizer.get_params().items() if k in _COUNT_PARAMS}
            counter = CountVectorizer(**params, min_df=1, max_df=1.0)
            self.counts.append(counter.fit_transform(texts).astype(vectorizer.dtype).tocsr())

    def features(self, train: np.ndarray, rows: Sequence[np.ndarray], instruction: bool = True) -> list[sp.csr_matrix]:
        """The TF-IDF n-gram features of each index array in ``rows``, as if the vectorizers of
        ``tfidf_features(instruction)`` were fitted on the ``train`` rows only."""
        if instruction and not self.instruction:
            raise ValueError("these counts have no instruction-view blocks: make them with instruction=True")
        used = len(tfidf_features(instruction).transformer_list)
        blocks: list[list[sp.csr_matrix]] = [[] for _ in rows]
        for vectorizer, counts in zip(self.vectorizers[:used], self.counts[:used], strict=True):
            fitted = counts[train]
            df = np.bincount(fitted.indices, minlength=fitted.shape[1])  # a row holds each column at most once
            low, high = _doc_count(vectorizer.min_df, len(train)), _doc_count(vectorizer.max_df, len(train))
            keep = np.flatnonzero((df >= low) & (df <= high))
            transformer = TfidfTransformer(
                norm=vectorizer.norm,
                use_idf=vectorizer.use_idf,
                smooth_idf=vectorizer.smooth_idf,
                sublinear_tf=vectorizer.sublinear_tf,
            ).fit(fitted[:, keep])
            for out, index in zip(blocks, rows, strict=True):
                out.append(transformer.transform(counts[index][:, keep]))
        return [sp.hstack(parts, format="csr") for parts in blocks]


def _fitted_tfidf(texts: Sequence[str], instruction: bool) -> tuple[Any, sp.csr_matrix]:
    vectorizer = tfidf_features(instruction)
    return vectorizer, vectorizer.fit_transform(texts)


def analyse_texts(
    texts: Sequence[str], n_jobs: int | None = -1, instruction: bool = True
) -> tuple[NgramCounts, tuple[Any, sp.csr_matrix]]:
    """The texts' :class:`NgramCounts` for the folds, and ``tfidf_features(instruction)`` fitted on all of them
    with its features, for the final head: two analyses of the same texts, run side by side."""
    jobs = [delayed(NgramCounts)(texts, instruction), delayed(_fitted_tfidf)(texts, instruction)]
    counts, final = Parallel(n_jobs=parallel_jobs(n_jobs, len(jobs)))(jobs)
    return counts, final


def _doc_count(limit: float, n_docs: int) -> float:
    """A ``min_df``/``max_df`` as a document count, as scikit-learn reads it."""
    return limit if isinstance(limit, Integral) else limit * n_docs


def _fold_setting(
    X: np.ndarray,
    y: np.ndarray,
    ngrams: NgramCounts | None,
    train: np.ndarray,
    test: np.ndarray,
    setting: Setting,
    max_iter: int,
) -> np.ndarray:
    """The decision values on ``test`` of ``setting``'s logistic regression fitted on ``train``."""
    X_train, X_test = X[train], X[test]
    if setting.tfidf:
        assert ngrams is not None
        n_train, n_test = ngrams.features(train, [train, test], setting.instruction)
        X_train = sp.hstack([sp.csr_matrix(X_train), n_train], format="csr")
        X_test = sp.hstack([sp.csr_matrix(X_test), n_test], format="csr")
    lr = LogisticRegression(C=setting.C, class_weight=setting.class_weight, max_iter=max_iter)
    return np.asarray(lr.fit(X_train, y[train]).decision_function(X_test))


def cross_validate_grid(
    X: np.ndarray,
    y: Sequence[str],
    texts: Sequence[str],
    settings: Sequence[Setting],
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    n_jobs: int | None = -1,
    max_iter: int = 5000,
    counts: NgramCounts | None = None,
) -> dict[Setting, np.ndarray]:
    """Out-of-fold decision values of every setting's logistic regression (uncalibrated).

    Args:
        X (np.ndarray): ``(n, dim)`` embeddings.
        y (Sequence[str]): the labels.
        texts (Sequence[str]): the texts (for settings with TF-IDF).
        settings (Sequence[Setting]): the grid.
        splits (Sequence[tuple]): ``(train, test)`` index arrays; each row is in exactly one test fold.
        n_jobs (int | None): parallel workers (``-1`` = every core).
        max_iter (int): solver iterations.
        counts (NgramCounts | None): the texts' n-gram counts, if already made (see :func:`analyse_texts`).

    Returns:
        dict: each setting's decision values, ``(n, n_classes)`` (``(n,)`` for two classes), rows in input order.
    """
    y_arr = np.asarray(y)
    instruction = any(s.tfidf and s.instruction for s in settings)
    ngrams = (counts or NgramCounts(texts, instruction)) if any(s.tfidf for s in settings) else None
    tasks = [(s, tr, te) for s in settings for tr, te in splits]
    workers = parallel_jobs(n_jobs, len(tasks))
    results = Parallel(n_jobs=workers)(
        delayed(_fold_setting)(X, y_arr, ngrams, tr, te, s, max_iter) for s, tr, te in tasks
    )
    decisions: dict[Setting, Any] = {}
    for (setting, _, test), values in zip(tasks, results, strict=True):
        if setting not in decisions:
            decisions[setting] = np.zeros((len(y_arr), *values.shape[1:]))
        decisions[setting][test] = values
    return decisions
