"""Integrity of an artifact directory: what it may hold, and the SHA-256 and size of every file the loader reads.

The manifest lists each file the loader reads (``files``: path → SHA-256 and size). :func:`check_files` checks the
directory against that list before anything in it is parsed: a listed file that is missing, of another size or
hash, not a regular file, or over its size limit is refused, and so is any entry the artifact may not hold.

What an artifact directory may hold:

- ``manifest.json`` (the list itself) and the files it lists, all from :data:`ALLOWED_FILES`: the data-only
  category head (``head.json``, ``head.safetensors``) and/or the success heads (``success.json``,
  ``success.safetensors``), the training neighbours (``neighbours.json``, ``neighbours.safetensors``; each pair
  both or neither), ``routes.toml``, and the ONNX export in ``onnx/``;
- ``onnx/`` before its export is recorded (made at first use, or copied in): never read until an ONNX backend
  adopts it, which checks its file names and sizes, hashes it and records it (:func:`export_entries`);
- report entries the loader never reads, outside the check: ``eval/`` and ``eval-*/`` folders (``router-ml
  eval``) and ``retrain-report.json`` (retraining);
- transient staging entries of an atomic write in progress (``.manifest.json.<pid>``, ``.onnx.export-<pid>``).

Anything else is refused, so a file planted in an artifact is noticed instead of silently kept.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from ..embed import GRAPH_FILES
from ..exceptions import ArtifactError

__all__ = [
    "ALLOWED_FILES",
    "EXPORT_FILES",
    "MAX_BYTES",
    "check_files",
    "export_entries",
    "file_entry",
    "is_report_entry",
    "read_bounded",
    "read_listed",
    "read_tensors",
    "refuse_unexpected",
    "unexpected_entries",
    "validate_listing",
]

MANIFEST = "manifest.json"
HEAD_JSON = "head.json"
HEAD_TENSORS = "head.safetensors"
ROUTES = "routes.toml"
NEIGHBOURS_JSON = "neighbours.json"
NEIGHBOURS_TENSORS = "neighbours.safetensors"
SUCCESS_JSON = "success.json"
SUCCESS_TENSORS = "success.safetensors"
ONNX_DIR = "onnx"
EXPORT_FILES = ("export.json", "tokenizer.json", *sorted(GRAPH_FILES.values()))
"""The files of a complete ONNX export (see :mod:`router_ml.embed.onnx_export`)."""
REPORT_FILES = frozenset({"retrain-report.json"})
_REPORT_DIR = re.compile(r"^eval(-[A-Za-z0-9._-]+)?$")
_TRANSIENT = re.compile(rf"^\.({re.escape(MANIFEST)}\.\d+|{ONNX_DIR}\.export-\d+)$")
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".npy", ".dill")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MiB = 1 << 20

MAX_BYTES: dict[str, int] = {
    MANIFEST: 16 * _MiB,
    HEAD_JSON: 256 * _MiB,
    HEAD_TENSORS: 1024 * _MiB,
    ROUTES: 1 * _MiB,
    NEIGHBOURS_JSON: 256 * _MiB,
    NEIGHBOURS_TENSORS: 1024 * _MiB,
    SUCCESS_JSON: 16 * _MiB,
    SUCCESS_TENSORS: 1024 * _MiB,
    f"{ONNX_DIR}/export.json": 1 * _MiB,
    f"{ONNX_DIR}/tokenizer.json": 64 * _MiB,
    **{f"{ONNX_DIR}/{name}": 4096 * _MiB for name in GRAPH_FILES.values()},
}
"""Largest size accepted for each file, checked before it is read."""
ALLOWED_FILES = frozenset(MAX_BYTES) - {MANIFEST}
"""Every path the manifest may list."""
_EXPORT_PATHS = frozenset(f"{ONNX_DIR}/{name}" for name in EXPORT_FILES)
_PAIRS = (
    frozenset({HEAD_JSON, HEAD_TENSORS}),
    frozenset({NEIGHBOURS_JSON, NEIGHBOURS_TENSORS}),
    frozenset({SUCCESS_JSON, SUCCESS_TENSORS}),
)
"""Each listed both or neither: the category head, the training neighbours (:mod:`.neighbours`), the success
heads (:mod:`.success_format`). An artifact holds a category head, success heads, or both."""


def read_bounded(file: Path, limit: int) -> bytes:
    """The bytes of a regular file no larger than ``limit``, checked before reading (no symbolic links).

    Raises:
        ArtifactError: the file is missing, a link or not a regular file, or larger than ``limit``.
    """
    try:
        info = file.lstat()
    except FileNotFoundError:
        raise ArtifactError(f"{file} not found; the artifact is incomplete: restore it or retrain") from None
    if not stat.S_ISREG(info.st_mode):
        raise ArtifactError(f"{file} is not a regular file (a link or a folder); replace it by the file it names")
    if info.st_size > limit:
        raise ArtifactError(f"{file} is {info.st_size:,} bytes, over the {limit:,} accepted; it is not a router file")
    with file.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ArtifactError(f"{file} grew past {limit:,} bytes while being read; it is not a router file")
    return data


def file_entry(file: Path) -> dict[str, Any]:
    """The manifest entry of a file: ``{"sha256": hex digest, "size": bytes}``."""
    digest, size = hashlib.sha256(), 0
    with file.open("rb") as handle:
        while block := handle.read(_MiB):
            digest.update(block)
            size += len(block)
    return {"sha256": digest.hexdigest(), "size": size}


def is_report_entry(name: str, is_dir: bool) -> bool:
    """A report the loader never reads: an ``eval/`` or ``eval-*/`` folder, or ``retrain-report.json``."""
    return bool(_REPORT_DIR.match(name)) if is_dir else name in REPORT_FILES


def validate_listing(where: Path, files: Any) -> dict[str, dict[str, Any]]:
    """Check the manifest's ``files`` list itself: allowed paths, well-formed digests, sizes within limits.

    Raises:
        ArtifactError: naming the first bad entry.
    """
    if not isinstance(files, Mapping):
        raise ArtifactError(f"{where}: 'files' must map each file to its sha256 and size; retrain the router")
    for name, entry in files.items():
        if name not in ALLOWED_FILES:
            raise ArtifactError(
                f"{where}: lists {name!r}, which is not a file a router artifact holds "
                f"(expected only {sorted(ALLOWED_FILES)}); the manifest was edited: retrain the router"
            )
        if not isinstance(entry, Mapping) or set(entry) != {"sha256", "size"}:
            raise ArtifactError(f"{where}: the entry of {name} must be {{'sha256': ..., 'size': ...}}, got {entry!r}")
        size, digest = entry["size"], entry["sha256"]
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ArtifactError(f"{where}: the sha256 of {name} is not 64 lowercase hex digits: {digest!r:.80}")
        if type(size) is not int or not 0 <= size <= MAX_BYTES[name]:
            raise ArtifactError(
                f"{where}: declares {name} as {size!r:.40} bytes; expected 0 to {MAX_BYTES[name]:,}. "
                "The manifest is corrupt or hostile: retrain the router"
            )
    # a head, success heads, or (an embedder alone, whose quality routes start cold) a route table
    missing = [] if {HEAD_JSON, SUCCESS_JSON, ROUTES} & set(files) else [HEAD_JSON, HEAD_TENSORS]
    missing += [name for pair in _PAIRS for name in sorted(pair) if name not in files and pair & set(files)]
    listed_export = _EXPORT_PATHS & set(files)
    if missing or listed_export not in (set(), _EXPORT_PATHS):
        absent = missing or sorted(_EXPORT_PATHS - listed_export)
        raise ArtifactError(f"{where}: 'files' does not list {absent}; the manifest is incomplete: retrain the router")
    return {name: dict(entry) for name, entry in files.items()}


def unexpected_entries(path: Path, files: Collection[str], export_listed: bool) -> list[str]:
    """Entries of ``path`` an artifact listing ``files`` may not hold (see the module's docstring).

    Args:
        path (Path): the artifact directory.
        files (Collection[str]): the paths the manifest lists.
        export_listed (bool): ``onnx/`` is recorded, so every file in it must be listed.

    Returns:
        list[str]: the unexpected entries, folders ending in ``/``.
    """
    found = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        name, is_dir = entry.name, entry.is_dir(follow_symlinks=False)
        if name == MANIFEST or name in files or is_report_entry(name, is_dir) or _TRANSIENT.match(name):
            continue
        if name == ONNX_DIR and is_dir:
            if export_listed:
                inside = sorted(os.scandir(entry.path), key=lambda e: e.name)
                found += [f"{ONNX_DIR}/{e.name}" for e in inside if f"{ONNX_DIR}/{e.name}" not in files]
            continue  # an export not recorded yet: read only once adopted (see export_entries)
        found.append(name + ("/" if is_dir else ""))
    return found


def refuse_unexpected(path: Path, found: list[str]) -> None:
    """Raise the :class:`ArtifactError` that names unexpected entries and says what to do."""
    pickles = [name for name in found if name.rstrip("/").lower().endswith(_PICKLE_SUFFIXES)]
    hint = (
        f" {pickles} look like pickles: router-ml never loads a pickle from an artifact (an old pickled artifact "
        "is converted with `router-ml migrate ARTIFACT --trust-pickle`, only if you trust it)."
        if pickles
        else ""
    )
    raise ArtifactError(
        f"{path}: unexpected {found}: a router artifact holds only manifest.json, the files it lists, onnx/, "
        f"and reports the loader never reads (eval/, eval-*/, retrain-report.json).{hint} Move them out of the "
        "artifact directory, or retrain into a new one"
    )


def _check_one(path: Path, name: str, entry: Mapping[str, Any], keep: bool) -> bytes | None:
    """Check one listed file's type, size, then SHA-256; its bytes when ``keep`` (hashed as parsed)."""
    file = path / name
    try:
        info = file.lstat()
    except FileNotFoundError:
        raise ArtifactError(
            f"{file} is missing: the manifest lists it. Restore the artifact from where it came from, or retrain"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise ArtifactError(f"{file} is not a regular file (a link or a folder); an artifact holds plain files only")
    if info.st_size != entry["size"]:
        raise ArtifactError(
            f"{file} is {info.st_size:,} bytes, the manifest records {entry['size']:,}: it was truncated, extended "
            "or replaced after saving. Restore the original artifact or retrain; never edit artifact files"
        )
    data = read_bounded(file, entry["size"]) if keep else None
    found = hashlib.sha256(data).hexdigest() if data is not None else file_entry(file)["sha256"]
    if found != entry["sha256"]:
        raise ArtifactError(
            f"{file} has SHA-256 {found[:12]}…, the manifest records {entry['sha256'][:12]}…: the file is corrupt or "
            "was changed after saving. Restore the original artifact or retrain; never edit artifact files"
        )
    return data


def read_tensors(data: bytes, name: str, max_header: int, fail: Callable[[str], Exception]) -> dict[str, Any]:
    """The arrays of a safetensors file's bytes (numpy), its header size checked first (at most ``max_header``
    bytes); a malformed file raises ``fail(message)``, the message naming ``name``."""
    from safetensors.numpy import load as load_tensors

    declared = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 <= declared <= min(len(data) - 8, max_header):
        raise fail(f"{name} has a malformed header (declared {declared:,} bytes)")
    try:
        return load_tensors(data)
    except Exception as exc:  # safetensors raises SafetensorError and others on malformed input
        raise fail(f"{name} cannot be read ({str(exc)[:200]})") from None


def read_listed(path: Path, name: str, files: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The bytes of the listed file ``name``, checked against its manifest entry (size, then SHA-256) as read.

    Raises:
        ArtifactError: the file is missing, not a regular file, or of another size or SHA-256.
    """
    data = _check_one(path, name, files[name], keep=True)
    assert data is not None
    return data


def check_files(path: Path, files: Mapping[str, Mapping[str, Any]], keep: Collection[str] = ()) -> dict[str, bytes]:
    """Check an artifact directory against its manifest's validated ``files`` (see :func:`validate_listing`).

    An ONNX export whose listed files are all gone (``onnx/`` deleted to export again) is not an error: it is
    exported and recorded again at the next use of an ONNX backend.

    Args:
        path (Path): the artifact directory.
        files (Mapping): the manifest's ``files``.
        keep (Collection[str]): listed files whose checked bytes to return (parse those, not the file again).

    Returns:
        dict[str, bytes]: the bytes of each file in ``keep`` that the manifest lists.

    Raises:
        ArtifactError: an unexpected entry, or a listed file missing, of another size or SHA-256, or not a file.
    """
    export = [name for name in files if name in _EXPORT_PATHS]
    if export and not any((path / name).exists() or (path / name).is_symlink() for name in export):
        files = {name: entry for name, entry in files.items() if name not in _EXPORT_PATHS}
    found = unexpected_entries(path, files, export_listed=any(name in _EXPORT_PATHS for name in files))
    if found:
        refuse_unexpected(path, found)
    kept = {}
    for name, entry in sorted(files.items()):
        data = _check_one(path, name, entry, keep=name in keep)
        if data is not None:
            kept[name] = data
    return kept


def export_entries(path: Path) -> dict[str, dict[str, Any]]:
    """Check an ONNX export not recorded yet (``<artifact>/onnx``) and return its manifest entries.

    The folder must hold exactly the files of a complete export, each a regular file within its size limit.

    Raises:
        ArtifactError: another file in the folder, a missing one, a link, or a file over its limit.
    """
    folder = path / ONNX_DIR
    names = sorted(entry.name for entry in os.scandir(folder))
    if names != sorted(EXPORT_FILES):
        raise ArtifactError(
            f"{folder} holds {names}, an ONNX export holds exactly {sorted(EXPORT_FILES)}; delete {folder} to export "
            "again at the next use of an ONNX backend"
        )
    entries = {}
    for name in EXPORT_FILES:
        key, file = f"{ONNX_DIR}/{name}", folder / name
        info = file.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES[key]:
            raise ArtifactError(f"{file} is a link, a folder or over {MAX_BYTES[key]:,} bytes; delete {folder}")
        entries[key] = file_entry(file)
    return entries
