"""The embedder backends, named once: what the config, the CLI choices, the ONNX export and artifacts read.

Each :class:`BackendSpec` says which :class:`~router_ml.embed.base.Embedder` class runs the backend (imported
only when it is built, so listing backends loads neither torch nor onnxruntime), its numeric precision (backends
of one precision give the same embeddings, so an artifact moves freely between them) and, for ONNX backends, the
graph file of the export.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from ..exceptions import EmbedderError
from .base import Embedder
from .sentence_transformer import DEFAULT_MODEL

__all__ = ["BACKENDS", "EMBEDDERS", "GRAPH_FILES", "ONNX_BACKENDS", "PRECISION", "BackendSpec", "make_embedder"]


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


def make_embedder(name: str = DEFAULT_MODEL, backend: str = "torch", **kwargs: Any) -> Embedder:
    """Build an embedder by backend name (one of ``EMBEDDERS``)."""
    spec = BACKENDS.get(backend)
    if spec is None:
        raise EmbedderError(f"unknown embedder backend {backend!r}; choose one of {list(EMBEDDERS)}")
    return spec.embedder_class()(name, **kwargs)
