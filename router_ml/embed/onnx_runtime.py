"""ONNX Runtime embedders: the same sentence-transformers model, exported offline, run without torch.

Running needs only ``onnxruntime``, ``tokenizers`` and numpy: mean (or CLS) pooling and L2 normalisation are done
in numpy, so a router on this backend starts without importing torch. The graphs come from
:func:`~router_ml.embed.onnx_export.export_onnx`, at first use.

Int8 embeddings are close to, not equal to, the float ones (cosine ≈ 0.99 on real prompts); whether a router
trained on float embeddings may use them is decided by :mod:`router_ml.artifact`, from a measured comparison.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import EmbedderError
from .base import Embedder, file_sha256, head_and_tail
from .onnx_export import EXPORT_META, default_export_dir, export_onnx
from .sentence_transformer import DEFAULT_MODEL

__all__ = ["BULK_MIN_BATCHES", "TOKENS_PER_RUN", "Int8OnnxEmbedder", "OnnxEmbedder"]

TOKENS_PER_RUN = 256
"""Most padded tokens in one ONNX Runtime call (see :meth:`OnnxEmbedder._batches`)."""
BULK_MIN_BATCHES = 4
"""Encodes of at least this many runs go to one single-threaded run per core (see ``OnnxEmbedder._bulk_session``)."""


class OnnxEmbedder(Embedder):
    """A sentence-transformers model exported to ONNX and run on ONNX Runtime (CPU).

    Args:
        name (str): model name or folder, as for :class:`~router_ml.embed.SentenceTransformerEmbedder`.
        export_dir (str | Path | None): folder of the export; exported there at first use if empty. Default: the
            embedding cache (see :func:`default_export_dir`).
        threads (int | None): ONNX Runtime intra-op threads; ``None`` uses all cores.
        verify (bool): check the graph file against the SHA-256 its export recorded. Default True.
    """

    backend = "onnx"

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        *,
        export_dir: str | Path | None = None,
        threads: int | None = None,
        verify: bool = True,
    ) -> None:
        self.name = name
        self.export_dir = Path(export_dir) if export_dir is not None else None
        self.threads = threads
        self.verify = verify

    @cached_property
    def folder(self) -> Path:
        """The export folder, exported into at first use."""
        return export_onnx(self.name, self.export_dir or default_export_dir(self.name), verify=self.verify)

    @cached_property
    def meta(self) -> dict[str, Any]:
        """The export's ``export.json``."""
        file = self.folder / EXPORT_META
        try:
            return dict(json.loads(file.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise EmbedderError(f"{file} is unreadable ({exc}); delete {self.folder} to export again") from None

    @property
    def graph_file(self) -> Path:
        """The ONNX graph this backend runs."""
        return self.folder / self.meta["graphs"][self.backend]["file"]

    @cached_property
    def session(self) -> Any:
        """The ONNX Runtime session for latency: one run uses ``threads`` cores (the graph's hash is checked first)."""
        expected = self.meta["graphs"][self.backend]["sha256"]
        if not self.graph_file.is_file():
            raise EmbedderError(f"{self.graph_file} is missing; delete {self.folder} to export again")
        if self.verify and (found := file_sha256(self.graph_file)) != expected:
            raise EmbedderError(
                f"{self.graph_file} has SHA-256 {found[:12]}…, its export recorded {expected[:12]}…; "
                f"the file changed after export: delete {self.folder} to export again"
            )
        return self._new_session(self.threads)

    @cached_property
    def _bulk_session(self) -> Any:
        """A single-threaded session, run by one worker thread per core on different batches of a bulk encode:
        on small batches, whole batches in parallel keep the cores busier than one batch split across them
        (1.4-1.5× the throughput on 2 cores, the same vectors). Made at the first bulk encode."""
        self.session  # noqa: B018 — checks the graph's hash first
        return self._new_session(1, spinning=False)

    def _new_session(self, threads: int | None, *, spinning: bool = True) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:  # idle workers sleep instead of spinning on a core another worker needs
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(self.graph_file), options, providers=["CPUExecutionProvider"])

    @property
    def _workers(self) -> int:
        """Worker threads of a bulk encode: ``threads``, or every core."""
        return self.threads or os.cpu_count() or 1

    @cached_property
    def tokenizer(self) -> Any:
        """The model's tokenizer, truncating to ``max_seq_length``."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        tokenizer.enable_truncation(self.max_seq_length)
        tokenizer.no_padding()  # padded per run, to that run's longest prompt
        return tokenizer

    @cached_property
    def _splitter(self) -> Any:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def max_seq_length(self) -> int:
        return int(self.meta["max_seq_length"])

    @property
    def fingerprint(self) -> str:
        """The source weights' fingerprint: an ONNX export is the same model as the torch one it came from."""
        return str(self.meta["source_fingerprint"])

    def describe(self) -> dict[str, Any]:
        graph = self.meta["graphs"][self.backend]
        return {**super().describe(), "export": {"file": graph["file"], "sha256": graph["sha256"]}}

    @cached_property
    def _input_types(self) -> dict[str, Any]:
        """Each graph input and its integer dtype (fused graphs may take int32)."""
        return {i.name: np.int32 if "int32" in i.type else np.int64 for i in self.session.get_inputs()}

    def _embed_batch(self, encodings: list[Any], session: Any = None) -> np.ndarray:
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feed = {name: feed[name].astype(dtype, copy=False) for name, dtype in self._input_types.items()}
        hidden = (session or self.session).run(None, feed)[0]
        if self.meta["pooling"] == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def _batches(self, lengths: list[int], batch_size: int) -> list[list[int]]:
        """Row groups, longest first, each holding at most ``batch_size`` rows and ``TOKENS_PER_RUN`` padded
        tokens: on CPU, ONNX Runtime's cost grows with padded tokens, so big batches of long prompts only add
        padding and cache misses, while short prompts still share a run."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        for i in order:
            current = batches[-1] if batches else None
            longest = lengths[current[0]] if current else 0
            if current is None or len(current) >= batch_size or (len(current) + 1) * longest > TOKENS_PER_RUN:
                batches.append([i])
            else:
                current.append(i)
        return batches

    def _encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        fitted = head_and_tail(texts, self._splitter, self.max_seq_length)
        encodings = self.tokenizer.encode_batch([t.strip() for t in fitted])
        out = np.empty((len(fitted), self.dim), dtype=np.float32)
        batches = self._batches([len(e.ids) for e in encodings], batch_size)
        for encoding_rows in batches:
            group = [encodings[i] for i in encoding_rows]
            longest = max(len(e.ids) for e in group)
            for encoding in group:
                encoding.pad(longest, pad_id=self.meta["pad_id"], pad_token=self.meta["pad_token"])
        workers = min(self._workers, len(batches))
        bulk = workers > 1 and len(batches) >= BULK_MIN_BATCHES
        session = self._bulk_session if bulk else self.session

        def run(rows: list[int]) -> tuple[list[int], np.ndarray]:
            return rows, self._embed_batch([encodings[i] for i in rows], session)

        # a routing call (one or a few runs) stays on this thread: no pool on the latency path
        pool = ThreadPoolExecutor(workers) if bulk else None
        try:
            done: Any = pool.map(run, batches) if pool is not None else map(run, batches)
            if show_progress:
                from tqdm.auto import tqdm

                done = tqdm(done, total=len(batches), desc="embedding", unit="batch")
            for rows, vectors in done:
                out[rows] = vectors
        finally:
            if pool is not None:
                pool.shutdown()
        return out


class Int8OnnxEmbedder(OnnxEmbedder):
    """:class:`OnnxEmbedder` on the int8-quantized graph: about 2× faster, cosine ≈ 0.99 to the float model."""

    backend = "onnx-int8"
