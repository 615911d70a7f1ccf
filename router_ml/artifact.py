"""Save and load a trained router as a directory.

Layout::

    my-router/
      manifest.json    schema version, labels, embedder (name, dim, fingerprint), library versions,
                       training-data hash and size, metrics, threshold, created-at
      head.joblib      the fitted classifier head (a scikit-learn estimator), written by joblib
      routes.toml      the route table the router was trained for (optional)

Loading reads the manifest first: a wrong embedder dimension or fingerprint is refused, a library-version drift
warns. ``head.joblib`` is a pickle: load only artifacts you made or trust.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
from packaging.version import InvalidVersion, Version

from .data import LabelledPrompts
from .embed import Embedder, make_embedder
from .exceptions import ArtifactError
from .model import EmbeddingClassifier, RouterModel

__all__ = [
    "CURRENT",
    "MANIFEST",
    "SCHEMA_VERSION",
    "Artifact",
    "LibraryVersionWarning",
    "library_versions",
    "load",
    "resolve",
    "save",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
HEAD = "head.joblib"
ROUTES = "routes.toml"
CURRENT = "CURRENT"
_LIBRARIES = ("router-ml", "scikit-learn", "numpy", "joblib", "sentence-transformers", "torch", "transformers")


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


@dataclass
class Artifact:
    """A loaded router artifact: the fitted model plus what its manifest says."""

    model: RouterModel
    manifest: dict[str, Any]
    path: Path

    @property
    def threshold(self) -> float:
        """Abstention threshold saved at training time."""
        return float(self.manifest["threshold"])

    @property
    def router_id(self) -> str:
        """Short id of this router version: hash of its training data, embedder, head and creation time."""
        return str(self.manifest["router_id"])

    @property
    def routes_path(self) -> Path | None:
        """The route table saved with the artifact, if any."""
        path = self.path / ROUTES
        return path if path.is_file() else None


def save(
    model: RouterModel,
    path: str | Path,
    *,
    threshold: float,
    data: LabelledPrompts | None = None,
    metrics: dict[str, Any] | None = None,
    routes_file: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a fitted :class:`RouterModel` as an artifact directory; returns its path."""
    model._check_fitted()
    assert model.embedder is not None
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise ArtifactError(f"{path} exists and is not empty; choose a new --out directory or pass overwrite=True")
    path.mkdir(parents=True, exist_ok=True)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    data_hash = data.fingerprint() if data is not None else None
    embedder = model.embedder.describe()
    router_id = joblib.hash([data_hash, embedder, created, model.head_.get_params()])[:16]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "router_id": router_id,
        "created_at": created,
        "labels": [str(c) for c in model.classes_],
        "threshold": float(threshold),
        "embedder": embedder,
        "head": {"class": type(model.head_).__name__, "file": HEAD, "params": model.head_.get_params()},
        "training_data": None if data is None else {"sha256": data_hash, "size": len(data), "counts": data.counts()},
        "metrics": metrics or {},
        "library_versions": library_versions(),
    }
    joblib.dump(model.head_, path / HEAD)
    if routes_file is not None:
        shutil.copyfile(routes_file, path / ROUTES)
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to the manifest")


def resolve(path: str | Path) -> Path:
    """An artifact directory, following a models directory's ``CURRENT`` pointer (see :mod:`router_ml.retrain`)."""
    path = Path(path)
    pointer = path / CURRENT
    if not pointer.is_file():
        return path
    target = path / pointer.read_text(encoding="utf-8").strip()
    if not (target / MANIFEST).is_file():
        raise ArtifactError(f"{pointer} points to {target}, which is not a router artifact; fix or rewrite CURRENT")
    return target


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check an artifact's ``manifest.json``."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise ArtifactError(f"{path} is not a router artifact: {MANIFEST} not found. Train one with `router-ml train`.")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{file} is corrupt ({exc}); retrain the router") from None
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{file}: schema_version {version!r}, this router-ml reads schema {SCHEMA_VERSION}; "
            "retrain the router with this version"
        )
    missing = {"labels", "threshold", "embedder", "router_id"} - set(manifest)
    if missing:
        raise ArtifactError(f"{file}: missing fields {sorted(missing)}; retrain the router")
    return manifest


def _warn_on_drift(saved: dict[str, str | None]) -> None:
    installed = library_versions()
    for name, then in saved.items():
        now = installed.get(name)
        if then is None or now is None:
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


def load(path: str | Path, *, embedder: Embedder | None = None, backend: str | None = None) -> Artifact:
    """Load an artifact directory, checking the embedder against the manifest before anything else.

    Args:
        path (str | Path): the artifact directory.
        embedder (Embedder | None): use this embedder instead of building the one the manifest names.
        backend (str | None): build the manifest's model with another backend (e.g. a faster runtime).

    Raises:
        ArtifactError: missing or corrupt files, or an embedder whose dimension or weights differ.
    """
    path = resolve(path)
    manifest = read_manifest(path)
    saved = manifest["embedder"]
    if embedder is None:
        embedder = make_embedder(saved["name"], backend or saved.get("backend", "torch"))
    if embedder.dim != saved["dim"]:
        raise ArtifactError(
            f"{path}: the router was trained on {saved['dim']}-dimensional embeddings from {saved['name']!r}, "
            f"but the embedder {embedder.name!r} gives {embedder.dim}; load it with the embedder it was trained with"
        )
    if embedder.fingerprint != saved["fingerprint"]:
        raise ArtifactError(
            f"{path}: embedder weights differ from the ones the router was trained with "
            f"(fingerprint {embedder.fingerprint[:12]}…, expected {saved['fingerprint'][:12]}…); "
            "retrain the router or load the original embedding model"
        )
    _warn_on_drift(manifest.get("library_versions", {}))
    head_file = path / HEAD
    if not head_file.is_file():
        raise ArtifactError(f"{path}: {HEAD} not found; the artifact is incomplete, retrain the router")
    head = joblib.load(head_file)
    if not isinstance(head, EmbeddingClassifier):
        raise ArtifactError(f"{head_file}: expected an EmbeddingClassifier, found {type(head).__name__}")
    if [str(c) for c in head.classes_] != manifest["labels"]:
        raise ArtifactError(
            f"{path}: head labels {list(head.classes_)} differ from the manifest's {manifest['labels']}"
        )
    model = RouterModel(embedder=embedder, head=EmbeddingClassifier(**head.get_params()))
    model.head_ = head
    model.classes_ = head.classes_
    return Artifact(model=model, manifest=manifest, path=path)
