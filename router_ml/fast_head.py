"""A routing-time view of a fitted :class:`~router_ml.model.EmbeddingClassifier` with the per-call overhead removed.

Routing one prompt through scikit-learn's ``FeatureUnion`` of two ``TfidfVectorizer``, a sparse ``hstack`` and
``CalibratedClassifierCV.predict_proba`` costs about 1.5 ms, nearly all of it input validation and sparse-matrix
bookkeeping for a single row: as much as the int8 embedding itself. :class:`LinearHead` keeps the fitted pieces
(the vectorizers' own analyzers, vocabularies and IDF weights, the logistic regression's coefficients and the
temperature) and evaluates the same arithmetic directly: TF-IDF of the few n-grams a prompt has, dotted with
their coefficient rows. Its probabilities equal scikit-learn's to float32 precision (tested); heads it does not
support (binary, sigmoid or isotonic calibration, other vectorizer settings) are left to scikit-learn.

Finding a prompt's n-grams is most of the head's cost (about 1.8 ms for a 1,500-character prompt through the
analyzers). Both analyzers the router uses work word by word between whitespace (``char_wb`` pads each word with
spaces; the default word tokenizer's tokens never hold whitespace), so a text's n-gram columns are its
whitespace-separated words' columns, joined, and each word's are memoized (:data:`WORD_MEMO_SIZE` words, LRU): the
same n-grams, in about a tenth of the time, since most words of a prompt have been seen before.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from .instruction import raw_part
from .tokens import TOKEN_PATTERNS

__all__ = ["WORD_MEMO_SIZE", "LinearHead"]

WORD_MEMO_SIZE = 1 << 16
"""Whitespace-separated words whose n-gram columns each vectorizer block remembers (LRU)."""

Columns = Callable[[str], list[int]]


def _char_wb_columns(vectorizer: TfidfVectorizer) -> Columns:
    """``char_wb`` n-grams never cross whitespace: a text's columns are its words' columns, joined."""
    get, analyzer = vectorizer.vocabulary_.get, vectorizer.build_analyzer()

    @lru_cache(maxsize=WORD_MEMO_SIZE)
    def of_word(word: str) -> tuple[int, ...]:
        return tuple(c for gram in analyzer(word) if (c := get(gram)) is not None)

    def columns(text: str) -> list[int]:
        found: list[int] = []
        for word in text.split():
            found += of_word(word)
        return found

    return columns


def _word_columns(vectorizer: TfidfVectorizer) -> Columns:
    """Word uni- and bigrams with a token pattern of :data:`~router_ml.tokens.TOKEN_PATTERNS`, whose tokens never
    hold whitespace: each whitespace-separated word's unigrams and inner bigrams are memoized, and only the bigram
    across each pair of neighbouring words (the last token of one, the first of the next) is looked up per text."""
    get = vectorizer.vocabulary_.get
    preprocess, tokenize = vectorizer.build_preprocessor(), vectorizer.build_tokenizer()
    bigrams = vectorizer.ngram_range[1] == 2

    @lru_cache(maxsize=WORD_MEMO_SIZE)
    def of_word(word: str) -> tuple[str, str, tuple[int, ...]] | None:
        tokens = tokenize(preprocess(word))
        if not tokens:
            return None
        grams = tokens + [f"{a} {b}" for a, b in pairwise(tokens)] if bigrams else tokens
        return tokens[0], tokens[-1], tuple(c for gram in grams if (c := get(gram)) is not None)

    def columns(text: str) -> list[int]:
        found: list[int] = []
        previous = None  # the last token so far
        for word in text.split():
            entry = of_word(word)
            if entry is None:
                continue
            first, last, inner = entry
            found += inner
            if bigrams and previous is not None and (c := get(f"{previous} {first}")) is not None:
                found.append(c)
            previous = last
        return found

    return columns


def _column_finder(vectorizer: TfidfVectorizer) -> Columns:
    """A function from a text to the vocabulary columns of its n-grams (repeats kept), exactly as the fitted
    ``vectorizer``'s analyzer finds them: memoized word by word where the settings allow it (see the module's
    docstring), else through the analyzer itself. A vectorizer reading a named view (the instruction part, then
    lower-cased) finds the columns of that part through a lower-casing copy of itself."""
    part = raw_part(vectorizer.preprocessor)
    if part is not None:
        lowercasing = copy.copy(vectorizer)
        lowercasing.set_params(preprocessor=None, lowercase=True, strip_accents=None)
        inner = _column_finder(lowercasing)
        return lambda text: inner(part(text))
    plain = vectorizer.preprocessor is None and not vectorizer.strip_accents
    if vectorizer.analyzer == "char_wb" and plain:
        return _char_wb_columns(vectorizer)
    if (
        vectorizer.analyzer == "word"
        and plain
        and vectorizer.tokenizer is None
        and vectorizer.token_pattern in TOKEN_PATTERNS
        and vectorizer.stop_words is None
        and vectorizer.ngram_range in ((1, 1), (1, 2))
    ):
        return _word_columns(vectorizer)
    get, analyzer = vectorizer.vocabulary_.get, vectorizer.build_analyzer()
    return lambda text: [c for gram in analyzer(text) if (c := get(gram)) is not None]


@dataclass(frozen=True)
class _Ngrams:
    """Every n-gram block of a head in one table, so that a text's n-gram logits take a few numpy calls in all."""

    finders: list[Columns]  # per block: text -> the block's own columns
    offsets: tuple[int, ...]  # per block: its first row in ``table``
    table: np.ndarray  # (every block's vocabulary, n_classes + 1): IDF × coefficient rows, then the IDF
    sublinear: bool
    starts: np.ndarray = field(init=False)  # ``offsets`` as an array, for finding each column's block

    def __post_init__(self) -> None:
        object.__setattr__(self, "starts", np.asarray(self.offsets, dtype=np.intp))

    def logits(self, text: str) -> np.ndarray | None:
        found: list[int] = []
        for finder, offset in zip(self.finders, self.offsets, strict=True):
            found += [c + offset for c in finder(text)] if offset else finder(text)
        counts = Counter(found)
        if not counts:
            return None
        columns = np.fromiter(counts, dtype=np.intp, count=len(counts))
        rows = self.table[columns]
        tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        if self.sublinear:
            tf = 1.0 + np.log(tf)
        block = np.searchsorted(self.starts, columns, side="right") - 1
        value = tf * rows[:, -1]  # the TF-IDF values, before each block's L2 normalisation
        norms = np.sqrt(np.bincount(block, weights=value * value, minlength=len(self.starts)))
        return (tf / norms[block].astype(np.float32)) @ rows[:, :-1]


def _ngram_blocks(head: Any, weights: np.ndarray) -> _Ngrams | None:
    if not head.tfidf:
        return _Ngrams([], (), np.zeros((0, weights.shape[1] + 1), np.float32), False)
    finders, offsets, tables, sublinear, offset = [], [], [], set(), 0
    for _, vectorizer in head.vectorizer_.transformer_list:
        supported = vectorizer.norm == "l2" and vectorizer.use_idf and not vectorizer.binary
        if not supported or vectorizer.vocabulary is not None:
            return None
        size, idf = len(vectorizer.vocabulary_), np.asarray(vectorizer.idf_, dtype=np.float64)
        finders.append(_column_finder(vectorizer))
        offsets.append(offset)
        tables.append(np.column_stack([weights[offset : offset + size] * idf[:, None], idf]).astype(np.float32))
        sublinear.add(bool(vectorizer.sublinear_tf))
        offset += size
    if offset != weights.shape[0] or len(sublinear) != 1:
        return None
    return _Ngrams(finders, tuple(offsets), np.vstack(tables), sublinear.pop())


class LinearHead:
    """Probabilities of a fitted multiclass :class:`~router_ml.model.EmbeddingClassifier`, computed directly.

    Build it with :meth:`compile`, which returns ``None`` for heads it does not cover.
    """

    def __init__(self, embedding_weights: np.ndarray, intercept: np.ndarray, ngrams: _Ngrams) -> None:
        self.embedding_weights = embedding_weights
        self.intercept = intercept
        self.ngrams = ngrams

    @classmethod
    def compile(cls, head: Any) -> LinearHead | None:
        """A :class:`LinearHead` with the same probabilities as ``head``, or ``None`` if it is not supported."""
        estimator, beta, classes = head.estimator_, 1.0, list(head.estimator_.classes_)
        if isinstance(estimator, CalibratedClassifierCV):
            if estimator.method != "temperature" or len(estimator.calibrated_classifiers_) != 1:
                return None
            calibrated = estimator.calibrated_classifiers_[0]
            estimator, beta = calibrated.estimator, float(calibrated.calibrators[0].beta_)
            # the inner regression sees label indices (scikit-learn's cross-validated calibration) or the labels
            # themselves (calibrated on out-of-fold decisions); either way, kept only in the head's order
            inner = estimator.classes_.tolist()
            classes = [calibrated.classes[i] for i in inner] if all(type(i) is int for i in inner) else inner
        if not isinstance(estimator, LogisticRegression) or len(classes) < 3:
            return None
        if [str(c) for c in classes] != [str(c) for c in head.classes_]:
            return None
        # the temperature scales every logit, so it is folded into the coefficients and intercept
        coef = beta * np.asarray(estimator.coef_, dtype=np.float64)
        dim = head.n_features_in_
        ngrams = _ngram_blocks(head, coef[:, dim:].T)
        if ngrams is None:
            return None
        weights = np.ascontiguousarray(coef[:, :dim].T)
        return cls(weights, beta * np.asarray(estimator.intercept_, dtype=np.float64), ngrams)

    def text_logits(self, texts: Sequence[str]) -> np.ndarray:
        """The n-gram half of the logits, shape ``(n, n_classes)``: it needs only the texts, so the router
        computes it before the embedding. Between two routes ONNX Runtime's run flushes the CPU caches either way
        (the step costs about 0.33 ms on a short prompt then, 0.10 ms warm, on a slow 2-core machine)."""
        logits = np.zeros((len(texts), len(self.intercept)), dtype=np.float64)
        if self.ngrams.finders:
            for row, text in enumerate(texts):
                extra = self.ngrams.logits(text)
                if extra is not None:
                    logits[row] += extra
        return logits

    def predict_proba(self, X: np.ndarray, texts: Sequence[str], text_logits: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities for embeddings ``X`` of ``texts``, shape ``(n, n_classes)``; pass
        ``text_logits`` if already computed by :meth:`text_logits`."""
        logits = np.asarray(X, dtype=np.float64) @ self.embedding_weights
        logits += self.intercept
        logits += self.text_logits(texts) if text_logits is None else text_logits
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits
