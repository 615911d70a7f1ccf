"""The embedder contract: an ABC with one abstract method, plus the text preparation every backend shares.

Prompts longer than the model reads are cut to their head and tail (:func:`head_and_tail`), the same way on
every backend.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import EmbedderError

__all__ = ["PREPROCESSING", "Embedder", "check_sha256", "file_sha256", "head_and_tail"]

HEAD_TAIL_SEPARATOR_TOKENS = 3
PREPROCESSING = "head-tail-v3"
"""Version of the text preparation before embedding; part of the embedding cache key."""
PROGRESS_MIN_TEXTS = 256
"""Inputs at least this long show a progress bar (when asked for)."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str, *, fix: str, what: str = "the file is corrupt or another release") -> None:
    """Raise :class:`EmbedderError` unless ``path`` exists with SHA-256 ``expected``; ``fix`` says how to repair."""
    if not path.is_file():
        raise EmbedderError(f"{path} is missing; {fix}")
    found = file_sha256(path)
    if found != expected:
        raise EmbedderError(f"{path} has SHA-256 {found}, expected {expected}: {what}; {fix}")


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
