"""The parts of an explanation (see :meth:`router_ml.router.Router.explain`): the training prompts nearest to a prompt,
and each route's score split into what its words, its embedding and the route's bias add.

**Nearest.** Cosine similarity between the prompt's embedding and the training prompts kept in the artifact
(:mod:`router_ml.artifact.neighbours`: a stratified sample, at most a bounded number per label). An artifact saved
without them explains with no neighbours and a note saying so.

**Terms.** The head is a logistic regression over ``[embedding | word 1-2-gram TF-IDF | char_wb 3-5-gram TF-IDF]``,
so a route's score (the logit its probability comes from: with temperature calibration, the temperature is folded
in, so the scores' softmax is the probabilities) is a sum: ``intercept + embedding · w + Σ tf-idf(n-gram) · w(n-gram)``,
the tf-idf values as the vectorizer gives them (L2-normalised per block). A term's contribution to a route is its
tf-idf value times its coefficient for that route. Word uni- and bigrams are reported as they are. Character
n-grams are hard to read, so each is credited to the word it came from (split between the words that hold it, by
count), and added to that word's unigram when the word is one token: ``chars`` says how much of a term's
contribution came from its spelling. The embedding's part is reported as one number per route, so the share the
words explain is visible. With sigmoid or isotonic calibration, or two routes, the scores are those of the
regression (a note says so).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression

from .artifact import Artifact
from .artifact.neighbours import Neighbours
from .exceptions import ArtifactError, DataError
from .instruction import raw_part

__all__ = [
    "DEFAULT_K",
    "DEFAULT_TOP_TERMS",
    "MAX_K",
    "Neighbour",
    "RouteScore",
    "Term",
    "check_counts",
    "explain_text",
    "nearest",
    "route_scores",
]

DEFAULT_K = 5
DEFAULT_TOP_TERMS = 5
MAX_K = 100
NO_NEIGHBOURS = (
    "this artifact holds no training neighbours (saved before router-ml kept them, or without training data): "
    "retrain it to see the nearest training prompts"
)


@dataclass(frozen=True)
class Neighbour:
    """A training prompt near the explained one: its text (cut at 2,000 characters), label and cosine similarity."""

    text: str
    label: str
    similarity: float


@dataclass(frozen=True)
class Term:
    """A word or word bigram and what it added to a route's score (``chars``: the part from its character n-grams)."""

    term: str
    contribution: float
    chars: float


@dataclass(frozen=True)
class RouteScore:
    """A route's score, ``intercept + embedding + ngrams``, and the terms that added most to it (positive only,
    largest first)."""

    score: float
    intercept: float
    embedding: float
    ngrams: float
    terms: tuple[Term, ...]


def check_counts(k: Any, top_terms: Any) -> None:
    """Refuse a ``k`` or ``top_terms`` that is not an integer from 0 to :data:`MAX_K`.

    Raises:
        DataError: naming the bad value.
    """
    for name, value in (("k", k), ("top_terms", top_terms)):
        if type(value) is not int or not 0 <= value <= MAX_K:
            raise DataError(f"{name} must be an integer from 0 to {MAX_K}, got {value!r:.40}")


def nearest(neighbours: Neighbours, vector: np.ndarray, k: int) -> tuple[Neighbour, ...]:
    """The ``k`` stored training prompts most similar to the unit ``vector``, most similar first."""
    similarity = neighbours.vectors @ (vector / max(float(np.linalg.norm(vector)), 1e-12))
    top = np.argsort(-similarity, kind="stable")[:k]
    return tuple(Neighbour(neighbours.texts[i], neighbours.labels[i], float(similarity[i])) for i in top)


def _linear(head: Any) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The head's coefficients ``(n_classes, n_features)`` and intercepts in ``classes_`` order, scaled to the
    logits the probabilities come from, and a note when the calibration is not a temperature."""
    estimator, scale, note, method = head.estimator_, 1.0, None, "none"
    names = list(getattr(estimator, "classes_", []))
    if isinstance(estimator, CalibratedClassifierCV):
        fitted = estimator.calibrated_classifiers_[0]
        estimator, method = fitted.estimator, fitted.method
        inner = estimator.classes_.tolist()
        names = [fitted.classes[i] for i in inner] if all(type(i) is int for i in inner) else inner
        if method == "temperature":
            scale = float(fitted.calibrators[0].beta_)
        else:
            note = f"route scores are the logistic regression's, before its {method} calibration"
    if not isinstance(estimator, LogisticRegression):
        raise ArtifactError(f"cannot split the scores of a {type(estimator).__name__} head; retrain the router")
    coef, intercept = scale * np.asarray(estimator.coef_, float), scale * np.asarray(estimator.intercept_, float)
    if coef.shape[0] == 1:  # two labels: one score x; temperature scaling reads it as (-x, x), softmax as ±x/2
        half = 1.0 if method == "temperature" else 0.5
        coef, intercept = np.vstack([-half * coef, half * coef]), np.concatenate([-half * intercept, half * intercept])
    order = [[str(n) for n in names].index(str(c)) for c in head.classes_]
    return coef[order], intercept[order], note


def _word_key(head: Any) -> Callable[[str], str]:
    """Which term a whitespace-separated word's character n-grams are credited to: its word token when it is one,
    else the (lower-cased) word itself."""
    words = [v for _, v in head.vectorizer_.transformer_list if v.analyzer == "word"]
    if not words:
        return str.lower
    preprocess, tokenize = words[0].build_preprocessor(), words[0].build_tokenizer()

    def key(word: str) -> str:
        tokens = tokenize(preprocess(word))
        return tokens[0] if len(tokens) == 1 else preprocess(word)

    return key


def _terms(head: Any, weights: np.ndarray, text: str) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
    """Each term's contribution to every route and its character part; and the n-grams' total per route."""
    terms: dict[str, list[np.ndarray]] = {}
    total, offset, key = np.zeros(weights.shape[0]), 0, _word_key(head)

    def add(term: str, contribution: np.ndarray, chars: bool) -> None:
        entry = terms.setdefault(term, [np.zeros_like(total), np.zeros_like(total)])
        entry[0] += contribution
        if chars:
            entry[1] += contribution

    for _, vectorizer in head.vectorizer_.transformer_list:
        size, get, analyzer = len(vectorizer.vocabulary_), vectorizer.vocabulary_.get, vectorizer.build_analyzer()
        row = vectorizer.transform([text])
        block = {c: v * weights[:, offset + c] for c, v in zip(row.indices.tolist(), row.data.tolist(), strict=True)}
        offset += size
        total += sum(block.values(), np.zeros_like(total))
        if vectorizer.analyzer != "char_wb":
            for gram in dict.fromkeys(analyzer(text)):
                if (column := get(gram)) in block:
                    add(gram, block[column], chars=False)
            continue
        seen = Counter(c for gram in analyzer(text) if (c := get(gram)) in block)
        part = raw_part(vectorizer.preprocessor)
        for word in (part(text) if part else text).split():
            counts = Counter(c for gram in analyzer(word) if (c := get(gram)) in block)
            if counts:
                add(key(word), sum((block[c] * (n / seen[c]) for c, n in counts.items()), np.zeros_like(total)), True)
    return terms, total


def route_scores(head: Any, vector: np.ndarray, text: str, top_terms: int) -> tuple[dict[str, RouteScore], list[str]]:
    """Each route's score split into intercept, embedding and n-grams, with its ``top_terms`` largest positive
    terms; and notes on what the split is."""
    coef, intercept, note = _linear(head)
    dim = int(head.n_features_in_)
    embedding = coef[:, :dim] @ np.asarray(vector, dtype=float)
    notes = [note] if note else []
    if head.tfidf:
        terms, ngrams = _terms(head, coef[:, dim:], text)
    else:
        terms, ngrams = {}, np.zeros(len(intercept))
        notes.append("this router has no n-gram features: its embedding and intercept make the whole score")
    scores = {}
    for r, label in enumerate(head.classes_.tolist()):
        ranked = sorted(((t, float(v[0][r]), float(v[1][r])) for t, v in terms.items()), key=lambda x: -x[1])
        best = tuple(Term(t, c, chars) for t, c, chars in ranked[:top_terms] if c > 0)
        score = float(intercept[r] + embedding[r] + ngrams[r])
        scores[str(label)] = RouteScore(score, float(intercept[r]), float(embedding[r]), float(ngrams[r]), best)
    return scores, notes


def explain_text(
    artifact: Artifact, text: str, *, k: int = DEFAULT_K, top_terms: int = DEFAULT_TOP_TERMS
) -> tuple[tuple[Neighbour, ...], dict[str, RouteScore], list[str]]:
    """The nearest training prompts to ``text`` and each route's score split (see the module's docstring).

    Args:
        artifact (Artifact): the loaded artifact (its embedder, head and stored neighbours).
        text (str): the routing text (a conversation's last user turn).
        k (int): neighbours to return, 0 to 100. Default 5.
        top_terms (int): terms to keep per route, 0 to 100. Default 5.

    Returns:
        tuple: the neighbours (most similar first), route → :class:`RouteScore` (in the head's label order), and
        notes on what the explanation leaves out.

    Raises:
        DataError: a bad ``k`` or ``top_terms``.
        ArtifactError: the artifact's neighbour files changed since it was loaded, or are malformed.
    """
    check_counts(k, top_terms)
    model = artifact.model
    assert model.embedder is not None
    vector = np.asarray(model.embedder.encode(text), dtype=np.float32)
    scores, notes = route_scores(model.head_, vector, text, top_terms)
    stored = artifact.neighbours if k else None
    if k and stored is None:
        notes.append(NO_NEIGHBOURS)
    return (nearest(stored, vector, k) if stored is not None else ()), scores, notes
