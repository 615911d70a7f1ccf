"""The data-only encoding of a fitted :class:`~router_ml.model.EmbeddingClassifier`: JSON plus safetensors.

``head.json`` holds the structure: the head's parameters, labels, embedding dimension, each TF-IDF vectorizer's
parameters and vocabulary (terms in column order), and the calibration method. ``head.safetensors`` holds the
arrays, in the dtypes the fit produced:

===============================  ==============================================================================
``vectorizers.<i>.idf``          IDF weights of vectorizer ``i``, one per vocabulary term
``logistic.coef``                logistic-regression coefficients, ``(rows, dim + Σ vocabulary sizes)``; ``rows``
                                 is 1 for two labels, else one per label
``logistic.intercept``           ``(rows,)``
``calibration.beta``             temperature scaling: the inverse temperature, ``(1,)``
``calibration.a``, ``.b``        sigmoid (Platt) calibration: slope and offset per row, ``(rows,)``
``calibration.<r>.x``, ``.y``    isotonic calibration of row ``r``: its thresholds; ``calibration.<r>.bounds``
                                 is ``(2,)``, the lowest and highest value seen in fit
===============================  ==============================================================================

Decoding checks everything before building anything: strict JSON of known keys and types, parameters within
sane bounds, exactly the expected tensors with float dtypes, shapes that agree with the labels, dimension and
vocabularies, and finite values. The fitted scikit-learn objects are then rebuilt from that data alone, so the
head predicts exactly as the one that was encoded. No pickle, no code: a hostile file can only be refused.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression

from ..exceptions import ArtifactError
from ..instruction import view_name
from ..model import EmbeddingClassifier
from .head_rebuild import calibrated, logistic, vectorizer_union
from .head_schema import FORMAT, FORMAT_VERSION, TensorSpec, check_structure, check_tensors, header_size

__all__ = ["FORMAT", "FORMAT_VERSION", "decode_head", "encode_head"]


def _vectorizers(head: EmbeddingClassifier, tensors: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    entries = []
    for i, (name, vectorizer) in enumerate(head.vectorizer_.transformer_list):
        params = dict(vectorizer.get_params())
        params["dtype"] = np.dtype(params["dtype"]).name
        params["ngram_range"] = list(params["ngram_range"])
        try:
            params["preprocessor"] = view_name(params["preprocessor"])
        except ValueError as exc:
            raise ArtifactError(f"vectorizer {name!r}: {exc}; a head with code in it cannot be saved as data") from None
        terms: list[str] = [""] * len(vectorizer.vocabulary_)
        for term, column in vectorizer.vocabulary_.items():
            terms[column] = term
        tensors[f"vectorizers.{i}.idf"] = np.asarray(vectorizer.idf_)
        entries.append({"name": name, "params": params, "vocabulary": terms})
    return entries


def _calibration(estimator: Any, tensors: dict[str, np.ndarray]) -> tuple[Any, dict[str, Any] | None]:
    """The fitted logistic regression and the calibration's JSON part (its arrays go into ``tensors``)."""
    if isinstance(estimator, LogisticRegression):
        return estimator, None
    if not isinstance(estimator, CalibratedClassifierCV) or len(estimator.calibrated_classifiers_) != 1:
        raise ArtifactError(
            f"cannot save a head whose estimator is {type(estimator).__name__} with several calibrated folds; "
            "EmbeddingClassifier fits one (ensemble=False): refit it with this router-ml"
        )
    fitted = estimator.calibrated_classifiers_[0]
    calibrators, method = fitted.calibrators, fitted.method
    if method == "temperature":
        tensors["calibration.beta"] = np.asarray(calibrators[0].beta_).reshape(1)
    elif method == "sigmoid":
        tensors["calibration.a"] = np.asarray([c.a_ for c in calibrators])
        tensors["calibration.b"] = np.asarray([c.b_ for c in calibrators])
    else:  # isotonic
        for r, c in enumerate(calibrators):
            tensors[f"calibration.{r}.x"] = np.asarray(c.X_thresholds_)
            tensors[f"calibration.{r}.y"] = np.asarray(c.y_thresholds_)
            tensors[f"calibration.{r}.bounds"] = np.asarray([c.X_min_, c.X_max_], dtype=np.asarray(c.X_min_).dtype)
    increasing = [bool(c.increasing_) for c in calibrators] if method == "isotonic" else None
    return fitted.estimator, {"method": method, "cv": estimator.cv, "increasing": increasing}


def encode_head(head: EmbeddingClassifier) -> tuple[bytes, bytes]:
    """Encode a fitted head as (``head.json`` bytes, ``head.safetensors`` bytes), checked by decoding them.

    Returns:
        tuple[bytes, bytes]: the structure (UTF-8 JSON) and the arrays (safetensors).

    Raises:
        ArtifactError: a head the format cannot hold (non-string labels, a custom tokenizer, ...), with why.
    """
    from safetensors.numpy import save as save_tensors

    if not all(isinstance(c, str) for c in head.classes_.tolist()):
        raise ArtifactError(f"labels must be strings to be saved, found {head.classes_.dtype}: use string labels")
    tensors: dict[str, np.ndarray] = {}
    lr, calibration = _calibration(head.estimator_, tensors)
    indices = list(range(len(head.classes_)))
    inner = "indices" if lr.classes_.tolist() == indices and calibration else "labels"
    structure = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": type(head).__name__,
        "params": head.get_params(),
        "classes": head.classes_.tolist(),
        "n_features_in": int(head.n_features_in_),
        "vectorizers": _vectorizers(head, tensors) if head.tfidf else [],
        "logistic": {"classes": inner, "n_iter": np.asarray(lr.n_iter_).tolist()},
        "calibration": calibration,
    }
    tensors["logistic.coef"] = np.asarray(lr.coef_)
    tensors["logistic.intercept"] = np.asarray(lr.intercept_)
    try:
        text = json.dumps(structure, ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"this head's parameters cannot be saved as JSON ({exc}); use plain values") from None
    encoded = text.encode("utf-8"), save_tensors({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())})
    decode_head(*encoded)  # whatever is saved must load: refuse now rather than at load time
    return encoded


def _parse(structure: bytes) -> dict[str, Any]:
    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        value = json.loads(structure.decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"head.json is not valid JSON ({str(exc)[:200]}); the artifact is corrupt") from None
    return check_structure(value)


def _load_tensors(data: bytes, expected: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    from safetensors.numpy import load as load_tensors

    header_size(data)
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # safetensors raises SafetensorError and others on malformed input
        raise ArtifactError(f"head.safetensors cannot be read ({str(exc)[:200]}); the artifact is corrupt") from None
    return check_tensors(tensors, expected)


def decode_head(structure: bytes, tensors: bytes) -> EmbeddingClassifier:
    """Rebuild a fitted head from ``head.json`` and ``head.safetensors`` bytes, checking them first.

    Returns:
        EmbeddingClassifier: fitted, predicting as the head that was encoded; ``clone`` and ``fit`` work as usual.

    Raises:
        ArtifactError: malformed or inconsistent input, with what was expected and what was found.
    """
    spec = _parse(structure)
    arrays = _load_tensors(tensors, spec["tensors"])
    params = spec["params"]
    head = EmbeddingClassifier(**params)
    head.n_features_in_ = spec["n_features_in"]
    head.classes_ = np.asarray(spec["classes"])
    if params["tfidf"]:
        head.vectorizer_ = vectorizer_union(spec["vectorizers"], arrays)
    lr = logistic(spec, arrays)
    head.estimator_ = lr if spec["calibration"] is None else calibrated(spec, lr, arrays)
    return head
