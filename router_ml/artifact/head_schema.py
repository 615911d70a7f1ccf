"""What a data-only head may contain (see :mod:`router_ml.artifact.head_format`): checked before anything is built.

Every check names what was expected and what was found. Sizes are bounded before any array is read: the number
of labels, the embedding dimension, each vocabulary and the coefficient count, so a file that declares absurd
sizes is refused instead of allocated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import ArtifactError
from ..instruction import VIEWS
from ..model import CALIBRATIONS, EmbeddingClassifier
from ..tokens import TOKEN_PATTERNS

__all__ = ["FORMAT", "FORMAT_VERSION", "TensorSpec", "check_structure", "check_tensors", "header_size"]

FORMAT = "router-ml/head"
FORMAT_VERSION = 1
MAX_CLASSES = 1000
MAX_DIM = 1 << 16
MAX_VECTORIZERS = 8
MAX_VOCABULARY = 10_000_000
MAX_COEFFICIENTS = 1 << 27
MAX_THRESHOLDS = 10_000_000
MAX_HEADER_BYTES = 16 << 20
FLOATS = ("float32", "float64")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEYS = {"format", "format_version", "estimator", "params", "classes", "n_features_in", "vectorizers"}
_KEYS |= {"logistic", "calibration"}


@dataclass(frozen=True)
class TensorSpec:
    """An expected tensor: its shape (``None``: any length up to ``MAX_THRESHOLDS``) and accepted dtypes."""

    shape: tuple[int | None, ...]
    dtypes: tuple[str, ...] = FLOATS


def _fail(what: str) -> ArtifactError:
    return ArtifactError(f"head.json: {what}; the artifact is corrupt or was not written by router-ml: retrain")


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _choice(*options: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: (v is None or isinstance(v, str)) and v in options), f"one of {list(options)}"


_BOOL = (lambda v: type(v) is bool), "true or false"
_DF = (lambda v: _is_int(v, 1, 1 << 40) or (type(v) is float and 0.0 <= v <= 1.0)), "a count ≥ 1 or a fraction"
_TFIDF_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "analyzer": _choice("word", "char", "char_wb"),
    "binary": _BOOL,
    "decode_error": _choice("strict", "ignore", "replace"),
    "dtype": _choice(*FLOATS),
    "encoding": _choice("utf-8"),
    "input": _choice("content"),
    "lowercase": _BOOL,
    "max_df": _DF,
    "min_df": _DF,
    "max_features": ((lambda v: v is None or _is_int(v, 1, MAX_VOCABULARY)), "null or a count"),
    "ngram_range": (
        lambda v: isinstance(v, list) and len(v) == 2 and _is_int(v[0], 1, 10) and _is_int(v[1], v[0], 10),
        "[low, high] with 1 ≤ low ≤ high ≤ 10",
    ),
    "norm": _choice("l1", "l2", None),
    "preprocessor": _choice(None, *VIEWS),
    "smooth_idf": _BOOL,
    "stop_words": _choice(None, "english"),
    "strip_accents": _choice(None, "ascii", "unicode"),
    "sublinear_tf": _BOOL,
    "token_pattern": _choice(*TOKEN_PATTERNS),
    "tokenizer": _choice(None),
    "use_idf": ((lambda v: v is True), "true (the IDF weights are saved)"),
    "vocabulary": _choice(None),
}


def _check_keys(where: str, value: Any, expected: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(f"{where} must be an object, found {type(value).__name__}")
    if set(value) != expected:
        missing, extra = sorted(expected - set(value)), sorted(set(value) - expected)
        raise _fail(f"{where} has unexpected keys {extra} and lacks {missing}")
    return value


def _check_params(params: Any) -> dict[str, Any]:
    if isinstance(params, dict) and "instruction" not in params:
        params = {**params, "instruction": False}  # written before the instruction view existed
    params = _check_keys("params", params, set(EmbeddingClassifier().get_params()))
    weight = params["class_weight"]
    weights_ok = weight in (None, "balanced") or (
        isinstance(weight, dict)
        and len(weight) <= MAX_CLASSES
        and all(_is_number(w) and w > 0 for w in weight.values())
    )
    rules = {
        "C": (_is_number(params["C"]) and params["C"] > 0, "a positive number"),
        "class_weight": (weights_ok, 'null, "balanced" or {label: positive number}'),
        "tfidf": (type(params["tfidf"]) is bool, "true or false"),
        "instruction": (type(params["instruction"]) is bool, "true or false"),
        "calibration": (params["calibration"] in CALIBRATIONS, f"one of {list(CALIBRATIONS)}"),
        "calibration_cv": (_is_int(params["calibration_cv"], 2, 1000), "an integer from 2 to 1000"),
        "max_iter": (_is_int(params["max_iter"], 1, 10**7), "an integer from 1 to 10,000,000"),
    }
    for key, (ok, expected) in rules.items():
        if not ok:
            raise _fail(f"params.{key} is {params[key]!r:.80}, expected {expected}")
    return params


def _check_vectorizer(i: int, entry: Any) -> dict[str, Any]:
    entry = _check_keys(f"vectorizers[{i}]", entry, {"name", "params", "vocabulary"})
    if not isinstance(entry["name"], str) or not _NAME.match(entry["name"]):
        raise _fail(f"vectorizers[{i}].name is {entry['name']!r:.80}, expected 1-64 letters, digits, _ or -")
    params = _check_keys(f"vectorizers[{i}].params", entry["params"], set(_TFIDF_RULES))
    for key, (ok, expected) in _TFIDF_RULES.items():
        if not ok(params[key]):
            raise _fail(f"vectorizers[{i}].params.{key} is {params[key]!r:.80}, expected {expected}")
    terms = entry["vocabulary"]
    if not isinstance(terms, list) or not 1 <= len(terms) <= MAX_VOCABULARY:
        raise _fail(f"vectorizers[{i}].vocabulary must be a list of 1 to {MAX_VOCABULARY:,} terms")
    if not all(isinstance(t, str) for t in terms) or len(set(terms)) != len(terms):
        raise _fail(f"vectorizers[{i}].vocabulary must hold distinct strings (one per column)")
    return entry


def _check_calibration(spec: dict[str, Any], rows: int) -> None:
    method, calibration = spec["params"]["calibration"], spec["calibration"]
    if method == "none":
        if calibration is not None:
            raise _fail(f"params.calibration is 'none' but calibration is {calibration!r:.80}")
        return
    calibration = _check_keys("calibration", calibration, {"method", "cv", "increasing"})
    if calibration["method"] != method or not _is_int(calibration["cv"], 2, 1000):
        raise _fail(f"calibration is {calibration!r:.120}, expected method {method!r} and cv from 2 to 1000")
    increasing = calibration["increasing"]
    wanted = method == "isotonic"
    if wanted != (increasing is not None) or (
        wanted
        and (not isinstance(increasing, list) or len(increasing) != rows or {type(b) for b in increasing} - {bool})
    ):
        raise _fail(f"calibration.increasing is {increasing!r:.80}, expected {rows} booleans for isotonic, else null")


def _tensor_specs(spec: dict[str, Any], rows: int, columns: int) -> dict[str, TensorSpec]:
    specs = {"logistic.coef": TensorSpec((rows, columns)), "logistic.intercept": TensorSpec((rows,))}
    for i, entry in enumerate(spec["vectorizers"]):
        specs[f"vectorizers.{i}.idf"] = TensorSpec((len(entry["vocabulary"]),))
    method = spec["params"]["calibration"]
    if method == "temperature":
        specs["calibration.beta"] = TensorSpec((1,))
    elif method == "sigmoid":
        specs.update({"calibration.a": TensorSpec((rows,)), "calibration.b": TensorSpec((rows,))})
    elif method == "isotonic":
        for r in range(rows):
            specs.update({f"calibration.{r}.{k}": TensorSpec((None,)) for k in ("x", "y")})
            specs[f"calibration.{r}.bounds"] = TensorSpec((2,))
    return specs


def check_structure(value: Any) -> dict[str, Any]:
    """Check parsed ``head.json`` and add ``"tensors"``: the name → :class:`TensorSpec` it implies.

    Raises:
        ArtifactError: an unknown format or version, a missing or unexpected key, a bad value or an absurd size.
    """
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise _fail(f"expected an object with format {FORMAT!r}")
    if value.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"head.json has format_version {value.get('format_version')!r:.40}; this router-ml reads version "
            f"{FORMAT_VERSION}: use the router-ml that wrote it, or retrain"
        )
    spec = dict(_check_keys("head.json", value, _KEYS))
    if spec["estimator"] != "EmbeddingClassifier":
        raise _fail(f"estimator is {spec['estimator']!r:.80}, expected 'EmbeddingClassifier'")
    spec["params"] = _check_params(spec["params"])
    classes = spec["classes"]
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES:
        raise _fail(f"classes must be a list of 2 to {MAX_CLASSES} labels")
    if not all(isinstance(c, str) and c for c in classes) or classes != sorted(set(classes)):
        raise _fail("classes must be distinct non-empty strings in sorted order (scikit-learn's classes_)")
    if not _is_int(spec["n_features_in"], 1, MAX_DIM):
        raise _fail(f"n_features_in is {spec['n_features_in']!r:.40}, expected an embedding dimension 1 to {MAX_DIM}")
    vectorizers = spec["vectorizers"]
    count = (1, MAX_VECTORIZERS) if spec["params"]["tfidf"] else (0, 0)
    if not isinstance(vectorizers, list) or not count[0] <= len(vectorizers) <= count[1]:
        raise _fail(f"vectorizers must be a list of {count[0]} to {count[1]} (tfidf={spec['params']['tfidf']})")
    spec["vectorizers"] = [_check_vectorizer(i, v) for i, v in enumerate(vectorizers)]
    rows = 1 if len(classes) == 2 else len(classes)
    columns = spec["n_features_in"] + sum(len(v["vocabulary"]) for v in spec["vectorizers"])
    if rows * columns > MAX_COEFFICIENTS:
        raise _fail(f"{rows} × {columns:,} coefficients is over the {MAX_COEFFICIENTS:,} accepted")
    logistic = _check_keys("logistic", spec["logistic"], {"classes", "n_iter"})
    if logistic["classes"] not in ("indices", "labels"):
        raise _fail(f"logistic.classes is {logistic['classes']!r:.40}, expected 'indices' or 'labels'")
    n_iter = logistic["n_iter"]
    if not isinstance(n_iter, list) or not 1 <= len(n_iter) <= rows or not all(_is_int(n, 0, 10**9) for n in n_iter):
        raise _fail(f"logistic.n_iter is {n_iter!r:.80}, expected 1 to {rows} iteration counts")
    _check_calibration(spec, rows)
    spec["tensors"] = _tensor_specs(spec, rows, columns)
    return spec


def header_size(data: bytes) -> int:
    """The JSON header length a safetensors file declares, refused when absurd (before the library reads it)."""
    if len(data) < 8:
        raise ArtifactError(f"head.safetensors is {len(data)} bytes, too short for a safetensors file (truncated)")
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, MAX_HEADER_BYTES):
        raise ArtifactError(
            f"head.safetensors declares a {size:,}-byte header, but the file has {len(data) - 8:,} bytes after the "
            f"size field (and at most {MAX_HEADER_BYTES:,} are accepted): truncated or corrupt"
        )
    return size


def check_tensors(tensors: dict[str, np.ndarray], expected: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    """Exactly the expected tensors, each of an accepted dtype and shape, all finite.

    Raises:
        ArtifactError: a missing or unexpected tensor, a wrong dtype or shape, NaN or infinity, bad thresholds.
    """
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise ArtifactError(
            f"head.safetensors lacks {missing} and holds unexpected {extra}; it does not belong to this head.json"
        )
    for name, spec in expected.items():
        array = tensors[name]
        shape_ok = len(array.shape) == len(spec.shape) and all(
            (1 <= n <= MAX_THRESHOLDS) if want is None else n == want
            for n, want in zip(array.shape, spec.shape, strict=True)
        )
        if array.dtype.name not in spec.dtypes or not shape_ok:
            shown = tuple("n" if n is None else n for n in spec.shape)
            raise ArtifactError(
                f"head.safetensors: {name} is {array.dtype.name} {tuple(array.shape)}, expected one of "
                f"{list(spec.dtypes)} with shape {shown} (from head.json's labels, dimension and vocabulary)"
            )
        if not np.isfinite(array).all():
            raise ArtifactError(f"head.safetensors: {name} holds NaN or infinite values; the weights are corrupt")
    for name, array in tensors.items():
        if name.endswith(".x"):
            partner = tensors[name[:-1] + "y"]
            if partner.shape != array.shape or np.any(np.diff(array) < 0):
                raise ArtifactError(f"head.safetensors: {name} must be sorted and as long as {name[:-1]}y")
    if "calibration.beta" in tensors and not tensors["calibration.beta"][0] > 0:
        raise ArtifactError("head.safetensors: calibration.beta must be a positive inverse temperature")
    return tensors
