"""Measure a trained router on other embedder backends and record the result in its manifest.

A router trained on float32 (torch) embeddings gives the same decisions on the float ONNX export, but int8
embeddings differ slightly (cosine ≈ 0.99), so :func:`router_ml.artifact.load` refuses ``onnx-int8`` for a
float-trained router until :func:`measure_backends` has compared both on the same labelled data and recorded
the macro-F1 difference (and the exact graph measured) in ``manifest.json``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .artifact import load as load_artifact
from .artifact.backends import MACRO_F1_TOLERANCE, backend_embedder, record_export
from .artifact.manifest import read_manifest, resolve, write_manifest
from .data import LabelledPrompts
from .embed import ONNX_BACKENDS, embed_texts
from .metrics import classification_report

__all__ = ["BackendReport", "measure_backends"]


@dataclass(frozen=True)
class BackendReport:
    """How a router did on one backend's embeddings, against the backend it was trained on, on the same data."""

    backend: str
    reference_backend: str
    n: int
    macro_f1: float
    reference_macro_f1: float
    macro_f1_delta: float
    label_agreement: float
    cosine_mean: float
    cosine_min: float
    seconds: float
    export: dict[str, str]

    @property
    def accepted(self) -> bool:
        """Within ``MACRO_F1_TOLERANCE`` of the reference backend."""
        return self.macro_f1_delta >= -MACRO_F1_TOLERANCE

    def format(self) -> str:
        """One table row."""
        verdict = "ok" if self.accepted else f"REFUSED (drop > {MACRO_F1_TOLERANCE})"
        return (
            f"{self.backend:<10} macro-F1 {self.macro_f1:.4f} vs {self.reference_backend} {self.reference_macro_f1:.4f}"
            f" (Δ {self.macro_f1_delta:+.4f}), same label {self.label_agreement:.2%}, cosine mean "
            f"{self.cosine_mean:.4f} min {self.cosine_min:.4f}, {self.n / self.seconds:.0f} prompts/s  {verdict}"
        )


def measure_backends(
    path: str | Path, data: LabelledPrompts, backends: Sequence[str] = ONNX_BACKENDS, *, dataset: str = ""
) -> list[BackendReport]:
    """Export the router's embedder to each backend, score it on ``data`` against the trained backend, and record
    the reports in the manifest (``backends``), which lets :func:`router_ml.artifact.load` accept them.

    Returns:
        list[BackendReport]: one per backend, in order.
    """
    path = resolve(path)
    reference = load_artifact(path)
    model = reference.model
    assert model.embedder is not None
    reference_X = embed_texts(model.embedder, data.texts)
    reference_labels = model.classes_[np.argmax(model.predict_proba_embeddings(reference_X, data.texts), axis=1)]
    reference_f1 = classification_report(data.labels, list(reference_labels)).macro_f1
    reports = []
    for backend in backends:
        manifest = read_manifest(path)  # the ONNX export, once adopted and recorded, is in its file list
        embedder, adopted = backend_embedder(path, manifest, backend)
        record_export(path, manifest, embedder, adopted)
        started = time.perf_counter()
        X = embedder.encode(data.texts, batch_size=32, show_progress=True)
        seconds = time.perf_counter() - started
        labels = model.classes_[np.argmax(model.predict_proba_embeddings(X, data.texts), axis=1)]
        cosine = np.sum(X * reference_X, axis=1)
        f1 = classification_report(data.labels, list(labels)).macro_f1
        reports.append(
            BackendReport(
                backend=backend,
                reference_backend=model.embedder.backend,
                n=len(data),
                macro_f1=f1,
                reference_macro_f1=reference_f1,
                macro_f1_delta=f1 - reference_f1,
                label_agreement=float(np.mean(labels == reference_labels)),
                cosine_mean=float(cosine.mean()),
                cosine_min=float(cosine.min()),
                seconds=seconds,
                export=embedder.describe().get("export", {}),
            )
        )
    manifest = read_manifest(path)
    recorded = manifest.setdefault("backends", {})
    for report in reports:
        recorded[report.backend] = {**asdict(report), "dataset": dataset, "data_sha256": data.fingerprint()}
    write_manifest(path, manifest)
    return reports
