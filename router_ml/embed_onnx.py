"""ONNX Runtime embedders: the same sentence-transformers model, exported offline, run without torch.

:func:`export_onnx` traces the model's transformer with ``torch.onnx.export`` (the TorchScript exporter, which
needs no extra packages) and writes, into one folder::

    model.onnx        float32 graph, attention and layer norms fused by onnxruntime's transformer optimizer;
                      embeddings match torch to ~1e-7
    model.int8.onnx   the same graph with dynamically quantized int8 weights (MatMul and Attention, per channel)
    tokenizer.json    the model's fast tokenizer
    export.json       source model and weight fingerprint, pooling, max length, SHA-256 of each graph, versions

The export happens once, at first use (or at train time, into the artifact), into a temporary folder renamed into
place, so concurrent processes never see half an export. Running needs only ``onnxruntime``, ``tokenizers`` and
numpy: mean (or CLS) pooling and L2 normalisation are done in numpy, so a router on this backend starts without
importing torch.

Int8 embeddings are close to, not equal to, the float ones (cosine ≈ 0.99 on real prompts); whether a router
trained on float embeddings may use them is decided by :mod:`router_ml.artifact`, from a measured comparison.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from datetime import UTC, datetime
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .embed import (
    BUNDLED_MODEL_SHA256,
    DEFAULT_MODEL,
    DEFAULT_MODEL_ALIASES,
    Embedder,
    SentenceTransformerEmbedder,
    cache_dir,
    file_sha256,
    head_and_tail,
)
from .exceptions import EmbedderError

__all__ = ["EXPORT_META", "GRAPH_FILES", "Int8OnnxEmbedder", "OnnxEmbedder", "default_export_dir", "export_onnx"]

logger = logging.getLogger(__name__)

EXPORT_META = "export.json"
GRAPH_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
OPSET = 17
TOKENS_PER_RUN = 256
"""Most padded tokens in one ONNX Runtime call (see :meth:`OnnxEmbedder._batches`)."""
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_POOLINGS = ("mean", "cls")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def default_export_dir(name: str) -> Path:
    """Where the export of model ``name`` is cached when no folder is given (``$ROUTER_ML_CACHE_DIR/onnx/...``)."""
    if name in DEFAULT_MODEL_ALIASES:
        key = BUNDLED_MODEL_SHA256[:16]
    else:
        path = Path(name).expanduser()
        weights = path / "model.safetensors"
        key = file_sha256(weights)[:16] if weights.is_file() else name.replace("/", "--")
    root = cache_dir()
    if root is None:
        raise EmbedderError(
            "the embedding cache is off (ROUTER_ML_CACHE_DIR=off), so the ONNX export has nowhere to live; "
            "pass export_dir= or load the router from an artifact that holds its export"
        )
    return root / "onnx" / key


def _pooling_mode(model: Any) -> str:
    kinds = [type(module).__name__ for module in model]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise EmbedderError(
            f"cannot export {kinds} to ONNX: only Transformer → Pooling (→ Normalize) models are supported; "
            "use backend='torch' for this model"
        )
    config = model[1].get_config_dict()
    mode = config.get("pooling_mode") or next(
        (m for m in _POOLINGS if config.get(f"pooling_mode_{m}_tokens") or config.get(f"pooling_mode_{m}_token")), None
    )
    if mode not in _POOLINGS:
        raise EmbedderError(f"cannot export pooling {config} to ONNX (supported: {_POOLINGS}); use backend='torch'")
    return str(mode)


def _trace(source: SentenceTransformerEmbedder, file: Path) -> None:
    import torch

    transformer = source.model[0].auto_model.eval()
    # eager attention traces to plain MatMul/Softmax, which onnxruntime's optimizer fuses into one Attention op
    # (about 1.2x faster in float, 1.25x in int8 here); the SDPA trace is left unfused.
    if hasattr(transformer, "set_attn_implementation"):
        transformer.set_attn_implementation("eager")

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    sample = source.model.tokenizer(["an example", "a longer example sentence"], padding=True, return_tensors="pt")
    args = tuple(sample[k] if k in sample else torch.zeros_like(sample["input_ids"]) for k in _INPUTS)
    axes = {k: {0: "batch", 1: "sequence"} for k in (*_INPUTS, "last_hidden_state")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow in transformers' masking code
        torch.onnx.export(
            LastHiddenState().eval(),
            args,
            str(file),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _optimize(file: Path, config: Any) -> None:
    """Fuse attention, GELU and layer norms in place with onnxruntime's transformer optimizer (BERT-style)."""
    from onnxruntime.transformers.optimizer import optimize_model

    heads = int(getattr(config, "num_attention_heads", 0))
    hidden = int(getattr(config, "hidden_size", 0))
    optimized = optimize_model(str(file), model_type="bert", num_heads=heads, hidden_size=hidden)
    optimized.save_model_to_file(str(file))


def _quantize(source: Path, target: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quant_logger = logging.getLogger()  # onnxruntime.quantization advises pre-processing on the root logger
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        # Per-channel int8 weights of the MatMul and fused Attention ops, embedding tables kept in float: cosine to
        # float ≈ 0.994 on real prompts, against ≈ 0.957 for the per-tensor default that quantizes everything.
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            extra_options={"DefaultTensorType": TensorProto.FLOAT},  # fused ops have no inferred output type
        )
    finally:
        quant_logger.setLevel(level)


def export_onnx(name: str = DEFAULT_MODEL, folder: str | Path | None = None, *, verify: bool = True) -> Path:
    """Export a sentence-transformers model to ONNX (float and int8) into ``folder``; returns the folder.

    Needs torch and sentence-transformers (only here, not to run the export). An existing complete export is
    kept as it is.

    Raises:
        EmbedderError: the model cannot be loaded or exported; the message says why and what to use instead.
    """
    folder = Path(folder) if folder is not None else default_export_dir(name)
    if (folder / EXPORT_META).is_file():
        return folder
    if folder.exists():  # exports appear whole (renamed into place), so this is not one in progress
        raise EmbedderError(f"{folder} exists but is not a complete ONNX export (no {EXPORT_META}); delete it")
    source = SentenceTransformerEmbedder(name, device="cpu", verify=verify)
    pooling = _pooling_mode(source.model)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.export-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _trace(source, staging / GRAPH_FILES["onnx"])
        _optimize(staging / GRAPH_FILES["onnx"], source.model[0].auto_model.config)
        _quantize(staging / GRAPH_FILES["onnx"], staging / GRAPH_FILES["onnx-int8"])
        source.model.tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        meta = {
            "source": name,
            "source_fingerprint": source.fingerprint,
            "dim": source.dim,
            "max_seq_length": source.max_seq_length,
            "pooling": pooling,
            "pad_id": int(source.model.tokenizer.pad_token_id or 0),
            "pad_token": str(source.model.tokenizer.pad_token or "[PAD]"),
            "opset": OPSET,
            "graphs": {b: {"file": f, "sha256": file_sha256(staging / f)} for b, f in GRAPH_FILES.items()},
            "versions": {p: _version(p) for p in ("torch", "onnx", "onnxruntime", "transformers")},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    except EmbedderError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as exc:  # torch.onnx and onnxruntime raise many types
        shutil.rmtree(staging, ignore_errors=True)
        raise EmbedderError(
            f"exporting {name!r} to ONNX failed: {type(exc).__name__}: {exc}. Use backend='torch', or load with "
            "fallback_backend='torch' to fall back automatically"
        ) from exc
    try:
        staging.rename(folder)  # atomic; another process may have won the race, which is fine
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / EXPORT_META).is_file():
            raise EmbedderError(f"{folder} exists but holds no {EXPORT_META}; delete it to export again") from None
    logger.info("exported %s to ONNX in %s", name, folder)
    return folder


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
        """The ONNX Runtime session (the graph's hash is checked first)."""
        import onnxruntime as ort

        expected = self.meta["graphs"][self.backend]["sha256"]
        if not self.graph_file.is_file():
            raise EmbedderError(f"{self.graph_file} is missing; delete {self.folder} to export again")
        if self.verify and (found := file_sha256(self.graph_file)) != expected:
            raise EmbedderError(
                f"{self.graph_file} has SHA-256 {found[:12]}…, its export recorded {expected[:12]}…; "
                f"the file changed after export: delete {self.folder} to export again"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        return ort.InferenceSession(str(self.graph_file), options, providers=["CPUExecutionProvider"])

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

    def _embed_batch(self, encodings: list[Any]) -> np.ndarray:
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feed = {name: feed[name].astype(dtype, copy=False) for name, dtype in self._input_types.items()}
        hidden = self.session.run(None, feed)[0]
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
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="embedding", unit="batch")
        for rows in batches:
            group = [encodings[i] for i in rows]
            longest = max(len(e.ids) for e in group)
            for encoding in group:
                encoding.pad(longest, pad_id=self.meta["pad_id"], pad_token=self.meta["pad_token"])
            out[rows] = self._embed_batch(group)
        return out


class Int8OnnxEmbedder(OnnxEmbedder):
    """:class:`OnnxEmbedder` on the int8-quantized graph: about 2× faster, cosine ≈ 0.99 to the float model."""

    backend = "onnx-int8"
