"""An artifact's embedder backends: its ONNX export (made, checked and recorded at first use) and the check that
refuses a backend of another numeric family unless measured good enough (see :mod:`router_ml.backend_check`).

The export lives in ``<artifact>/onnx`` when the artifact is writable (else in the shared embedding cache). Once
recorded, its files are in the manifest's ``files`` and checked at every load like the others. Before that (made
at first use, or copied in), it is adopted at the first use of an ONNX backend: its file names and sizes are
checked and its files hashed (:func:`.integrity.export_entries`) before the embedder reads any of them,
and the hashes are recorded once the backend is accepted.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from ..embed import BACKENDS, ONNX_BACKENDS, PRECISION, Embedder, check_model_backend, make_embedder, model_backends
from ..exceptions import ArtifactError, EmbedderError
from .integrity import EXPORT_FILES, ONNX_DIR, export_entries
from .manifest import write_manifest

__all__ = [
    "FASTEST",
    "MACRO_F1_TOLERANCE",
    "RUN_BACKENDS",
    "backend_embedder",
    "bundle_export",
    "check_backend",
    "export_dir",
    "fastest_backend",
    "record_export",
]

FASTEST = "fastest"
"""The ``backend`` that :func:`router_ml.artifact.load` resolves with :func:`fastest_backend`."""
RUN_BACKENDS = (FASTEST, *BACKENDS)
"""What ``--backend`` of the commands that route accepts."""

MACRO_F1_TOLERANCE = 0.01
"""Largest macro-F1 drop (measured by :func:`router_ml.backend_check.measure_backends`) accepted for a backend of
another numeric family than the one the router was trained on."""
_EXPORT_KEYS = {f"{ONNX_DIR}/{name}" for name in EXPORT_FILES}


def export_dir(path: Path) -> Path | None:
    """Where an artifact keeps its ONNX export: ``<artifact>/onnx`` if it exists or can be made, else ``None``
    (the shared embedding cache)."""
    folder = path / ONNX_DIR
    return folder if folder.is_dir() or os.access(path, os.W_OK) else None


def _export_recorded(path: Path, manifest: dict[str, Any]) -> bool:
    """The manifest lists the export and its files are there (so the load's integrity check covered them)."""
    return set(manifest["files"]) >= _EXPORT_KEYS and (path / ONNX_DIR).is_dir()


def backend_embedder(
    path: Path, manifest: dict[str, Any], backend: str, *, checked: bool = False
) -> tuple[Embedder, dict[str, dict[str, Any]] | None]:
    """Build the embedder the manifest names on ``backend``, adopting the artifact's ONNX export if needed.

    Args:
        path (Path): the artifact directory.
        manifest (dict): its manifest, as read.
        backend (str): the embedder backend.
        checked (bool): the caller just checked the artifact's files against the manifest (as
            :func:`router_ml.artifact.load` does), so a recorded export's graph is not hashed a second time.

    Returns:
        tuple: the embedder (its graph loaded), and the entries of an export adopted now (to record with
        :func:`record_export` once the backend is accepted), or ``None``.

    Raises:
        EmbedderError: the backend is unknown or cannot be built (the export fails, a leftover folder).
        ArtifactError: an unrecorded ``onnx/`` that is not exactly an export.
    """
    name, spec = manifest["embedder"]["name"], BACKENDS.get(backend)
    check_model_backend(name, backend)  # e.g. USE runs only on numpy: refused before any export is tried
    if spec is None or spec.graph_file is None:
        return make_embedder(name, backend), None
    folder = export_dir(path)
    adopted, kwargs = None, {}
    if folder is not None and not _export_recorded(path, manifest):
        from ..embed.onnx_export import export_onnx

        export_onnx(name, folder)  # an existing complete export is kept (nothing in it is read here)
        adopted = export_entries(path)
    elif folder is not None and checked:
        kwargs["verify"] = False  # the load just checked every file of the export against the manifest
    embedder = make_embedder(name, backend, export_dir=folder, **kwargs)
    embedder.warm_up()  # export (at first use) and load the graph now, so failures surface here
    return embedder, adopted


def _export_record(meta: dict[str, Any]) -> dict[str, Any]:
    """What the manifest keeps of an export under ``onnx_export``."""
    return {"source_fingerprint": meta["source_fingerprint"], "graphs": meta["graphs"], "opset": meta["opset"]}


def bundle_export(embedder: Embedder, path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Put the ONNX export an ONNX-backed ``embedder`` runs into ``<artifact>/onnx`` (unless that folder already
    holds the same export) and return its manifest entries and record: an artifact trained on ONNX carries its
    graph, checked at every load like its other files. Other embedders: ``({}, None)``."""
    folder, meta = getattr(embedder, "folder", None), getattr(embedder, "meta", None)
    if folder is None or meta is None:
        return {}, None
    source, target = Path(folder), path / ONNX_DIR
    meta_name = EXPORT_FILES[0]  # export.json: names every graph's hash
    if target.resolve() != source.resolve():
        same = (target / meta_name).is_file() and (target / meta_name).read_bytes() == (source / meta_name).read_bytes()
        if not same:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for name in EXPORT_FILES:
                shutil.copyfile(source / name, target / name)
    entries = export_entries(path)
    return entries, _export_record(meta)


def record_export(
    path: Path, manifest: dict[str, Any], embedder: Embedder, adopted: dict[str, dict[str, Any]] | None
) -> None:
    """Record an adopted export's files and fingerprint in the manifest (when the artifact is writable); warn
    if the export in use differs from the recorded one."""
    meta = getattr(embedder, "meta", None)
    if meta is None:
        return
    export = _export_record(meta)
    recorded = manifest.get("onnx_export")
    if adopted is not None or recorded is None:
        if os.access(path, os.W_OK):
            if adopted is not None:
                files = {k: v for k, v in manifest["files"].items() if k not in _EXPORT_KEYS}
                manifest["files"] = {**files, **adopted}
            manifest["onnx_export"] = export
            write_manifest(path, manifest)
    elif recorded["graphs"] != export["graphs"]:
        warnings.warn(
            f"{path}: the ONNX export in use differs from the one recorded in the manifest (re-exported?); "
            "float ONNX matches torch either way, but onnx-int8 must be measured again with `router-ml backends`",
            RuntimeWarning,
            stacklevel=4,
        )


def open_backend(
    path: Path, manifest: dict[str, Any], backend: str, fallback_backend: str | None
) -> tuple[Embedder, dict[str, dict[str, Any]] | None]:
    """:func:`backend_embedder` for a load that has just checked the files, falling back (with a warning) to
    ``fallback_backend`` if building fails."""
    try:
        return backend_embedder(path, manifest, backend, checked=True)
    except EmbedderError as exc:
        if fallback_backend is None:
            raise
        warnings.warn(f"{exc}; falling back to backend {fallback_backend!r} as asked", RuntimeWarning, stacklevel=3)
        return backend_embedder(path, manifest, fallback_backend, checked=True)


def check_backend(manifest: dict[str, Any], embedder: Embedder, *, allow_unmeasured: bool = False) -> None:
    """Refuse embeddings of another numeric family than the router was trained on, unless measured good enough.

    Raises:
        ArtifactError: no measurement for this backend, a measurement of another export, or a macro-F1 drop
            larger than ``MACRO_F1_TOLERANCE``.
    """
    trained, backend = manifest["embedder"].get("backend", "torch"), embedder.backend
    if trained not in PRECISION or backend not in PRECISION or PRECISION[trained] == PRECISION[backend]:
        return
    unmeasured = manifest.get("backends", {}).get(backend) is None
    problem = _measured_problem(manifest, backend, embedder.describe().get("export", {}).get("sha256"))
    if problem is None:
        return
    if unmeasured and allow_unmeasured:
        warnings.warn(problem, RuntimeWarning, stacklevel=3)
        return
    raise ArtifactError(problem)


def _measured_problem(manifest: dict[str, Any], backend: str, graph_sha256: str | None) -> str | None:
    """Why ``backend`` may not run this router unmeasured-family-wise (``None``: it may): no measurement, a
    measurement of another graph, or a macro-F1 drop over the tolerance."""
    trained = manifest["embedder"].get("backend", "torch")
    record = manifest.get("backends", {}).get(backend)
    fix = f"measure it with `router-ml backends <artifact> --backend {backend}`, or load it with backend {trained!r}"
    if record is None:
        return (
            f"this router was trained on {trained} ({PRECISION[trained]}) embeddings and has no measured accuracy "
            f"on {backend} ({PRECISION[backend]}) embeddings, which differ slightly; {fix}"
        )
    if graph_sha256 != record["export"]["sha256"]:
        return (
            f"the {backend} graph in use ({str(graph_sha256)[:12]}…) is not the one measured for this router "
            f"({record['export']['sha256'][:12]}…); {fix}"
        )
    if record["macro_f1_delta"] < -MACRO_F1_TOLERANCE:
        return (
            f"on {backend} embeddings this router's macro-F1 was {record['macro_f1']:.3f}, "
            f"{-record['macro_f1_delta']:.3f} below {trained} ({record['reference_macro_f1']:.3f}); more than the "
            f"{MACRO_F1_TOLERANCE} tolerated. Load it with backend {trained!r} or 'onnx'"
        )
    return None


def fastest_backend(manifest: dict[str, Any]) -> tuple[str, str]:
    """The fastest backend this artifact has verified, and why: ``onnx-int8`` once ``router-ml backends`` measured
    it within :data:`MACRO_F1_TOLERANCE` on the recorded export; else ``onnx`` when the artifact holds its export
    or was trained on it (float ONNX gives torch's embeddings); else the backend it was trained on."""
    trained = manifest["embedder"].get("backend", "torch")
    export = manifest.get("onnx_export")
    for other in ONNX_BACKENDS if export is not None else ():
        graph = export.get("graphs", {}).get(other)
        if PRECISION[other] == PRECISION.get(trained) or graph is None:
            continue
        if _measured_problem(manifest, other, graph["sha256"]) is None:
            delta = manifest["backends"][other]["macro_f1_delta"]
            return other, f"measured by `router-ml backends`: macro-F1 {delta:+.4f} against {trained}"
    if export is not None or trained == "onnx":
        return "onnx", "the float ONNX export: the same embeddings as torch"
    if model_backends(manifest["embedder"]["name"]) == (trained,):
        return trained, f"the only backend of {manifest['embedder']['name']}"
    return trained, "the backend it was trained on; `router-ml backends` exports and measures faster ones"
