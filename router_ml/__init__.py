"""router-ml: route each LLM request to the right specialist model with a local, trained classifier.

The public API is imported lazily, so ``import router_ml`` loads neither torch nor scikit-learn.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("router-ml")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

_EXPORTS: dict[str, str | None] = {
    "Router": "router",
    "Decision": "router",
    "RouterModel": "model",
    "EmbeddingClassifier": "model",
    "SentenceTransformerEmbedder": "embed",
    "Embedder": "embed",
    "LabelledPrompts": "data",
    "load_file": "data",
    "load_files": "data",
    "load_bundled": "data",
    "from_lists": "data",
    "from_dataframe": "data",
    "RouteTable": "route_table",
    "load_routes": "route_table",
    "TrainConfig": "training",
    "train": "training",
    "evaluate": "evaluation",
    "route_file": "batch",
    "artifact": None,
    "RouterMLError": "exceptions",
    "DataError": "exceptions",
    "ConfigError": "exceptions",
    "ArtifactError": "exceptions",
    "EmbedderError": "exceptions",
    "NotFittedError": "exceptions",
    "StoreError": "exceptions",
    "DispatchError": "exceptions",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = _EXPORTS[name]
        if module is None:  # a submodule exported as such
            return importlib.import_module(f".{name}", __name__)
        return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module 'router_ml' has no attribute {name!r}")
