"""Save and load a trained router as a directory.

Layout::

    my-router/
      manifest.json    schema version, labels, embedder (name, dim, fingerprint), library versions,
                       training-data hash and size, metrics, threshold, created-at
      head.joblib      the fitted classifier head (a scikit-learn estimator), written by joblib
      routes.toml      the route table the router was trained for (optional)
      onnx/            the embedder exported to ONNX (float and int8), made at first use of an ONNX backend

``manifest.json`` also records, under ``backends``, how the router did on each measured embedder backend
(see :mod:`router_ml.backend_check`); a backend of another numeric family is refused without that measurement.

Loading reads the manifest first: a wrong embedder dimension or fingerprint is refused, a library-version drift
warns. ``head.joblib`` is a pickle: load only artifacts you made or trust.
"""

from __future__ import annotations

import json
import logging
import os
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
from .embed import BACKENDS, PRECISION, Embedder, make_embedder
from .exceptions import ArtifactError, EmbedderError
from .model import EmbeddingClassifier, RouterModel

__all__ = [
    "CURRENT",
    "MACRO_F1_TOLERANCE",
    "MANIFEST",
    "SCHEMA_VERSION",
    "Artifact",
    "LibraryVersionWarning",
    "library_versions",
    "load",
    "resolve",
    "save",
    "write_manifest",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
HEAD = "head.joblib"
ROUTES = "routes.toml"
CURRENT = "CURRENT"
ONNX_DIR = "onnx"
_LIBRARIES = (
    "router-ml",
    "scikit-learn",
    "numpy",
    "joblib",
    "sentence-transformers",
    "torch",
    "transformers",
    "onnxruntime",
)

MACRO_F1_TOLERANCE = 0.01
"""Largest macro-F1 drop (measured by :func:`router_ml.backend_check.measure_backends`) accepted for a backend of
another numeric family than the one the router was trained on."""


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
    """An artifact directory, following a models directory's ``CURRENT`` pointer (see
    :mod:`router_ml.online.retrain`)."""
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


def export_dir(path: Path) -> Path | None:
    """Where an artifact keeps its ONNX export: ``<artifact>/onnx`` if it exists or can be made, else ``None``
    (the shared embedding cache)."""
    folder = path / ONNX_DIR
    return folder if folder.is_dir() or os.access(path, os.W_OK) else None


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Replace an artifact's manifest atomically (a concurrent reader sees the old or the new one)."""
    staging = path / f".{MANIFEST}.{os.getpid()}"
    staging.write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n", encoding="utf-8")
    staging.replace(path / MANIFEST)


def _record_export(path: Path, manifest: dict[str, Any], embedder: Embedder) -> None:
    """Write the ONNX export's fingerprint into the manifest at first use; warn if a later export differs."""
    meta = getattr(embedder, "meta", None)
    if meta is None:
        return
    export = {"source_fingerprint": meta["source_fingerprint"], "graphs": meta["graphs"], "opset": meta["opset"]}
    recorded = manifest.get("onnx_export")
    if recorded is None:
        if os.access(path, os.W_OK):
            manifest["onnx_export"] = export
            write_manifest(path, manifest)
    elif recorded["graphs"] != export["graphs"]:
        warnings.warn(
            f"{path}: the ONNX export in use differs from the one recorded in the manifest (re-exported?); "
            "float ONNX matches torch either way, but onnx-int8 must be measured again with `router-ml backends`",
            RuntimeWarning,
            stacklevel=4,
        )


def _backend_embedder(path: Path, name: str, backend: str, fallback_backend: str | None) -> Embedder:
    runs_export = backend in BACKENDS and BACKENDS[backend].graph_file is not None
    kwargs = {"export_dir": export_dir(path)} if runs_export else {}
    try:
        embedder = make_embedder(name, backend, **kwargs)
        if runs_export:
            embedder.warm_up()  # export (at first use) and load the graph now, so failures surface here
        return embedder
    except EmbedderError as exc:
        if fallback_backend is None:
            raise
        warnings.warn(f"{exc}; falling back to backend {fallback_backend!r} as asked", RuntimeWarning, stacklevel=3)
        return make_embedder(name, fallback_backend)


def check_backend(manifest: dict[str, Any], embedder: Embedder, *, allow_unmeasured: bool = False) -> None:
    """Refuse embeddings of another numeric family than the router was trained on, unless measured good enough.

    Raises:
        ArtifactError: no measurement for this backend, a measurement of another export, or a macro-F1 drop
            larger than ``MACRO_F1_TOLERANCE``.
    """
    trained, backend = manifest["embedder"].get("backend", "torch"), embedder.backend
    if trained not in PRECISION or backend not in PRECISION or PRECISION[trained] == PRECISION[backend]:
        return
    record = manifest.get("backends", {}).get(backend)
    fix = f"measure it with `router-ml backends <artifact> --backend {backend}`, or load it with backend {trained!r}"
    if record is None:
        message = (
            f"this router was trained on {trained} ({PRECISION[trained]}) embeddings and has no measured accuracy "
            f"on {backend} ({PRECISION[backend]}) embeddings, which differ slightly; {fix}"
        )
        if not allow_unmeasured:
            raise ArtifactError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return
    current = embedder.describe().get("export", {}).get("sha256")
    if current != record["export"]["sha256"]:
        raise ArtifactError(
            f"the {backend} graph in use ({str(current)[:12]}…) is not the one measured for this router "
            f"({record['export']['sha256'][:12]}…); {fix}"
        )
    if record["macro_f1_delta"] < -MACRO_F1_TOLERANCE:
        raise ArtifactError(
            f"on {backend} embeddings this router's macro-F1 was {record['macro_f1']:.3f}, "
            f"{-record['macro_f1_delta']:.3f} below {trained} ({record['reference_macro_f1']:.3f}); more than the "
            f"{MACRO_F1_TOLERANCE} tolerated. Load it with backend {trained!r} or 'onnx'"
        )


def load(
    path: str | Path,
    *,
    embedder: Embedder | None = None,
    backend: str | None = None,
    fallback_backend: str | None = None,
    allow_unmeasured: bool = False,
) -> Artifact:
    """Load an artifact directory, checking the embedder against the manifest before anything else.

    Args:
        path (str | Path): the artifact directory (or a models directory with a ``CURRENT`` pointer).
        embedder (Embedder | None): use this embedder instead of building the one the manifest names.
        backend (str | None): run the manifest's model on another backend (``"onnx"``, ``"onnx-int8"``); the
            ONNX export is made at first use, into ``<artifact>/onnx`` when the folder is writable.
        fallback_backend (str | None): if building ``backend`` fails (say, the export), warn and use this one
            instead; by default the failure is raised.
        allow_unmeasured (bool): accept a backend of another numeric family with no recorded measurement
            (warns). Default False: see :func:`check_backend`.

    Raises:
        ArtifactError: missing or corrupt files, an embedder whose dimension or weights differ, or a backend the
            router is not measured good enough on.
    """
    path = resolve(path)
    manifest = read_manifest(path)
    saved = manifest["embedder"]
    if embedder is None:
        embedder = _backend_embedder(path, saved["name"], backend or saved.get("backend", "torch"), fallback_backend)
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
    check_backend(manifest, embedder, allow_unmeasured=allow_unmeasured)
    _record_export(path, manifest, embedder)
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
