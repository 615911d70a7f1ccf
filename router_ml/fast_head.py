"""A routing-time view of a fitted :class:`~router_ml.model.EmbeddingClassifier` with the per-call overhead removed.

Routing one prompt through scikit-learn's ``FeatureUnion`` of two ``TfidfVectorizer``, a sparse ``hstack`` and
``CalibratedClassifierCV.predict_proba`` costs about 1.5 ms, nearly all of it input validation and sparse-matrix
bookkeeping for a single row: as much as the int8 embedding itself. :class:`LinearHead` keeps the fitted pieces
(the vectorizers' own analyzers, vocabularies and IDF weights, the logistic regression's coefficients and the
temperature) and evaluates the same arithmetic directly: TF-IDF of the few n-grams a prompt has, dotted with
their coefficient rows. Its probabilities equal scikit-learn's to float32 precision (tested); heads it does not
support (binary, sigmoid or isotonic calibration, other vectorizer settings) are left to scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression

__all__ = ["LinearHead"]


@dataclass(frozen=True)
class _Ngrams:
    analyzer: Callable[[str], list[str]]
    vocabulary: dict[str, int]
    idf: np.ndarray
    sublinear: bool
    weights: np.ndarray  # (vocabulary size, n_classes): this block's coefficient rows

    def logits(self, text: str) -> np.ndarray | None:
        get = self.vocabulary.get
        columns = np.fromiter((get(gram, -1) for gram in self.analyzer(text)), dtype=np.intp)
        columns = columns[columns >= 0]
        if not columns.size:
            return None
        index, counts = np.unique(columns, return_counts=True)
        tf = counts.astype(np.float32)
        values = (1.0 + np.log(tf) if self.sublinear else tf) * self.idf[index]
        values /= np.sqrt(values @ values)
        return values @ self.weights[index]


def _ngram_blocks(head: Any, weights: np.ndarray) -> list[_Ngrams] | None:
    if not head.tfidf:
        return []
    blocks, offset = [], 0
    for _, vectorizer in head.vectorizer_.transformer_list:
        supported = vectorizer.norm == "l2" and vectorizer.use_idf and not vectorizer.binary
        if not supported or vectorizer.vocabulary is not None:
            return None
        size = len(vectorizer.vocabulary_)
        blocks.append(
            _Ngrams(
                analyzer=vectorizer.build_analyzer(),
                vocabulary=vectorizer.vocabulary_,
                idf=np.asarray(vectorizer.idf_, dtype=np.float32),
                sublinear=bool(vectorizer.sublinear_tf),
                weights=np.ascontiguousarray(weights[offset : offset + size], dtype=np.float32),
            )
        )
        offset += size
    return blocks if offset == weights.shape[0] else None


class LinearHead:
    """Probabilities of a fitted multiclass :class:`~router_ml.model.EmbeddingClassifier`, computed directly.

    Build it with :meth:`compile`, which returns ``None`` for heads it does not cover.
    """

    def __init__(
        self, embedding_weights: np.ndarray, intercept: np.ndarray, ngrams: list[_Ngrams], beta: float
    ) -> None:
        self.embedding_weights = embedding_weights
        self.intercept = intercept
        self.ngrams = ngrams
        self.beta = beta

    @classmethod
    def compile(cls, head: Any) -> LinearHead | None:
        """A :class:`LinearHead` with the same probabilities as ``head``, or ``None`` if it is not supported."""
        estimator, beta, classes = head.estimator_, 1.0, list(head.estimator_.classes_)
        if isinstance(estimator, CalibratedClassifierCV):
            if estimator.method != "temperature" or len(estimator.calibrated_classifiers_) != 1:
                return None
            calibrated = estimator.calibrated_classifiers_[0]
            estimator, beta = calibrated.estimator, float(calibrated.calibrators[0].beta_)
            # the inner regression sees label indices; keep them only if they are 0..k-1 in the head's order
            classes = [calibrated.classes[i] for i in estimator.classes_]
        if not isinstance(estimator, LogisticRegression) or len(classes) < 3:
            return None
        if [str(c) for c in classes] != [str(c) for c in head.classes_]:
            return None
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        dim = head.n_features_in_
        ngrams = _ngram_blocks(head, coef[:, dim:].T)
        if ngrams is None:
            return None
        weights = np.ascontiguousarray(coef[:, :dim].T)
        return cls(weights, np.asarray(estimator.intercept_, dtype=np.float64), ngrams, beta)

    def text_logits(self, texts: Sequence[str]) -> np.ndarray:
        """The n-gram half of the logits, shape ``(n, n_classes)``: it needs only the texts, so the router
        computes it before the embedding, while its vocabulary tables are still in the CPU cache (about 0.2 ms
        less per short prompt than after ONNX Runtime has run)."""
        logits = np.zeros((len(texts), len(self.intercept)), dtype=np.float64)
        for block in self.ngrams:
            for row, text in enumerate(texts):
                extra = block.logits(text)
                if extra is not None:
                    logits[row] += extra
        return logits

    def predict_proba(self, X: np.ndarray, texts: Sequence[str], text_logits: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities for embeddings ``X`` of ``texts``, shape ``(n, n_classes)``; pass
        ``text_logits`` if already computed by :meth:`text_logits`."""
        logits = self.text_logits(texts) if text_logits is None else text_logits.copy()
        logits += np.asarray(X, dtype=np.float64) @ self.embedding_weights + self.intercept
        logits *= self.beta
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits
