"""Baselines the router must beat, on the same embeddings (and one on raw text).

- nearest centroid (cosine: the embeddings are unit length),
- k-nearest neighbours (cosine),
- semantic-router-style top-k similarity vote: the k most similar training utterances vote for their route with
  their similarity, the route with the highest summed score wins,
- TF-IDF (word 1-2 grams + char 3-5 grams) + logistic regression, with no embeddings at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.pipeline import make_pipeline, make_union
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["EMBEDDING_BASELINES", "TEXT_BASELINES", "TopKSimilarityVote", "tfidf_logistic_regression"]


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
