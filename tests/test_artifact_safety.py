"""Loading an artifact never runs code from it, and refuses a changed, missing, unexpected or hostile file.

Most tests use the torch-trained small artifact, which holds no ONNX export: they plant one themselves.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors
from sklearn.base import clone

from router_ml import artifact
from router_ml.artifact.head_format import decode_head, encode_head
from router_ml.artifact.integrity import EXPORT_FILES, file_entry
from router_ml.embed import embed_texts
from router_ml.embed.onnx_export import export_onnx
from router_ml.exceptions import ArtifactError
from router_ml.fast_head import LinearHead
from router_ml.model import EmbeddingClassifier, RouterModel
from router_ml.router import Router

LABELS = ["code", "creative", "reasoning", "simple"]


class _Payload:
    """Unpickling this writes ``sentinel``: what a crafted pickle planted in an artifact would do."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({self.sentinel!r}, 'w').write('the artifact ran code')",)


@pytest.fixture(scope="module")
def small_X(small_result, small_data, embedder) -> np.ndarray:
    """The small data's embeddings, from the cache training filled."""
    return embed_texts(embedder, small_data.texts)


def _copy(src: Path, tmp_path: Path, name: str = "router") -> Path:
    return Path(shutil.copytree(src, tmp_path / name))


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest))


def _relist(path: Path, name: str, data: bytes) -> None:
    """Write ``data`` as ``name`` and record it in the manifest, as a consistent (buggy or hostile) writer would:
    the integrity check passes, so what follows tests the parser."""
    (path / name).write_bytes(data)
    manifest = _manifest(path)
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    _write_manifest(path, manifest)


def _edit_tensors(path: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    tensors = load_tensors((path / "head.safetensors").read_bytes())
    edit(tensors)
    _relist(path, "head.safetensors", save_tensors(tensors))


def _edit_structure(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    structure = json.loads((path / "head.json").read_bytes())
    edit(structure)
    _relist(path, "head.json", json.dumps(structure).encode())


@pytest.fixture(scope="module")
def full_artifact(torch_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small artifact plus eval/ and eval-dev/ reports, retrain-report.json, and an onnx/ folder recorded in
    its manifest (placeholder bytes: a torch load checks these files, never reads them)."""
    path = _copy(torch_artifact, tmp_path_factory.mktemp("full"))
    for folder in ("eval", "eval-dev"):
        (path / folder).mkdir()
        (path / folder / "report.json").write_text("{}")
    (path / "retrain-report.json").write_text("{}")
    (path / "onnx").mkdir()
    for name in EXPORT_FILES:
        _relist(path, f"onnx/{name}", f"placeholder {name}".encode())
    return path


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    """A live pickle payload and the sentinel it writes (proved live on a control file first)."""
    folder = tmp_path_factory.mktemp("payload")
    control = folder / "control-sentinel"
    (folder / "control.joblib").write_bytes(pickle.dumps(_Payload(control)))
    joblib.load(folder / "control.joblib")  # what the old loader did with head.joblib
    assert control.read_text() == "the artifact ran code"
    sentinel = folder / "sentinel"
    return pickle.dumps(_Payload(sentinel)), sentinel


ARTIFACT_FILES = ["manifest.json", "head.json", "head.safetensors", "routes.toml"]
ARTIFACT_FILES += [f"onnx/{name}" for name in EXPORT_FILES]
PICKLE_NAMES = ["head.joblib", "head.pkl", "model.pkl", "model.joblib", "model_head.pkl", "classifier.pickle"]
PICKLE_NAMES += ["pytorch_model.bin", "onnx/head.pkl"]
REPORTS = ["eval/head.pkl", "eval-dev/model.joblib", "retrain-report.json"]


@pytest.mark.parametrize("name", ARTIFACT_FILES + PICKLE_NAMES + REPORTS)
def test_a_planted_pickle_never_runs(name, full_artifact, payload, embedder, tmp_path):
    data, sentinel = payload
    path = _copy(full_artifact, tmp_path)
    (path / name).write_bytes(data)
    try:
        router = Router.load(path, embedder=embedder)
        decision = router.route("hello")
    except ArtifactError as exc:
        assert name not in REPORTS, f"a report the loader never reads was refused: {exc}"
        assert name in str(exc) or name.split("/")[0] in str(exc) or "manifest.json" in str(exc)
        if name in PICKLE_NAMES and "/" not in name:
            assert "look like pickles" in str(exc) and "never loads a pickle" in str(exc)
    else:
        assert name in REPORTS, f"{name} holding a pickle was accepted"
        assert decision.label in LABELS
    assert not sentinel.exists(), f"unpickled {name}"


def _legacy(model: Any, path: Path, routes: Path) -> Path:
    """A schema 1 artifact as the previous router-ml saved it: a pickled head."""
    path.mkdir(parents=True)
    joblib.dump(model.head_, path / "head.joblib")
    shutil.copyfile(routes, path / "routes.toml")
    manifest = _manifest(routes.parent) | {"schema_version": 1, "router_id": "legacy00000000ab"}
    manifest["head"] = {"class": "EmbeddingClassifier", "file": "head.joblib", "params": model.head_.get_params()}
    manifest["library_versions"]["joblib"] = joblib.__version__
    del manifest["files"]
    _write_manifest(path, manifest)
    return path


def test_the_reported_repro_a_pickled_head_is_refused_before_it_runs(torch_artifact, payload, tmp_path):
    from click.testing import CliRunner

    from router_ml.cli import cli

    data, sentinel = payload
    path = tmp_path / "old"
    path.mkdir()
    shutil.copyfile(torch_artifact / "routes.toml", path / "routes.toml")
    (path / "head.joblib").write_bytes(data)
    _write_manifest(path, _manifest(torch_artifact) | {"schema_version": 1, "head": {"file": "head.joblib"}})
    result = CliRunner().invoke(cli, ["route", "--model", str(path), "hello"])
    assert result.exit_code != 0 and "pickled router artifact" in result.output
    assert not sentinel.exists()
    with pytest.raises(ArtifactError, match="trust_pickle=True"):
        artifact.migrate(path)  # not trusted: not unpickled
    untrusted = CliRunner().invoke(cli, ["migrate", str(path)])
    assert untrusted.exit_code == 2 and "trust" in untrusted.output
    assert not sentinel.exists() and (path / "head.joblib").read_bytes() == data


def test_pickled_artifact_is_refused_and_migrates_exactly_when_trusted(
    small_result, torch_artifact, small_data, small_X, embedder, tmp_path
):
    path = _legacy(small_result.model, tmp_path / "old", torch_artifact / "routes.toml")
    with pytest.raises(ArtifactError, match=r"pickled router artifact.*router-ml migrate ARTIFACT --trust-pickle"):
        artifact.load(path, embedder=embedder)
    from click.testing import CliRunner

    from router_ml.cli import cli

    result = CliRunner().invoke(cli, ["migrate", str(path), "--trust-pickle", "--out", str(tmp_path / "converted")])
    assert result.exit_code == 0 and "is a data-only router artifact" in result.output
    copy = tmp_path / "converted"
    assert (path / "head.joblib").is_file()  # the original is left as it was
    assert artifact.migrate(path, trust_pickle=True) == path
    assert not (path / "head.joblib").exists()
    texts = small_data.texts
    expected = small_result.model.predict_proba_embeddings(small_X, texts)
    for converted in (path, copy):
        loaded = artifact.load(converted, embedder=embedder)
        np.testing.assert_array_equal(loaded.model.predict_proba_embeddings(small_X, texts), expected)
        manifest = _manifest(converted)
        assert loaded.router_id == "legacy00000000ab" and manifest["schema_version"] == artifact.SCHEMA_VERSION
        assert manifest["migrated"]["from_schema_version"] == 1
        assert sorted(manifest["files"]) == ["head.json", "head.safetensors", "routes.toml"]
    before = (path / "manifest.json").read_bytes()
    assert artifact.migrate(path) == path and (path / "manifest.json").read_bytes() == before  # nothing to do


@pytest.mark.parametrize("name", ["head.json", "head.safetensors", "routes.toml"])
def test_one_flipped_byte_is_refused_before_parsing(name, torch_artifact, embedder, tmp_path):
    path = _copy(torch_artifact, tmp_path)
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / name).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{name} has SHA-256 .* the manifest records .*Restore the original"):
        artifact.load(path, embedder=embedder)
    (path / name).write_bytes(bytes(data[:-1]))
    with pytest.raises(ArtifactError, match=rf"{name} is {len(data) - 1:,} bytes, the manifest records {len(data):,}"):
        artifact.load(path, embedder=embedder)


def test_missing_unexpected_and_linked_files_are_refused(torch_artifact, embedder, tmp_path):
    path = _copy(torch_artifact, tmp_path)
    (path / "routes.toml").unlink()
    with pytest.raises(ArtifactError, match=r"routes\.toml is missing: the manifest lists it"):
        artifact.load(path, embedder=embedder)
    path = _copy(torch_artifact, tmp_path, "notes")
    (path / "notes.txt").write_text("hello")
    (path / "cache").mkdir()
    with pytest.raises(ArtifactError, match=r"unexpected \['cache/', 'notes\.txt'\].*Move them out"):
        artifact.load(path, embedder=embedder)
    path = _copy(torch_artifact, tmp_path, "linked")
    (path / "routes.toml").unlink()
    (path / "routes.toml").symlink_to(torch_artifact / "routes.toml")
    with pytest.raises(ArtifactError, match=r"routes\.toml is not a regular file"):
        artifact.load(path, embedder=embedder)


def test_the_manifest_may_list_only_artifact_files(torch_artifact, embedder, tmp_path):
    for name in ("../../etc/passwd", "head.joblib"):
        path = _copy(torch_artifact, tmp_path, name.replace("/", "_"))
        manifest = _manifest(path)
        manifest["files"][name] = {"sha256": "0" * 64, "size": 1}
        _write_manifest(path, manifest)
        with pytest.raises(ArtifactError, match="which is not a file a router artifact holds"):
            artifact.load(path, embedder=embedder)
    path = _copy(torch_artifact, tmp_path, "nan")
    (path / "manifest.json").write_text(
        (path / "manifest.json").read_text().replace('"threshold": ', '"threshold": NaN, "x": ')
    )
    with pytest.raises(ArtifactError, match=r"manifest\.json is not valid JSON"):
        artifact.load(path, embedder=embedder)


def _tensor_edits() -> dict[str, tuple[Callable[[dict[str, np.ndarray]], None], str]]:
    def set_(name: str, value: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, np.ndarray]], None]:
        return lambda t: t.__setitem__(name, value(t[name]))

    return {
        "float16": (set_("logistic.coef", lambda a: a.astype(np.float16)), r"logistic\.coef is float16"),
        "int64": (set_("logistic.coef", lambda a: a.astype(np.int64)), r"logistic\.coef is int64"),
        "shape": (set_("logistic.coef", lambda a: a[:, :-1]), r"logistic\.coef is float\d+ \(4, \d+\), expected"),
        "nan": (set_("logistic.coef", lambda a: np.where(a == a.max(), np.nan, a)), "NaN or infinite"),
        "inf": (set_("vectorizers.1.idf", lambda a: np.where(a == a.max(), np.inf, a)), "NaN or infinite"),
        "missing": (lambda t: t.pop("calibration.beta"), r"lacks \['calibration\.beta'\]"),
        "extra": (lambda t: t.update(extra=np.zeros(1, dtype=np.float32)), r"holds unexpected \['extra'\]"),
        "temperature": (set_("calibration.beta", lambda a: -a), "positive inverse temperature"),
    }


@pytest.mark.parametrize("case", sorted(_tensor_edits()))
def test_hostile_tensors_are_refused(case, torch_artifact, embedder, tmp_path):
    edit, message = _tensor_edits()[case]
    path = _copy(torch_artifact, tmp_path)
    _edit_tensors(path, edit)
    with pytest.raises(ArtifactError, match=message):
        artifact.load(path, embedder=embedder)


def _structure_edits() -> dict[str, tuple[Callable[[dict[str, Any]], None], str]]:
    def vocabulary(s: dict[str, Any]) -> list[str]:
        return s["vectorizers"][0]["vocabulary"]

    def params(s: dict[str, Any]) -> dict[str, Any]:
        return s["vectorizers"][0]["params"]

    return {
        "short vocabulary": (
            lambda s: vocabulary(s).pop(),
            r"expected .*\(from head\.json's labels, dimension and voc",
        ),
        "repeated term": (lambda s: vocabulary(s).__setitem__(1, vocabulary(s)[0]), "distinct strings"),
        "absurd dimension": (lambda s: s.update(n_features_in=10**12), "n_features_in is 1000000000000"),
        "absurd labels": (lambda s: s.update(classes=[f"l{i:05d}" for i in range(5000)]), "2 to 1000 labels"),
        "format version": (lambda s: s.update(format_version=2), "format_version 2; this router-ml reads version 1"),
        "reads files": (lambda s: params(s).update(input="filename"), r"params\.input is 'filename'"),
        "own regex": (lambda s: params(s).update(token_pattern="(a+)+$"), r"params\.token_pattern"),
        "callable": (lambda s: params(s).update(tokenizer="os.system"), r"params\.tokenizer"),
        "unknown view": (lambda s: params(s).update(preprocessor="os.system"), r"params\.preprocessor is 'os\.system'"),
        "unknown key": (lambda s: s.update(pickle="x"), r"unexpected keys \['pickle'\]"),
        "calibration": (lambda s: s["params"].update(calibration="magic"), r"params\.calibration is 'magic'"),
        "labels": (lambda s: s.update(classes=["code", "creative", "reasoning", "simple", "x"]), "coef is"),
    }


@pytest.mark.parametrize("case", sorted(_structure_edits()))
def test_hostile_structure_is_refused(case, torch_artifact, embedder, tmp_path):
    edit, message = _structure_edits()[case]
    path = _copy(torch_artifact, tmp_path)
    _edit_structure(path, edit)
    with pytest.raises(ArtifactError, match=message):
        artifact.load(path, embedder=embedder)


def test_truncated_and_absurd_files_fail_fast_without_allocating(torch_artifact, embedder, tmp_path):
    cases = {
        "truncated tensors": lambda p: _relist(p, "head.safetensors", (p / "head.safetensors").read_bytes()[:999]),
        "truncated json": lambda p: _relist(p, "head.json", (p / "head.json").read_bytes()[:999]),
        "huge header": lambda p: _relist(p, "head.safetensors", (1 << 62).to_bytes(8, "little") + b"{}"),
        "empty tensors": lambda p: _relist(p, "head.safetensors", b""),
    }
    messages = ["cannot be read", "not valid JSON", "declares a 4,611,686,018,427,387,904-byte header", "too short"]
    for (case, edit), message in zip(cases.items(), messages, strict=True):
        path = _copy(torch_artifact, tmp_path, case.replace(" ", "-"))
        edit(path)
        started = time.perf_counter()
        with pytest.raises(ArtifactError, match=message):
            artifact.load(path, embedder=embedder)
        assert time.perf_counter() - started < 5, case
    path = _copy(torch_artifact, tmp_path, "declared")
    manifest = _manifest(path)
    manifest["files"]["head.safetensors"]["size"] = 10**15
    _write_manifest(path, manifest)
    with pytest.raises(ArtifactError, match=r"declares head\.safetensors as 1000000000000000 bytes; expected 0 to"):
        artifact.load(path, embedder=embedder)


def test_reports_are_never_read_and_the_rest_loads(full_artifact, embedder):
    loaded = artifact.load(full_artifact, embedder=embedder)
    assert loaded.model.predict(["Sort a list in Python."])[0] in LABELS


@pytest.mark.parametrize("calibration", ["temperature", "sigmoid", "isotonic", "none"])
def test_every_head_round_trips_exactly(calibration, small_data, small_X):
    X = small_X
    texts, labels = small_data.texts, small_data.labels
    binary = [i for i, y in enumerate(labels) if y in ("code", "simple")]
    for rows in (list(range(len(texts))), binary):
        head = EmbeddingClassifier(C=4.0, calibration=calibration, calibration_cv=3)
        head.fit(X[rows], [labels[i] for i in rows], texts=[texts[i] for i in rows])
        encoded = encode_head(head)
        decoded = decode_head(*encoded)
        np.testing.assert_array_equal(decoded.predict_proba(X, texts), head.predict_proba(X, texts))
        assert encode_head(decoded) == encoded  # deterministic, and nothing is lost
        assert decoded.get_params() == head.get_params() and clone(decoded).get_params() == head.get_params()
        fast, original = LinearHead.compile(decoded), LinearHead.compile(head)
        assert (fast is None) == (original is None) == (calibration in ("sigmoid", "isotonic") or rows == binary)
        if fast is not None:
            np.testing.assert_array_equal(fast.predict_proba(X, texts), original.predict_proba(X, texts))


def test_a_loaded_router_keeps_the_estimator_contract_and_refits(
    torch_artifact, small_result, small_data, small_X, embedder
):
    loaded = artifact.load(torch_artifact, embedder=embedder)
    router = Router(loaded)
    assert router._head is not None  # the fast head is compiled from the data-only head
    texts, X = small_data.texts, small_X
    np.testing.assert_allclose(
        router._head.predict_proba(X, texts), loaded.model.head_.predict_proba(X, texts), atol=1e-5
    )
    assert clone(loaded.model.head_).get_params() == loaded.model.get_params()["head"].get_params()
    refit = RouterModel(embedder=embedder, head=clone(loaded.model.head_))
    refit.fit(texts, small_data.labels, embeddings=X)
    assert refit.head_ is not loaded.model.head_ and list(refit.classes_) == LABELS
    original = RouterModel(embedder=embedder, head=clone(small_result.model.head_)).fit(
        texts, small_data.labels, embeddings=X
    )  # the head as trained, refitted the same way: the loaded one's parameters are the trained one's
    np.testing.assert_allclose(
        refit.predict_proba_embeddings(X, texts), original.predict_proba_embeddings(X, texts), atol=1e-6
    )


def test_overwrite_replaces_an_artifact_keeps_reports_and_refuses_foreign_files(small_result, torch_artifact, tmp_path):
    path = _legacy(small_result.model, tmp_path / "old", torch_artifact / "routes.toml")
    (path / "eval").mkdir()
    (path / "eval" / "report.json").write_text("{}")
    artifact.save(small_result.model, path, threshold=0.5, overwrite=True)
    assert sorted(p.name for p in path.iterdir()) == ["eval", "head.json", "head.safetensors", "manifest.json", "onnx"]
    (path / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match=r"holds \['notes\.txt'\].*deletes nothing else"):
        artifact.save(small_result.model, path, threshold=0.5, overwrite=True)
    assert (path / "notes.txt").read_text() == "mine" and (path / "head.json").is_file()


def test_a_head_the_format_cannot_hold_is_refused_at_save(small_X):
    X = small_X[:60]
    head = EmbeddingClassifier(tfidf=False, calibration="none").fit(X, [i % 3 for i in range(60)])
    with pytest.raises(ArtifactError, match="labels must be strings"):
        encode_head(head)
    texts = [f"prompt number {i} about {'cats' if i % 2 else 'dogs'}" for i in range(60)]
    head = EmbeddingClassifier(calibration="none").fit(X, [f"l{i % 3}" for i in range(60)], texts=texts)
    head.vectorizer_.transformer_list[0][1].preprocessor = str.upper  # code the format cannot hold
    with pytest.raises(ArtifactError, match=r"named views \['instruction'\].*cannot be saved as data"):
        encode_head(head)


@pytest.fixture(scope="module")
def onnx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ONNX export of the bundled model (about 30 s)."""
    return export_onnx(folder=tmp_path_factory.mktemp("onnx") / "export")


def test_an_onnx_export_is_adopted_recorded_and_then_checked(torch_artifact, onnx_folder, embedder, tmp_path):
    path = _copy(torch_artifact, tmp_path)
    shutil.copytree(onnx_folder, path / "onnx")  # an export not recorded yet: never read by a torch load
    (path / "onnx" / "stray.pkl").write_bytes(b"not part of an export")
    assert artifact.load(path, embedder=embedder).model.predict(["Sort a list."])[0] in LABELS
    with pytest.raises(ArtifactError, match=r"holds \[.*'stray\.pkl'.*\], an ONNX export holds exactly"):
        Router.load(path, backend="onnx")
    (path / "onnx" / "stray.pkl").unlink()
    assert Router.load(path, backend="onnx").route("Sort a list.").label in LABELS
    files = _manifest(path)["files"]
    assert sorted(n for n in files if n.startswith("onnx/")) == sorted(f"onnx/{n}" for n in EXPORT_FILES)
    assert all(files[f"onnx/{n}"] == file_entry(path / "onnx" / n) for n in EXPORT_FILES)
    tokenizer = path / "onnx" / "tokenizer.json"
    original = tokenizer.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0x01
    tokenizer.write_bytes(bytes(changed))
    for load in (lambda: Router.load(path, backend="onnx"), lambda: artifact.load(path, embedder=embedder)):
        with pytest.raises(ArtifactError, match=r"onnx/tokenizer\.json has SHA-256 .*, the manifest records"):
            load()
    tokenizer.write_bytes(original)
    (path / "onnx" / "extra.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"unexpected \['onnx/extra\.json'\]"):
        artifact.load(path, embedder=embedder)
    shutil.rmtree(path / "onnx")  # deleting the export is how to make a new one: not an error
    assert artifact.load(path, embedder=embedder).model.predict(["Sort a list."])[0] in LABELS
