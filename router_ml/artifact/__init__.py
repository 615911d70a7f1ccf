"""Router artifacts: a directory of data only (JSON and safetensors), every file's hash checked before parsing.

- :mod:`.directory`: :func:`save` and :func:`load` (the public API, re-exported here);
- :mod:`.manifest` and :mod:`.integrity`: the manifest, the listed files' SHA-256 and sizes, bounded reads;
- :mod:`.head_format`, :mod:`.head_schema`, :mod:`.head_rebuild`: the classifier head as JSON + tensors, its
  validation, and the fitted scikit-learn objects rebuilt from that data alone;
- :mod:`.backends`: running an artifact on another embedder backend and recording its ONNX export;
- :mod:`.neighbours`: a bounded sample of the training prompts and their embeddings, for explanations;
- :mod:`.legacy`: converting a trusted pickled (schema 1) artifact, explicitly.
"""

from __future__ import annotations

from .directory import (
    CURRENT,
    FASTEST,
    MACRO_F1_TOLERANCE,
    MANIFEST,
    SCHEMA_VERSION,
    Artifact,
    LibraryVersionWarning,
    check_backend,
    export_dir,
    fastest_backend,
    library_versions,
    load,
    migrate,
    read_manifest,
    resolve,
    save,
    write_manifest,
)

__all__ = [
    "CURRENT",
    "FASTEST",
    "MACRO_F1_TOLERANCE",
    "MANIFEST",
    "SCHEMA_VERSION",
    "Artifact",
    "LibraryVersionWarning",
    "check_backend",
    "export_dir",
    "fastest_backend",
    "library_versions",
    "load",
    "migrate",
    "read_manifest",
    "resolve",
    "save",
    "write_manifest",
]
