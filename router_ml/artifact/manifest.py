"""An artifact's ``manifest.json``: read (bounded, checked), written (atomically), and library-version drift.

The manifest is the root of an artifact's integrity: it lists the SHA-256 and size of every other file the loader
reads (see :mod:`router_ml.artifact.integrity`). Schema 1 artifacts held a pickled head; they are refused here, with the
way to convert one you trust (:func:`router_ml.artifact.migrate`).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from ..exceptions import ArtifactError
from .integrity import MANIFEST, MAX_BYTES, read_bounded, validate_listing

__all__ = [
    "CURRENT",
    "LEGACY_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "LibraryVersionWarning",
    "library_versions",
    "parse_json",
    "read_manifest",
    "resolve",
    "warn_on_drift",
    "write_manifest",
]

SCHEMA_VERSION = 2
"""Data-only head (``head.json`` + ``head.safetensors``) and a checked file list."""
LEGACY_SCHEMA_VERSION = 1
"""A pickled head (``head.joblib``): refused; :func:`router_ml.artifact.migrate` converts a trusted one."""
CURRENT = "CURRENT"
_CURRENT_MAX_BYTES = 4096
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_REQUIRED = ("router_id", "labels", "threshold", "embedder", "head", "files")
_LIBRARIES = (
    "router-ml",
    "scikit-learn",
    "numpy",
    "scipy",
    "safetensors",
    "sentence-transformers",
    "torch",
    "transformers",
    "onnxruntime",
)


class LibraryVersionWarning(UserWarning):
    """The artifact was saved with other library versions than the ones installed now."""


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries an artifact depends on (``None`` when not installed)."""
    versions: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(data: bytes, where: Path | str) -> Any:
    """Strict JSON from UTF-8 bytes: no NaN or Infinity; any failure is an :class:`ArtifactError` naming ``where``."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"{where} is not valid JSON ({str(exc)[:200]}); the artifact is corrupt: retrain") from None


def resolve(path: str | Path) -> Path:
    """An artifact directory, following a models directory's ``CURRENT`` pointer (see
    :mod:`router_ml.online.retrain`): one folder name, inside the models directory."""
    path = Path(path)
    pointer = path / CURRENT
    if not pointer.is_file():
        return path
    name = read_bounded(pointer, _CURRENT_MAX_BYTES).decode("utf-8", "replace").strip()
    target = path / name
    if not _VERSION_NAME.match(name) or not (target / MANIFEST).is_file():
        raise ArtifactError(
            f"{pointer} holds {name!r:.80}, not the name of a router artifact folder next to it; "
            "fix or rewrite CURRENT (e.g. `router-v002`)"
        )
    return target


def _refuse_legacy(file: Path, manifest: dict[str, Any]) -> None:
    head = manifest.get("head") if isinstance(manifest.get("head"), dict) else {}
    raise ArtifactError(
        f"{file.parent} is a pickled router artifact (schema {LEGACY_SCHEMA_VERSION}, {head.get('file', 'head.joblib')}"
        "): loading a pickle can run any code hidden in it, so this router-ml refuses it. If you made this artifact "
        "or trust where it came from, convert it once: `router-ml migrate ARTIFACT --trust-pickle` (Python: "
        "router_ml.artifact.migrate(path, trust_pickle=True)); otherwise retrain the router"
    )


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check an artifact's ``manifest.json`` (size-bounded, strict JSON, schema, fields, file list).

    Raises:
        ArtifactError: no manifest, a corrupt one, a pickled (schema 1) or unknown schema, missing fields.
    """
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise ArtifactError(f"{path} is not a router artifact: {MANIFEST} not found. Train one with `router-ml train`.")
    manifest = parse_json(read_bounded(file, MAX_BYTES[MANIFEST]), file)
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{file} must hold a JSON object, found {type(manifest).__name__}; retrain the router")
    version = manifest.get("schema_version")
    if version == LEGACY_SCHEMA_VERSION:
        _refuse_legacy(file, manifest)
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{file}: schema_version {version!r:.40}, this router-ml reads schema {SCHEMA_VERSION}; "
            "retrain the router with this version (or use the router-ml that wrote it)"
        )
    missing = [name for name in _REQUIRED if name not in manifest]
    if missing:
        raise ArtifactError(f"{file}: missing fields {missing}; retrain the router")
    manifest["files"] = validate_listing(file, manifest["files"])
    labels = manifest["labels"]
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ArtifactError(f"{file}: 'labels' must be a list of strings, found {labels!r:.80}; retrain the router")
    return manifest


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to the manifest")


def dump_json(value: Any) -> bytes:
    """Indented, strict JSON (``NaN`` refused), UTF-8, newline-terminated."""
    return (json.dumps(value, indent=2, default=_json_default, allow_nan=False) + "\n").encode("utf-8")


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Replace an artifact's manifest atomically (a concurrent reader sees the old or the new one)."""
    staging = path / f".{MANIFEST}.{os.getpid()}"
    staging.write_bytes(dump_json(manifest))
    staging.replace(path / MANIFEST)


def warn_on_drift(saved: Any) -> None:
    """Warn (:class:`LibraryVersionWarning`) for each library whose major.minor version differs from ``saved``."""
    if not isinstance(saved, dict):
        return
    installed = library_versions()
    for name, then in saved.items():
        now = installed.get(name)
        if not isinstance(then, str) or now is None:
            continue
        try:
            drift = Version(then).release[:2] != Version(now).release[:2]
        except InvalidVersion:
            drift = then != now
        if drift:
            warnings.warn(
                f"router artifact was saved with {name} {then}, {now} is installed; predictions may differ. "
                "Retrain the router to silence this warning.",
                LibraryVersionWarning,
                stacklevel=3,
            )
