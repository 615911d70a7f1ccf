"""Training neighbours kept in an artifact, for :meth:`router_ml.router.Router.explain`: a stratified sample of the
training prompts with their embeddings, as data (JSON plus safetensors), never code.

``neighbours.json`` holds the format, the embedder the vectors come from (name, dimension, weight fingerprint:
the artifact's own), how the sample was drawn, and the sampled prompts' ``texts`` and ``labels`` (parallel lists).
``neighbours.safetensors`` holds one tensor, ``embeddings``: float16, ``(rows, dim)``, unit-length rows, in the
order of the texts.

The sample is bounded: at most ``per_label`` distinct prompts of each label (default
:data:`NEIGHBOURS_PER_LABEL`), drawn at random with a fixed seed when a label has more, so a large training set
costs at most ``labels × per_label`` rows (about 0.8 KB of embedding and the prompt's text each; texts over
:data:`MAX_TEXT_CHARS` characters are stored cut, ending in "…"; their vectors are those of the whole text).

Both files are listed in the manifest with their SHA-256 and size, so a changed one is refused at load like the
head; they are decoded, and checked again, only when an explanation first needs them. An artifact saved without
them (before they existed, or without training data) loads and routes as before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..embed import Embedder
from ..exceptions import ArtifactError
from .integrity import NEIGHBOURS_JSON, NEIGHBOURS_TENSORS, read_listed, read_tensors
from .manifest import parse_json

if TYPE_CHECKING:
    from ..data import LabelledPrompts

__all__ = [
    "MAX_TEXT_CHARS",
    "NEIGHBOURS_PER_LABEL",
    "Neighbours",
    "decode_neighbours",
    "encode_neighbours",
    "read_neighbours",
    "sample_rows",
]

FORMAT = "router-ml/neighbours"
FORMAT_VERSION = 1
NEIGHBOURS_PER_LABEL = 500
"""Default bound on the training prompts of each label kept as neighbours."""
MAX_PER_LABEL = 100_000
MAX_TEXT_CHARS = 2000
SEED = 0
EMBEDDING_DTYPES = ("float16", "float32")
_KEYS = {"format", "format_version", "embedder", "per_label", "seed", "max_text_chars", "texts", "labels"}
_MAX_HEADER_BYTES = 1 << 16
_SPOT_CHECK_MIN_COSINE = 0.99


@dataclass(frozen=True)
class Neighbours:
    """The training prompts kept in an artifact: ``texts[i]`` has label ``labels[i]`` and unit vector
    ``vectors[i]`` (float32, shape ``(rows, dim)``)."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]
    vectors: np.ndarray


def sample_rows(texts: Sequence[str], labels: Sequence[str], per_label: int, seed: int = SEED) -> list[int]:
    """Rows of at most ``per_label`` distinct prompts of each label (the first of exact duplicates), drawn at random
    with ``seed`` where a label has more, in data order.

    Example:
        >>> sample_rows(["a", "b", "b", "c"], ["x", "x", "x", "y"], per_label=5)
        [0, 1, 3]
    """
    if type(per_label) is not int or not 1 <= per_label <= MAX_PER_LABEL:
        raise ArtifactError(f"neighbours_per_label must be an integer from 1 to {MAX_PER_LABEL:,}, got {per_label!r}")
    seen: set[tuple[str, str]] = set()
    by_label: dict[str, list[int]] = {}
    for i, pair in enumerate(zip(texts, labels, strict=True)):
        if pair not in seen:
            seen.add(pair)
            by_label.setdefault(pair[1], []).append(i)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in sorted(by_label):
        rows = by_label[label]
        chosen += rows if len(rows) <= per_label else rng.choice(rows, per_label, replace=False).tolist()
    return sorted(chosen)


def _vectors(embedder: Embedder, texts: list[str], rows: list[int], embeddings: np.ndarray | None) -> np.ndarray:
    """The sampled rows' vectors: from the training ``embeddings`` (checked against the embedder on one row), or
    embedded now."""
    if embeddings is None:
        return np.asarray(embedder.encode(texts), dtype=np.float32)
    vectors = np.asarray(embeddings, dtype=np.float32)[rows]
    probe = np.asarray(embedder.encode(texts[0]), dtype=np.float32)
    cosine = float(probe @ vectors[0]) / max(float(np.linalg.norm(vectors[0])), 1e-12)
    if cosine < _SPOT_CHECK_MIN_COSINE:
        raise ArtifactError(
            f"the embeddings passed to save do not come from this model's embedder {embedder.name!r} (cosine "
            f"{cosine:.3f} with its own vector of the same prompt): pass the embeddings the model was trained on "
            "(TrainResult.embeddings), or none to embed the neighbours now"
        )
    return vectors


def encode_neighbours(
    embedder: Embedder,
    classes: Sequence[str],
    data: LabelledPrompts,
    embeddings: np.ndarray | None,
    per_label: int,
) -> tuple[bytes, bytes]:
    """``neighbours.json`` and ``neighbours.safetensors`` bytes for a sample of the training ``data``.

    Args:
        embedder (Embedder): the model's embedder (the one the artifact routes with).
        classes (Sequence[str]): the model's labels.
        data (LabelledPrompts): the training data.
        embeddings (np.ndarray | None): the training embeddings, one row per prompt of ``data`` in its order
            (``TrainResult.embeddings``); ``None`` embeds the sampled prompts now.
        per_label (int): at most this many prompts of each label.

    Raises:
        ArtifactError: a bad ``per_label``, embeddings of another shape or from another embedder, or labels the
            model does not know.
    """
    from safetensors.numpy import save as save_tensors

    unknown = sorted(set(data.labels) - set(classes))
    if unknown:
        raise ArtifactError(f"the training data holds labels {unknown} the router does not predict ({list(classes)})")
    if embeddings is not None and np.shape(embeddings) != (len(data), embedder.dim):
        raise ArtifactError(
            f"embeddings have shape {np.shape(embeddings)}, expected ({len(data)}, {embedder.dim}): one row of the "
            "model's embedder per training prompt, in the data's order (TrainResult.embeddings)"
        )
    rows = sample_rows(data.texts, data.labels, per_label)
    texts = [data.texts[i] for i in rows]
    vectors = _vectors(embedder, texts, rows, embeddings)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    structure = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "embedder": _embedder_identity(embedder.describe()),
        "per_label": per_label,
        "seed": SEED,
        "max_text_chars": MAX_TEXT_CHARS,
        "texts": [t if len(t) <= MAX_TEXT_CHARS else t[: MAX_TEXT_CHARS - 1] + "…" for t in texts],
        "labels": [data.labels[i] for i in rows],
    }
    text = json.dumps(structure, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    tensors = save_tensors({"embeddings": np.ascontiguousarray(vectors.astype(np.float16))})
    decode_neighbours(text, tensors, classes, embedder.describe())  # whatever is saved must load
    return text, tensors


def _embedder_identity(described: Mapping[str, Any]) -> dict[str, Any]:
    return {key: described.get(key) for key in ("name", "dim", "fingerprint")}


def _fail(what: str) -> ArtifactError:
    return ArtifactError(f"{what}; the artifact's neighbours are corrupt or not written by router-ml: retrain")


def _check_structure(value: Any, classes: Sequence[str], embedder: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != _KEYS:
        found = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise _fail(f"{NEIGHBOURS_JSON} must be an object with keys {sorted(_KEYS)}, found {found}")
    if value["format"] != FORMAT or value["format_version"] != FORMAT_VERSION:
        raise _fail(f"{NEIGHBOURS_JSON} is format {value['format']!r:.40} v{value['format_version']!r:.10}")
    if value["embedder"] != _embedder_identity(embedder):
        raise _fail(f"{NEIGHBOURS_JSON} was embedded by {value['embedder']!r:.200}, not the artifact's embedder")
    per_label, texts, labels = value["per_label"], value["texts"], value["labels"]
    if type(per_label) is not int or not 1 <= per_label <= MAX_PER_LABEL:
        raise _fail(f"{NEIGHBOURS_JSON}: per_label must be 1 to {MAX_PER_LABEL:,}, found {per_label!r:.40}")
    if not isinstance(texts, list) or not isinstance(labels, list) or len(texts) != len(labels) or not texts:
        raise _fail(f"{NEIGHBOURS_JSON}: texts and labels must be non-empty lists of one length")
    if not all(isinstance(t, str) and len(t) <= MAX_TEXT_CHARS for t in texts):
        raise _fail(f"{NEIGHBOURS_JSON}: every text must be a string of at most {MAX_TEXT_CHARS} characters")
    counts: dict[str, int] = {}
    for label in labels:
        if not isinstance(label, str) or label not in classes:
            raise _fail(f"{NEIGHBOURS_JSON}: label {label!r:.60} is not one of the router's {list(classes)}")
        counts[label] = counts.get(label, 0) + 1
    if max(counts.values()) > per_label:
        raise _fail(f"{NEIGHBOURS_JSON}: holds {counts}, more than its per_label bound of {per_label}")
    return value


def _embeddings(data: bytes, rows: int, dim: int) -> np.ndarray:
    tensors = read_tensors(data, NEIGHBOURS_TENSORS, _MAX_HEADER_BYTES, _fail)
    array = tensors.get("embeddings")
    if set(tensors) != {"embeddings"} or array is None:
        raise _fail(f"{NEIGHBOURS_TENSORS} must hold exactly one tensor 'embeddings', found {sorted(tensors)}")
    if array.dtype.name not in EMBEDDING_DTYPES or array.shape != (rows, dim):
        raise _fail(
            f"{NEIGHBOURS_TENSORS}: embeddings are {array.dtype.name} {array.shape}, expected one of "
            f"{list(EMBEDDING_DTYPES)} with shape ({rows}, {dim}) (from {NEIGHBOURS_JSON} and the embedder)"
        )
    vectors = array.astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.isfinite(vectors).all() or not (norms > 0).all():
        raise _fail(f"{NEIGHBOURS_TENSORS}: embeddings hold NaN, infinite or all-zero rows")
    return vectors / norms


def decode_neighbours(
    structure: bytes, tensors: bytes, classes: Sequence[str], embedder: Mapping[str, Any]
) -> Neighbours:
    """Decode and check ``neighbours.json`` and ``neighbours.safetensors`` bytes.

    Args:
        structure (bytes): the JSON file's bytes.
        tensors (bytes): the safetensors file's bytes.
        classes (Sequence[str]): the router's labels.
        embedder (Mapping): the manifest's embedder (name, dim, fingerprint), which the vectors must come from.

    Raises:
        ArtifactError: malformed or inconsistent files, with what was expected and what was found.
    """
    value = _check_structure(parse_json(structure, NEIGHBOURS_JSON), classes, embedder)
    vectors = _embeddings(tensors, len(value["texts"]), int(embedder["dim"]))
    return Neighbours(texts=tuple(value["texts"]), labels=tuple(value["labels"]), vectors=vectors)


def read_neighbours(path: Path, manifest: Mapping[str, Any]) -> Neighbours | None:
    """The neighbours of the artifact at ``path`` (their hashes checked against ``manifest`` again, as they are
    read), or ``None`` when it was saved without them.

    Raises:
        ArtifactError: a listed file missing, changed or malformed.
    """
    files = manifest["files"]
    if NEIGHBOURS_JSON not in files:
        return None
    structure = read_listed(path, NEIGHBOURS_JSON, files)
    tensors = read_listed(path, NEIGHBOURS_TENSORS, files)
    return decode_neighbours(structure, tensors, manifest["labels"], manifest["embedder"])
