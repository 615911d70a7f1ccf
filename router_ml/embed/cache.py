"""The on-disk cache of batch embeddings for training and evaluation.

Embeddings are cached with :class:`joblib.Memory`, keyed by the backend, the embedder's weight fingerprint, the
text preparation and the texts, so retraining or evaluating on the same data does not embed it again. The cache
folder is ``$ROUTER_ML_CACHE_DIR`` (default ``~/.cache/router-ml``); ``ROUTER_ML_CACHE_DIR=off`` disables it.
Routing never goes through this cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import PREPROCESSING, Embedder

__all__ = ["cache_dir", "embed_texts", "is_cached"]


def cache_dir() -> Path | None:
    """Embedding cache folder, or ``None`` when disabled (``ROUTER_ML_CACHE_DIR=off``)."""
    value = os.environ.get("ROUTER_ML_CACHE_DIR", "")
    if value.lower() in ("off", "none", "0"):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "router-ml"


def _embed_uncached(embedder: Embedder, fingerprint: str, texts: list[str]) -> np.ndarray:
    del fingerprint  # part of the cache key only
    return embedder.encode(texts, show_progress=True)


def _cached(embedder: Embedder) -> tuple[Any, str] | None:
    folder = cache_dir()
    if folder is None:
        return None
    from joblib import Memory

    function = Memory(folder / "embeddings", verbose=0).cache(_embed_uncached, ignore=["embedder"])
    return function, f"{embedder.backend}:{embedder.fingerprint}:{PREPROCESSING}"


def embed_texts(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Embed a batch of texts, through the on-disk cache when it is enabled."""
    cached = _cached(embedder)
    if cached is None:
        return embedder.encode(texts, show_progress=True)
    function, key = cached
    return function(embedder, key, list(texts))  # type: ignore[no-any-return]


def is_cached(embedder: Embedder, texts: list[str]) -> bool:
    """Whether :func:`embed_texts` would read these texts' embeddings from the cache."""
    cached = _cached(embedder)
    if cached is None:
        return False
    function, key = cached
    return bool(function.check_call_in_cache(embedder, key, list(texts)))
