"""The one-time ONNX export of a sentence-transformers model (float and int8 graphs), done offline.

:func:`export_onnx` traces the model's transformer with ``torch.onnx.export`` (the TorchScript exporter, which
needs no extra packages) and writes, into one folder::

    model.onnx        float32 graph, attention and layer norms fused by onnxruntime's transformer optimizer;
                      embeddings match torch to ~1e-7
    model.int8.onnx   the same graph with dynamically quantized int8 weights (MatMul and Attention, per channel)
    tokenizer.json    the model's fast tokenizer
    export.json       source model and weight fingerprint, pooling, max length, SHA-256 of each graph, versions

The export happens once, at first use (or at train time, into the artifact), into a temporary folder renamed into
place, so concurrent processes never see half an export. :mod:`router_ml.embed.onnx_runtime` runs it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ..exceptions import EmbedderError
from .base import file_sha256
from .cache import cache_dir
from .registry import GRAPH_FILES
from .sentence_transformer import (
    BUNDLED_MODEL_SHA256,
    DEFAULT_MODEL,
    DEFAULT_MODEL_ALIASES,
    SentenceTransformerEmbedder,
)

__all__ = ["EXPORT_META", "default_export_dir", "export_onnx"]

logger = logging.getLogger(__name__)

EXPORT_META = "export.json"
OPSET = 17
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
    if (cached := _cached_export(name, folder)) is not None:
        _place(folder, lambda staging: shutil.copytree(cached, staging))
        logger.info("copied the ONNX export of %s from %s to %s", name, cached, folder)
        return folder
    source = SentenceTransformerEmbedder(name, device="cpu", verify=verify)
    pooling = _pooling_mode(source.model)
    _place(folder, lambda staging: _export(name, source, pooling, staging))
    logger.info("exported %s to ONNX in %s", name, folder)
    return folder


def _cached_export(name: str, folder: Path) -> Path | None:
    """The complete export of ``name`` in the embedding cache (keyed by its weights' hash), if there is one and
    ``folder`` is elsewhere: copying it is much faster than exporting again."""
    try:
        cached = default_export_dir(name)
    except EmbedderError:  # the cache is off
        return None
    if cached.resolve() == folder.resolve() or not (cached / EXPORT_META).is_file():
        return None
    return cached


def _place(folder: Path, fill: Any) -> None:
    """Fill a staging folder with ``fill(staging)`` and rename it to ``folder`` (atomic; another process may win)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.export-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        fill(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / EXPORT_META).is_file():
            raise EmbedderError(f"{folder} exists but holds no {EXPORT_META}; delete it to export again") from None


def _export(name: str, source: SentenceTransformerEmbedder, pooling: str, staging: Path) -> None:
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
        raise
    except Exception as exc:  # torch.onnx and onnxruntime raise many types
        raise EmbedderError(
            f"exporting {name!r} to ONNX failed: {type(exc).__name__}: {exc}. Use backend='torch', or load with "
            "fallback_backend='torch' to fall back automatically"
        ) from exc
