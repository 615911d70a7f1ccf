"""Model selection for the head: one cross-validation pass that scores every grid setting on shared features.

What makes it cheap, with the same result as fitting each setting's head on each fold from scratch:

- **Texts are analysed into n-grams once.** Finding the word and character n-grams of every prompt is most of a
  TF-IDF fit. :class:`NgramCounts` counts them once for all rows; each fold's TF-IDF features are then cut from
  those counts exactly as a ``TfidfVectorizer`` fitted on the fold's training rows would make them (the terms
  with enough document frequency *in those rows*, their IDF, sub-linear TF, L2 norm): the same vocabulary in the
  same (sorted) column order, so the same numbers.
- **Cutting a fold's features from the counts takes a fraction of a second**, so every fold × setting is its own
  job, in one pool sized to the cores (no core idles on the last fold). The final head's TF-IDF is cut from the
  same counts too (:meth:`NgramCounts.fitted`), and the blocks are counted in parallel (:func:`analyse_texts`).
- **A grid of one setting fits the final regression in the same pool as its folds**
  (:func:`cross_validate_and_fit`): with nothing to choose, it need not wait for them.
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
from sklearn.pipeline import FeatureUnion

from .model import fitted_vectorizer, head_features, logistic_regression, tfidf_features

__all__ = [
    "NgramCounts",
    "Setting",
    "analyse_texts",
    "cross_validate_and_fit",
    "cross_validate_grid",
    "parallel_jobs",
]

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
        n_jobs (int | None): blocks counted in parallel (``-1`` = every core). Default 1.
    """

    def __init__(self, texts: Sequence[str], instruction: bool = True, n_jobs: int | None = 1) -> None:
        self.instruction = instruction
        self.vectorizers: list[TfidfVectorizer] = [v for _, v in tfidf_features(instruction).transformer_list]
        # the character blocks first: they take longest, so the word blocks fill the other cores meanwhile
        order = sorted(range(len(self.vectorizers)), key=lambda i: self.vectorizers[i].analyzer == "word")
        jobs = [delayed(_count)(self.vectorizers[i], texts) for i in order]
        counted = dict(zip(order, Parallel(n_jobs=parallel_jobs(n_jobs, len(jobs)))(jobs), strict=True))
        self.counts: list[sp.csr_matrix] = [counted[i][0] for i in range(len(order))]
        self.terms: list[np.ndarray] = [counted[i][1] for i in range(len(order))]

    def _block(self, i: int, train: np.ndarray) -> tuple[np.ndarray, TfidfTransformer]:
        """Block ``i``'s columns kept by a vectorizer fitted on the ``train`` rows, and its fitted TF-IDF."""
        vectorizer, fitted = self.vectorizers[i], self.counts[i][train]
        df = np.bincount(fitted.indices, minlength=fitted.shape[1])  # a row holds each column at most once
        low, high = _doc_count(vectorizer.min_df, len(train)), _doc_count(vectorizer.max_df, len(train))
        keep = np.flatnonzero((df >= low) & (df <= high))
        transformer = TfidfTransformer(
            norm=vectorizer.norm,
            use_idf=vectorizer.use_idf,
            smooth_idf=vectorizer.smooth_idf,
            sublinear_tf=vectorizer.sublinear_tf,
        )
        return keep, transformer.fit(fitted[:, keep])

    def _used(self, instruction: bool) -> int:
        if instruction and not self.instruction:
            raise ValueError("these counts have no instruction-view blocks: make them with instruction=True")
        return len(tfidf_features(instruction).transformer_list)

    def features(self, train: np.ndarray, rows: Sequence[np.ndarray], instruction: bool = True) -> list[sp.csr_matrix]:
        """The TF-IDF n-gram features of each index array in ``rows``, as if the vectorizers of
        ``tfidf_features(instruction)`` were fitted on the ``train`` rows only."""
        blocks: list[list[sp.csr_matrix]] = [[] for _ in rows]
        for i in range(self._used(instruction)):
            keep, transformer = self._block(i, train)
            for out, index in zip(blocks, rows, strict=True):
                out.append(transformer.transform(self.counts[i][index][:, keep]))
        return [sp.hstack(parts, format="csr") for parts in blocks]

    def fitted(self, instruction: bool = True) -> tuple[FeatureUnion, sp.csr_matrix]:
        """``tfidf_features(instruction)`` as fitted on every row, and its features of every row: the same
        vocabulary, IDF and numbers as ``fit_transform`` on the texts, without analysing them again."""
        every = np.arange(self.counts[0].shape[0])
        union = tfidf_features(instruction)
        matrices = []
        for i, (_, vectorizer) in enumerate(union.transformer_list[: self._used(instruction)]):
            keep, transformer = self._block(i, every)
            fitted_vectorizer(vectorizer, self.terms[i][keep], transformer)
            matrices.append(transformer.transform(self.counts[i][:, keep]))
        return union, sp.hstack(matrices, format="csr")


def _count(vectorizer: TfidfVectorizer, texts: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
    """Every n-gram of ``vectorizer``'s analyzer counted in every text (no document-frequency cut), and the
    columns' terms, in the sorted order a fit gives them."""
    params = {k: v for k, v in vectorizer.get_params().items() if k in _COUNT_PARAMS}
    counter = CountVectorizer(**params, min_df=1, max_df=1.0)
    counts = counter.fit_transform(texts).astype(vectorizer.dtype).tocsr()
    return counts, counter.get_feature_names_out()


def analyse_texts(
    texts: Sequence[str], n_jobs: int | None = -1, instruction: bool = True
) -> tuple[NgramCounts, tuple[FeatureUnion, sp.csr_matrix]]:
    """The texts' :class:`NgramCounts` for the folds (its blocks counted in parallel), and, from the same counts,
    ``tfidf_features(instruction)`` fitted on every text with its features, for the final head."""
    counts = NgramCounts(texts, instruction, n_jobs)
    return counts, counts.fitted(instruction)


def _doc_count(limit: float, n_docs: int) -> float:
    """A ``min_df``/``max_df`` as a document count, as scikit-learn reads it."""
    return limit if isinstance(limit, Integral) else limit * n_docs


def _regression(setting: Setting, max_iter: int) -> LogisticRegression:
    return logistic_regression(setting.C, setting.class_weight, max_iter)


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
        X_train, X_test = head_features(X_train, n_train), head_features(X_test, n_test)
    lr = _regression(setting, max_iter)
    return np.asarray(lr.fit(X_train, y[train]).decision_function(X_test))


def _run_grid(
    X: np.ndarray,
    y: Sequence[str],
    texts: Sequence[str],
    settings: Sequence[Setting],
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    n_jobs: int | None,
    max_iter: int,
    counts: NgramCounts | None,
    final: Any = None,
) -> tuple[dict[Setting, np.ndarray], LogisticRegression | None]:
    """Every fold × setting, plus (with ``final`` features) the one setting fitted on all rows, in one pool."""
    y_arr = np.asarray(y)
    instruction = any(s.tfidf and s.instruction for s in settings)
    ngrams = (counts or NgramCounts(texts, instruction, n_jobs)) if any(s.tfidf for s in settings) else None
    tasks = [(s, tr, te) for s in settings for tr, te in splits]
    jobs = [delayed(_fold_setting)(X, y_arr, ngrams, tr, te, s, max_iter) for s, tr, te in tasks]
    if final is not None:  # first, so that the longest job never starts last
        jobs.insert(0, delayed(_regression(settings[0], max_iter).fit)(final, y_arr))
    results = Parallel(n_jobs=parallel_jobs(n_jobs, len(jobs)))(jobs)
    fitted = results.pop(0) if final is not None else None
    decisions: dict[Setting, Any] = {}
    for (setting, _, test), values in zip(tasks, results, strict=True):
        if setting not in decisions:
            decisions[setting] = np.zeros((len(y_arr), *values.shape[1:]))
        decisions[setting][test] = values
    return decisions, fitted


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
    return _run_grid(X, y, texts, settings, splits, n_jobs, max_iter, counts)[0]


def cross_validate_and_fit(
    X: np.ndarray,
    y: Sequence[str],
    texts: Sequence[str],
    setting: Setting,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    features: Any,
    *,
    n_jobs: int | None = -1,
    max_iter: int = 5000,
    counts: NgramCounts | None = None,
) -> tuple[np.ndarray, LogisticRegression]:
    """A grid of one setting: its out-of-fold decision values (as :func:`cross_validate_grid`) and its logistic
    regression fitted on ``features``, every row's final-head features, in the same pool as the folds. With
    nothing to choose, the final fit need not wait for the folds: 5 folds and the final fit take three rounds on
    two cores, against three rounds and then a fourth."""
    decisions, fitted = _run_grid(X, y, texts, [setting], splits, n_jobs, max_iter, counts, final=features)
    assert fitted is not None
    return decisions[setting], fitted
