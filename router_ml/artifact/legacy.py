"""Convert a pickled (schema 1) router artifact you trust into the data-only format: the one place router-ml
unpickles anything, and only when asked with ``trust_pickle=True``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..exceptions import ArtifactError
from ..model import EmbeddingClassifier
from .head_format import FORMAT, FORMAT_VERSION, decode_head, encode_head
from .integrity import (
    EXPORT_FILES,
    HEAD_JSON,
    HEAD_TENSORS,
    MANIFEST,
    MAX_BYTES,
    ONNX_DIR,
    ROUTES,
    check_files,
    file_entry,
    read_bounded,
    refuse_unexpected,
    unexpected_entries,
)
from .manifest import LEGACY_SCHEMA_VERSION, SCHEMA_VERSION, parse_json, read_manifest, resolve, write_manifest

__all__ = ["LEGACY_HEAD", "migrate"]

logger = logging.getLogger(__name__)

LEGACY_HEAD = "head.joblib"
"""The pickled head of a schema 1 artifact."""
_LEGACY_MAX_BYTES = 1 << 30


def _unpickle(source: Path, manifest: dict[str, Any]) -> EmbeddingClassifier:
    """The pickled head (this runs whatever code the pickle holds: the caller said it trusts it)."""
    import joblib

    file = source / LEGACY_HEAD
    read_bounded(file, _LEGACY_MAX_BYTES)  # a regular file of sane size, before unpickling it
    try:
        head = joblib.load(file)
    except Exception as exc:  # unpickling raises anything
        raise ArtifactError(f"{file} cannot be unpickled ({type(exc).__name__}: {exc}); retrain the router") from None
    if not isinstance(head, EmbeddingClassifier):
        raise ArtifactError(f"{file}: expected a pickled EmbeddingClassifier, found {type(head).__name__}; retrain")
    if head.classes_.tolist() != manifest.get("labels"):
        raise ArtifactError(f"{file}: head labels {head.classes_.tolist()} differ from the manifest's; retrain")
    return head


def _export_recorded(source: Path, manifest: dict[str, Any]) -> bool:
    """The old manifest recorded an export and ``onnx/`` holds exactly its files."""
    folder = source / ONNX_DIR
    return (
        manifest.get("onnx_export") is not None
        and folder.is_dir()
        and sorted(e.name for e in os.scandir(folder)) == sorted(EXPORT_FILES)
    )


def _target(source: Path, out: str | Path | None) -> Path:
    if out is None:
        return source
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ArtifactError(f"{target} exists and is not an empty directory; choose a new directory for out")
    target.mkdir(parents=True, exist_ok=True)
    return target


def _read_legacy(source: Path) -> dict[str, Any] | None:
    """The schema 1 manifest, or ``None`` when the artifact is already in the current format."""
    file = source / MANIFEST
    if not file.is_file():
        raise ArtifactError(f"{source} is not a router artifact: {MANIFEST} not found")
    manifest = parse_json(read_bounded(file, MAX_BYTES[MANIFEST]), file)
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version == SCHEMA_VERSION:
        read_manifest(source)  # checked like any load's first step
        return None
    if version != LEGACY_SCHEMA_VERSION:
        raise ArtifactError(
            f"{file}: schema_version {version!r:.40}; migrate converts schema {LEGACY_SCHEMA_VERSION} (pickled) "
            f"artifacts to schema {SCHEMA_VERSION}: retrain this one"
        )
    return manifest


def migrate(path: str | Path, *, trust_pickle: bool = False, out: str | Path | None = None) -> Path:
    """Convert a pickled (schema 1) artifact into the data-only format (schema 2), explicitly.

    Unpickling runs any code the pickle holds, so it happens only here, and only with ``trust_pickle=True``:
    pass it for an artifact you made, or got from someone you trust. The head is then re-encoded as
    ``head.json`` + ``head.safetensors`` (predicting exactly as the pickled one), every file is hashed into the
    manifest, and the old manifest's router id, metrics and measurements are kept. An artifact already in the
    current format is returned as it is.

    Args:
        path (str | Path): the artifact directory, or a models directory with a ``CURRENT`` pointer.
        trust_pickle (bool): confirm that the pickle may be unpickled. Default False: refuse.
        out (str | Path | None): write the converted artifact to this new or empty directory and leave the
            original untouched. Default: convert in place (``head.joblib`` is deleted once converted).

    Returns:
        Path: the converted artifact directory.

    Raises:
        ArtifactError: ``trust_pickle`` not given, an unknown schema, an unreadable or foreign pickle, a
            non-empty ``out``, or files in the artifact that a data-only artifact may not hold.

    Example:
        >>> migrate("artifacts/old-router", trust_pickle=True)  # doctest: +SKIP
        PosixPath('artifacts/old-router')
    """
    source = resolve(path)
    manifest = _read_legacy(source)
    if manifest is None:
        return source
    if not trust_pickle:
        raise ArtifactError(
            f"{source} holds a pickled head ({LEGACY_HEAD}); unpickling it runs any code it contains. If you made "
            "this artifact or trust where it came from, pass trust_pickle=True (CLI: --trust-pickle); else retrain"
        )
    keep_export = _export_recorded(source, manifest)
    names = [HEAD_JSON, HEAD_TENSORS, ROUTES, LEGACY_HEAD]
    found = unexpected_entries(source, [*names, *(f"{ONNX_DIR}/{n}" for n in EXPORT_FILES)], keep_export)
    if out is None and found:
        refuse_unexpected(source, found)
    old_sha256 = file_entry(source / LEGACY_HEAD)["sha256"] if (source / LEGACY_HEAD).is_file() else None
    structure, tensors = encode_head(_unpickle(source, manifest))
    target = _target(source, out)
    (target / HEAD_JSON).write_bytes(structure)
    (target / HEAD_TENSORS).write_bytes(tensors)
    files = {
        HEAD_JSON: {"sha256": hashlib.sha256(structure).hexdigest(), "size": len(structure)},
        HEAD_TENSORS: {"sha256": hashlib.sha256(tensors).hexdigest(), "size": len(tensors)},
    }
    if (source / ROUTES).is_file():
        if target != source:
            shutil.copyfile(source / ROUTES, target / ROUTES)
        files[ROUTES] = file_entry(target / ROUTES)
    if keep_export:
        if target != source:
            shutil.copytree(source / ONNX_DIR, target / ONNX_DIR)
        files.update({f"{ONNX_DIR}/{n}": file_entry(target / ONNX_DIR / n) for n in EXPORT_FILES})
    head = {"class": "EmbeddingClassifier", "format": FORMAT, "format_version": FORMAT_VERSION}
    head |= {"files": [HEAD_JSON, HEAD_TENSORS], "params": manifest.get("head", {}).get("params")}
    migrated = {"from_schema_version": LEGACY_SCHEMA_VERSION, "pickle_sha256": old_sha256}
    migrated["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if not keep_export:
        manifest.pop("onnx_export", None)  # an unrecorded export is adopted (hashed, recorded) at first use
    write_manifest(
        target, {**manifest, "schema_version": SCHEMA_VERSION, "head": head, "files": files, "migrated": migrated}
    )
    if target == source:
        (source / LEGACY_HEAD).unlink()
    checked = check_files(target, read_manifest(target)["files"], keep=(HEAD_JSON, HEAD_TENSORS))
    decode_head(checked[HEAD_JSON], checked[HEAD_TENSORS])
    logger.info("migrated %s to the data-only format in %s", source, target)
    return target
