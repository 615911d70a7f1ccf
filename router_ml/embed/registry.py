"""The embedder backends, named once: what the config, the CLI choices, the ONNX export and artifacts read.

Each :class:`BackendSpec` says which :class:`~router_ml.embed.base.Embedder` class runs the backend (imported
only when it is built, so listing backends loads neither torch nor onnxruntime), its numeric precision (backends
of one precision give the same embeddings of a model, so an artifact moves freely between them) and, for ONNX
backends, the graph file of the export.

Two families of models run here: sentence-transformers models (``torch``, ``onnx``, ``onnx-int8``) and USE
multilingual v3, which runs only on its own ``numpy`` backend (:data:`MODEL_BACKENDS`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from ..exceptions import EmbedderError
from .base import Embedder
from .use_multilingual import USE_MODEL

__all__ = [
    "BACKENDS",
    "DEFAULT_EMBEDDER",
    "EMBEDDERS",
    "GRAPH_FILES",
    "MODEL_BACKENDS",
    "ONNX_BACKENDS",
    "PRECISION",
    "BackendSpec",
    "check_model_backend",
    "default_backend",
    "make_embedder",
    "model_backends",
]


@dataclass(frozen=True)
class BackendSpec:
    """One embedder backend.

    Attributes:
        name (str): the backend's name in configs, manifests and ``--backend``.
        precision (str): numeric family of its embeddings (``float32`` or ``int8``).
        embedder (str): ``module:Class`` of its :class:`Embedder`, relative to :mod:`router_ml.embed`.
        graph_file (str | None): file name of its graph in an ONNX export; ``None`` when it runs no export.
    """

    name: str
    precision: Literal["float32", "int8"]
    embedder: str
    graph_file: str | None = None

    def embedder_class(self) -> type[Embedder]:
        """The :class:`Embedder` subclass, imported now."""
        module, _, cls = self.embedder.partition(":")
        return getattr(importlib.import_module(f".{module}", __package__), cls)  # type: ignore[no-any-return]


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec("torch", "float32", "sentence_transformer:SentenceTransformerEmbedder"),
        BackendSpec("onnx", "float32", "onnx_runtime:OnnxEmbedder", "model.onnx"),
        BackendSpec("onnx-int8", "int8", "onnx_runtime:Int8OnnxEmbedder", "model.int8.onnx"),
        BackendSpec("numpy", "float32", "use_multilingual:UseEmbedder"),
    )
}
EMBEDDERS = tuple(BACKENDS)
"""Every backend name (the CLI's ``--backend`` choices)."""
ONNX_BACKENDS = tuple(name for name, spec in BACKENDS.items() if spec.graph_file)
"""Backends that run an ONNX export (what ``router-ml backends`` measures)."""
GRAPH_FILES = {name: spec.graph_file for name, spec in BACKENDS.items() if spec.graph_file}
"""Graph file of each ONNX backend inside an export folder."""
PRECISION = {name: spec.precision for name, spec in BACKENDS.items()}
"""Numeric family of each backend. Backends of one family give the same embeddings (ONNX float matches torch to
~1e-7), so an artifact moves freely between them; :mod:`router_ml.artifact` refuses another family unmeasured."""


DEFAULT_EMBEDDER = USE_MODEL
"""The model a router is trained on unless told otherwise: USE multilingual v3, chosen by measurement over
all-MiniLM-L6-v2 (:data:`~router_ml.embed.sentence_transformer.DEFAULT_MODEL`) and the other candidates in
``docs/performance.md``: it routes non-English prompts far better, at a third of the latency."""
MODEL_BACKENDS: dict[str, tuple[str, ...]] = {USE_MODEL: ("numpy",)}
"""Models that run only on some backends, those first that is their default. Any other model is a
sentence-transformers model, which runs on every other backend (default ``onnx``)."""
_SENTENCE_TRANSFORMER_BACKENDS = ("onnx", "torch", "onnx-int8")


def model_backends(name: str) -> tuple[str, ...]:
    """The backends model ``name`` runs on, its default first.

    Example:
        >>> model_backends("use-multilingual-v3")
        ('numpy',)
    """
    return MODEL_BACKENDS.get(name, _SENTENCE_TRANSFORMER_BACKENDS)


def default_backend(name: str) -> str:
    """The backend model ``name`` is trained and run on unless told otherwise.

    Example:
        >>> default_backend("use-multilingual-v3"), default_backend("all-MiniLM-L6-v2")
        ('numpy', 'onnx')
    """
    return model_backends(name)[0]


def check_model_backend(name: str, backend: str) -> None:
    """Raise :class:`EmbedderError` unless model ``name`` runs on ``backend``."""
    if backend not in BACKENDS:
        raise EmbedderError(f"unknown embedder backend {backend!r}; choose one of {list(EMBEDDERS)}")
    runs_on = model_backends(name)
    if backend not in runs_on:
        raise EmbedderError(
            f"the embedding model {name!r} does not run on backend {backend!r}; it runs on {list(runs_on)}"
        )


def make_embedder(name: str = DEFAULT_EMBEDDER, backend: str | None = None, **kwargs: Any) -> Embedder:
    """Build an embedder of model ``name`` on a backend (one of ``EMBEDDERS``; default: the model's own)."""
    backend = backend or default_backend(name)
    check_model_backend(name, backend)
    return BACKENDS[backend].embedder_class()(name, **kwargs)
