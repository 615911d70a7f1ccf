"""The router model in the scikit-learn estimator style: embeddings (+ TF-IDF) → calibrated logistic regression.

:class:`EmbeddingClassifier` is the head: it works on an embedding matrix (plus, optionally, the texts for its
TF-IDF n-gram features), so cross-validation embeds once. :class:`RouterModel` pairs an
:class:`~router_ml.embed.Embedder` with that head and works on texts. No I/O here.

Why TF-IDF too: sentence embeddings capture what a prompt is about, while the task is often carried by a few
words ("summarize", "translate", "write a function", "def", "{"). Under 5-fold cross-validation on real prompts
the concatenation beat both embeddings alone and TF-IDF alone (see docs/performance.md). The n-grams are read
twice: over the whole prompt and over its instruction part (:mod:`router_ml.instruction`), so that a short ask
after long pasted material still counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, make_union
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from .calibration import calibrated_from_decisions
from .embed import Embedder
from .exceptions import DataError, NotFittedError
from .instruction import instruction_view
from .tokens import TOKEN_PATTERN

__all__ = [
    "SOLVER",
    "EmbeddingClassifier",
    "RouterModel",
    "fitted_vectorizer",
    "head_features",
    "logistic_regression",
    "tfidf_features",
]

CALIBRATIONS = ("temperature", "sigmoid", "isotonic", "none")
SOLVER = "newton-cg"
"""The head's solver. On the bundled training split (15,760 prompts, 554k columns; 2026-12-07), both at
scikit-learn's default tolerance, Newton-CG stops after 7 iterations and 8 s, L-BFGS after 46 and 17 s, and
Newton-CG's solution is the closer to the optimum (a Newton-CG fit at tolerance 1e-6): coefficients 10 % off it
against 17 %, 18 of 3,470 held-out labels different against 28 (held-out macro-F1 0.9389 against 0.9381; at the
optimum 0.9406, for twice the time). Newton-CG also fits in float32, the features' dtype, where L-BFGS copies them
to float64."""


def logistic_regression(C: float, class_weight: str | dict[str, float] | None, max_iter: int) -> LogisticRegression:
    """The head's (unfitted) logistic regression."""
    return LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter, solver=SOLVER)


def tfidf_features(instruction: bool = True) -> FeatureUnion:
    """Word 1-2 grams (words as :data:`~router_ml.tokens.TOKEN_PATTERN` splits them: single characters in Chinese,
    Japanese and Thai) and character 3-5 grams (within word boundaries), each seen in at least two training prompts,
    sub-linear TF, L2-normalised; with ``instruction``, the same two blocks again over each prompt's instruction
    part (:mod:`router_ml.instruction`), so that a short instruction is not outweighed by long pasted material.

    ``min_df=2`` on the word n-grams drops the n-grams of a single prompt (three quarters of the word vocabulary,
    mostly bigrams), which the regression could only memorise: on the bundled held-out split and on real prompts
    it scored 0.004 and 0.009 macro-F1 higher than keeping them, with a 4× smaller vocabulary to look up per route.
    """
    views = [None, instruction_view] if instruction else [None]
    return make_union(
        *(
            vectorizer
            for view in views
            for vectorizer in (
                TfidfVectorizer(
                    ngram_range=(1, 2),
                    min_df=2,
                    sublinear_tf=True,
                    dtype=np.float32,
                    preprocessor=view,
                    token_pattern=TOKEN_PATTERN,
                ),
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(3, 5),
                    min_df=2,
                    sublinear_tf=True,
                    dtype=np.float32,
                    preprocessor=view,
                ),
            )
        )
    )


def head_features(X: np.ndarray, ngrams: Any) -> sp.csr_matrix:
    """The head's input: the embeddings, then the TF-IDF n-gram columns, as one sparse matrix."""
    return sp.hstack([sp.csr_matrix(X), ngrams], format="csr")


def fitted_vectorizer(
    vectorizer: TfidfVectorizer, terms: Sequence[str], transformer: TfidfTransformer
) -> TfidfVectorizer:
    """Make an unfitted ``vectorizer`` the fitted one whose vocabulary is ``terms`` (in column order) and whose
    IDF weighting is the fitted ``transformer``: what ``fit`` sets, for vectorizers fitted from shared counts
    (:mod:`router_ml.selection`) or rebuilt from an artifact (:mod:`router_ml.artifact.head_rebuild`)."""
    vectorizer.vocabulary_ = {term: column for column, term in enumerate(terms)}
    vectorizer.fixed_vocabulary_ = False
    transformer.n_features_in_ = len(transformer.idf_)
    vectorizer._tfidf = transformer  # where TfidfVectorizer keeps its fitted transformer
    return vectorizer


class EmbeddingClassifier(ClassifierMixin, BaseEstimator):
    """Logistic regression on sentence embeddings (optionally plus TF-IDF n-grams), with calibrated probabilities.

    Args:
        C (float): inverse L2 regularisation strength of the logistic regression. Default 8.0.
        class_weight (str | dict | None): ``"balanced"`` (default) or as in :class:`LogisticRegression`.
        tfidf (bool): add TF-IDF word and character n-gram features of the texts; ``fit`` and ``predict_proba``
            then need ``texts``. Default True.
        instruction (bool): with ``tfidf``, also n-grams of each prompt's instruction part (see
            :func:`tfidf_features`). Default True.
        calibration (str): ``"temperature"`` (default; keeps the arg-max, fixes over/under-confidence),
            ``"sigmoid"``, ``"isotonic"`` or ``"none"``. Calibration is fitted on out-of-fold predictions.
        calibration_cv (int): folds for the calibration. Default 5.
        max_iter (int): solver iterations. Default 5000.

    Example:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]] * 3)
        >>> clf = EmbeddingClassifier(tfidf=False, calibration="none").fit(X, ["a", "a", "b", "b"] * 3)
        >>> clf.predict(np.array([[0.95, 0.05]])).tolist()
        ['a']
    """

    def __init__(
        self,
        C: float = 8.0,
        class_weight: str | dict[str, float] | None = "balanced",
        tfidf: bool = True,
        instruction: bool = True,
        calibration: str = "temperature",
        calibration_cv: int = 5,
        max_iter: int = 5000,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.tfidf = tfidf
        self.instruction = instruction
        self.calibration = calibration
        self.calibration_cv = calibration_cv
        self.max_iter = max_iter

    def _features(self, X: np.ndarray, texts: Sequence[str] | None, fit: bool) -> np.ndarray | sp.csr_matrix:
        if not self.tfidf:
            return X
        if texts is None or len(texts) != X.shape[0]:
            raise DataError(
                f"this head uses TF-IDF features: pass texts= with one text per embedding row "
                f"({X.shape[0]} rows, got {None if texts is None else len(texts)} texts)"
            )
        ngrams = self.vectorizer_.fit_transform(texts) if fit else self.vectorizer_.transform(texts)
        return head_features(X, ngrams)

    def fit(
        self,
        X: np.ndarray,
        y: Sequence[str],
        texts: Sequence[str] | None = None,
        *,
        oof_decisions: Any = None,
        ngrams: tuple[FeatureUnion, Any] | None = None,
        regression: LogisticRegression | None = None,
    ) -> EmbeddingClassifier:
        """Fit on an ``(n, dim)`` embedding matrix, ``n`` labels and (with ``tfidf``) the ``n`` texts.

        Model selection (:mod:`router_ml.selection`) can pass what it already computed:

        - ``oof_decisions``: out-of-fold decision values of this head's (uncalibrated) regression on the same rows;
          the calibration is then fitted on them instead of on ``calibration_cv`` further folds;
        - ``ngrams``: :func:`tfidf_features` already fitted on these ``texts``, and its features of them;
        - ``regression``: this head's logistic regression already fitted on those features and labels (fitted
          alongside the folds when there is nothing to choose); it is checked, not refitted.
        """
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        X, y = validate_data(self, X, y, dtype=np.float32)
        self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            raise DataError(f"need at least two labels to train a router, found only {list(self.classes_)}")
        if self.tfidf and ngrams is not None:
            self.vectorizer_, matrix = ngrams
            expected = len(tfidf_features(self.instruction).transformer_list)
            if len(self.vectorizer_.transformer_list) != expected:
                raise ValueError(
                    f"ngrams holds {len(self.vectorizer_.transformer_list)} vectorizers, this head (instruction="
                    f"{self.instruction}) needs {expected}: pass tfidf_features({self.instruction}) fitted on the texts"
                )
            features = head_features(X, matrix)
        else:
            if self.tfidf:
                self.vectorizer_ = tfidf_features(self.instruction)
            features = self._features(X, texts, fit=True)
        lr = logistic_regression(self.C, self.class_weight, self.max_iter)
        if regression is not None:
            self._check_regression(regression, features.shape[1])
            if oof_decisions is None and self.calibration != "none":
                raise ValueError("regression= needs oof_decisions= too: the calibration is fitted on them")
            lr = regression
        elif self.calibration == "none" or oof_decisions is not None:
            lr.fit(features, y)
        if self.calibration == "none":
            self.estimator_ = lr
        elif oof_decisions is not None:
            self.estimator_ = calibrated_from_decisions(
                lr, np.asarray(oof_decisions), y, self.calibration, self.calibration_cv
            )
        else:
            smallest = int(np.min(np.unique(y, return_counts=True)[1]))
            folds = max(2, min(self.calibration_cv, smallest))
            self.estimator_ = CalibratedClassifierCV(lr, method=self.calibration, cv=folds, ensemble=False)
            self.estimator_.fit(features, y)
        return self

    def _check_regression(self, regression: LogisticRegression, n_features: int) -> None:
        """A pre-fitted regression must be this head's: its parameters, these classes, these features."""
        params = {"C": self.C, "class_weight": self.class_weight, "max_iter": self.max_iter}
        found = {k: getattr(regression, k, None) for k in params}
        classes = getattr(regression, "classes_", None)
        if (
            not isinstance(regression, LogisticRegression)
            or found != params
            or classes is None
            or list(classes) != list(self.classes_)
            or getattr(regression, "n_features_in_", None) != n_features
        ):
            raise ValueError(
                f"regression= must be a LogisticRegression with {params} fitted on this head's {n_features} "
                f"features and classes {list(self.classes_)}; got {regression!r} with "
                f"{getattr(regression, 'n_features_in_', 'no')} features"
            )

    def predict_proba(self, X: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)``, columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        return self.estimator_.predict_proba(self._features(X, texts, fit=False))

    def predict(self, X: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """The most probable label for each row."""
        return self.classes_[np.argmax(self.predict_proba(X, texts), axis=1)]


class RouterModel(ClassifierMixin, BaseEstimator):
    """Texts → embeddings → :class:`EmbeddingClassifier`.

    Args:
        embedder (Embedder | None): turns texts into vectors (required before ``fit``).
        head (EmbeddingClassifier | None): the classifier head; a default one when ``None``.

    Accepts one string (returns one result) or a sequence of strings.
    """

    def __init__(self, embedder: Embedder | None = None, head: EmbeddingClassifier | None = None) -> None:
        self.embedder = embedder
        self.head = head

    def _embed(self, texts: str | Sequence[str]) -> np.ndarray:
        if self.embedder is None:
            raise NotFittedError("RouterModel has no embedder; pass embedder=SentenceTransformerEmbedder()")
        return np.atleast_2d(self.embedder.encode(texts))

    def fit(
        self, texts: Sequence[str], y: Sequence[str], *, embeddings: np.ndarray | None = None, **head_fit: Any
    ) -> RouterModel:
        """Fit the head on the texts' embeddings (pass precomputed ``embeddings`` to skip embedding; ``head_fit``
        goes to :meth:`EmbeddingClassifier.fit`)."""
        X = self._embed(texts) if embeddings is None else embeddings
        self.head_ = clone(self.head) if self.head is not None else EmbeddingClassifier()
        self.head_.fit(X, list(y), texts=list(texts), **head_fit)
        self.classes_ = self.head_.classes_
        return self

    def _check_fitted(self) -> None:
        try:
            check_is_fitted(self, "head_")
        except SklearnNotFittedError:
            raise NotFittedError(
                "this RouterModel is not fitted yet; call fit(texts, labels) or load an artifact"
            ) from None

    def predict_proba_embeddings(self, X: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Probabilities for precomputed embeddings of ``texts``, shape ``(n, n_classes)``."""
        self._check_fitted()
        return self.head_.predict_proba(np.atleast_2d(X), texts=list(texts))

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        """Class probabilities: ``(n_classes,)`` for one string, else ``(n, n_classes)``."""
        self._check_fitted()
        batch = [texts] if isinstance(texts, str) else list(texts)
        proba = self.head_.predict_proba(self._embed(batch), texts=batch)
        return proba[0] if isinstance(texts, str) else proba

    def predict(self, texts: str | Sequence[str]) -> Any:
        """The most probable label (a string for one text, an array for a sequence)."""
        proba = self.predict_proba(texts)
        return self.classes_[np.argmax(proba, axis=-1)]
