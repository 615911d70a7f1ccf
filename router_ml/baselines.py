"""Baselines the router must beat, on the same embeddings (and one on raw text).

- nearest centroid (cosine: the embeddings are unit length),
- k-nearest neighbours (cosine),
- semantic-router-style top-k similarity vote: the k most similar training utterances vote for their route with
  their similarity, the route with the highest summed score wins,
- TF-IDF (word 1-2 grams + char 3-5 grams) + logistic regression, with no embeddings at all.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.pipeline import make_pipeline, make_union
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "EMBEDDING_BASELINES",
    "TEXT_BASELINES",
    "TopKSimilarityVote",
    "fitted_baselines",
    "start_text_baselines",
    "tfidf_logistic_regression",
]

logger = logging.getLogger(__name__)


class TopKSimilarityVote(ClassifierMixin, BaseEstimator):
    """semantic-router-style routing: sum the cosine similarities of the top-k training utterances per route.

    Args:
        top_k (int): how many most-similar training utterances vote. Default 5.
    """

    def __init__(self, top_k: int = 5) -> None:
        self.top_k = top_k

    def fit(self, X: np.ndarray, y: Sequence[str]) -> TopKSimilarityVote:
        """Remember the (unit-length) training embeddings and their labels."""
        X, y = validate_data(self, X, y, dtype=np.float32)
        self.classes_ = unique_labels(y)
        self.X_ = X
        self.y_index_ = np.searchsorted(self.classes_, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Summed top-k similarity per class, normalised to sum to one."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        sims = X @ self.X_.T
        k = min(self.top_k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        scores = np.zeros((len(X), len(self.classes_)))
        rows = np.arange(len(X))[:, None]
        np.add.at(scores, (np.broadcast_to(rows, top.shape), self.y_index_[top]), np.clip(sims[rows, top], 0, None))
        scores += 1e-12
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The class with the highest summed similarity."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def tfidf_logistic_regression() -> Any:
    """TF-IDF word and character n-grams + logistic regression, on raw text."""
    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True),
    )
    return make_pipeline(features, LogisticRegression(C=10.0, class_weight="balanced", max_iter=5000))


EMBEDDING_BASELINES: dict[str, Callable[[], Any]] = {
    "nearest-centroid": lambda: NearestCentroid(),
    "knn-10": lambda: KNeighborsClassifier(n_neighbors=10, metric="cosine", weights="distance"),
    "topk-similarity-vote": lambda: TopKSimilarityVote(top_k=5),
}
"""Baselines fitted on the same embedding matrix as the router."""

TEXT_BASELINES: dict[str, Callable[[], Any]] = {"tfidf-lr": tfidf_logistic_regression}
"""Baselines fitted on raw text, without embeddings."""

FITTED_KEPT = 4
"""Training sets whose fitted text baselines :func:`fitted_baselines` keeps, most recently used first."""
_fitted: OrderedDict[str, dict[str, Any] | Future[dict[str, Any]]] = OrderedDict()


def _text_key(y_train: Sequence[str], texts_train: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for value in (*y_train, "\0", *texts_train):
        digest.update(str(value).encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def _fit_text_baselines(y_train: Sequence[str], texts_train: Sequence[str]) -> dict[str, Any]:
    return {name: factory().fit(list(texts_train), list(y_train)) for name, factory in TEXT_BASELINES.items()}


def _remember(key: str, value: dict[str, Any] | Future[dict[str, Any]]) -> None:
    _fitted[key] = value
    _fitted.move_to_end(key, last=False)
    while len(_fitted) > FITTED_KEPT:
        _fitted.popitem()


def start_text_baselines(y_train: Sequence[str], texts_train: Sequence[str]) -> None:
    """Start fitting the text baselines on a training set in a worker process, unless they are fitted already:
    they need no embeddings, so an evaluation can embed its prompts meanwhile (the TF-IDF baseline fits on one
    core for about 30 s on the bundled data). :func:`fitted_baselines` then waits for that fit."""
    key = _text_key(y_train, texts_train)
    if key in _fitted:
        return
    # spawned, not forked: the parent may hold ONNX Runtime or torch threads, which a fork would copy mid-flight
    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        _remember(key, executor.submit(_fit_text_baselines, list(y_train), list(texts_train)))
    except OSError as exc:  # no process to be had: fitted here when needed
        logger.warning("fitting the text baselines in this process: no worker process (%s)", exc)
    executor.shutdown(wait=False)  # the worker exits once the fit is done


def fitted_baselines(X_train: np.ndarray, y_train: Sequence[str], texts_train: Sequence[str]) -> dict[str, Any]:
    """Every baseline fitted on one training set. The text baselines are fitted once per process and training set
    (keyed by a SHA-256 of its labels and texts): ``make run`` scores the held-out split and ``dev.jsonl`` against
    the same bundled training split and fits the slow TF-IDF baseline once. The embedding baselines cost next to
    nothing and are fitted each time."""
    models = {name: factory().fit(X_train, y_train) for name, factory in EMBEDDING_BASELINES.items()}
    key = _text_key(y_train, texts_train)
    text = _fitted.get(key)
    if isinstance(text, Future):
        try:
            text = text.result()
        except BrokenProcessPool as exc:  # the worker died (killed, out of memory): fit here instead
            logger.warning("fitting the text baselines in this process: the worker process failed (%s)", exc)
            text = None
        except BaseException:
            _fitted.pop(key, None)  # not kept: the next call fits again
            raise
    if text is None:
        text = _fit_text_baselines(y_train, texts_train)
    _remember(key, text)
    return models | text
