from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from router_ml import artifact
from router_ml.artifact import LibraryVersionWarning, library_versions
from router_ml.exceptions import ArtifactError
from router_ml.route_table import bundled_routes_path


def test_round_trip_gives_identical_predictions(small_artifact, small_result, small_data, embedder):
    loaded = artifact.load(small_artifact, embedder=embedder)
    texts = small_data.texts[:40]
    np.testing.assert_array_equal(loaded.model.predict_proba(texts), small_result.model.predict_proba(texts))
    assert loaded.threshold == small_result.threshold


def test_manifest_contents(small_artifact, small_data, small_result):
    manifest = json.loads((small_artifact / "manifest.json").read_text())
    assert set(manifest) == {
        "schema_version",
        "router_id",
        "created_at",
        "labels",
        "threshold",
        "embedder",
        "head",
        "files",
        "training_data",
        "metrics",
        "library_versions",
        "onnx_export",  # trained on the ONNX backend, the artifact carries its export
    }
    assert {f"onnx/{name}" for name in ("export.json", "tokenizer.json", "model.onnx")} <= set(manifest["files"])
    assert manifest["onnx_export"]["graphs"]["onnx"]["sha256"] == manifest["embedder"]["export"]["sha256"]
    assert manifest["schema_version"] == artifact.SCHEMA_VERSION
    assert manifest["labels"] == ["code", "creative", "reasoning", "simple"]
    saved = manifest["embedder"]
    assert {k: saved[k] for k in ("backend", "name", "dim", "fingerprint")} == {
        "backend": "onnx",  # training's default backend: the float ONNX export of the same weights
        "name": "all-MiniLM-L6-v2",
        "dim": 384,
        "fingerprint": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    }
    assert saved["export"]["file"] == "model.onnx" and len(saved["export"]["sha256"]) == 64
    assert manifest["training_data"] == {
        "sha256": small_data.fingerprint(),
        "size": len(small_data),
        "counts": small_data.counts(),
    }
    assert manifest["library_versions"] == library_versions()
    assert manifest["metrics"]["cv_macro_f1"] == small_result.metrics["cv_macro_f1"]
    assert manifest["head"] == {
        "class": "EmbeddingClassifier",
        "format": "router-ml/head",
        "format_version": 1,
        "files": ["head.json", "head.safetensors"],
        "params": small_result.model.head_.get_params(),
    }
    # every file the loader reads is listed with its SHA-256 and size, and nothing else is in the directory
    assert sorted(manifest["files"]) == [
        "head.json",
        "head.safetensors",
        "neighbours.json",
        "neighbours.safetensors",
        "onnx/export.json",
        "onnx/model.int8.onnx",
        "onnx/model.onnx",
        "onnx/tokenizer.json",
        "routes.toml",
    ]
    for name, entry in manifest["files"].items():
        data = (small_artifact / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert sorted(p.name for p in small_artifact.iterdir()) == [
        "head.json",
        "head.safetensors",
        "manifest.json",
        "neighbours.json",
        "neighbours.safetensors",
        "onnx",
        "routes.toml",
    ]
    assert (small_artifact / "routes.toml").read_bytes() == bundled_routes_path().read_bytes()


def _tampered(src, tmp_path, edit):
    dst = tmp_path / "router"
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    edit(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_wrong_dimension_is_refused(small_artifact, tmp_path, embedder):
    path = _tampered(small_artifact, tmp_path, lambda m: m["embedder"].update(dim=768))
    with pytest.raises(ArtifactError, match="768-dimensional embeddings"):
        artifact.load(path, embedder=embedder)


def test_wrong_fingerprint_is_refused(small_artifact, tmp_path, embedder):
    path = _tampered(small_artifact, tmp_path, lambda m: m["embedder"].update(fingerprint="0" * 64))
    with pytest.raises(ArtifactError, match="embedder weights differ"):
        artifact.load(path, embedder=embedder)


def test_library_drift_warns(small_artifact, tmp_path, embedder):
    path = _tampered(small_artifact, tmp_path, lambda m: m["library_versions"].update({"scikit-learn": "0.24.2"}))
    with pytest.warns(LibraryVersionWarning, match="scikit-learn 0.24.2"):
        artifact.load(path, embedder=embedder)


def test_schema_and_missing_files(small_artifact, tmp_path, embedder):
    with pytest.raises(ArtifactError, match=r"manifest\.json not found"):
        artifact.load(tmp_path)
    path = _tampered(small_artifact, tmp_path, lambda m: m.update(schema_version=99))
    with pytest.raises(ArtifactError, match="schema_version 99"):
        artifact.load(path, embedder=embedder)


def test_missing_head_file(small_artifact, tmp_path, embedder):
    path = _tampered(small_artifact, tmp_path, lambda m: None)
    (path / "head.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"head\.safetensors is missing: the manifest lists it"):
        artifact.load(path, embedder=embedder)


def test_refuses_to_overwrite(small_result, small_artifact):
    with pytest.raises(ArtifactError, match="exists and is not empty"):
        artifact.save(small_result.model, small_artifact, threshold=0.1)
