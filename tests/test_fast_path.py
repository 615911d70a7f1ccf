"""The fast path: ONNX backends, backend compatibility, the compiled head, the decision cache, micro-batching."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from router_ml import artifact
from router_ml.backend_check import measure_backends
from router_ml.embed import DEFAULT_MODEL, GRAPH_FILES, USE_MODEL, head_and_tail, make_embedder
from router_ml.embed.onnx_export import EXPORT_META, export_onnx
from router_ml.exceptions import ArtifactError, DataError, EmbedderError
from router_ml.fast_head import LinearHead
from router_ml.model import EmbeddingClassifier
from router_ml.router import Router
from router_ml.serving.batching import MicroBatcher

LONG_TAIL = "Now translate only the last sentence above into French."
TEXTS = [
    "hi",
    "Write a Python function that merges two sorted lists in linear time.",
    "Compose a haiku about rain on a tin roof.",
    "Bonjour, pouvez-vous m'aider ? 你好，世界 — naïve café",
    "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies? Explain.",
    ("The quarterly report covers revenue, churn and hiring across four regions. " * 40) + LONG_TAIL,
]


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real ONNX export of the bundled model (float and int8), made once per session."""
    return export_onnx(folder=tmp_path_factory.mktemp("onnx") / "export")


@pytest.fixture
def onnx_artifact(torch_artifact: Path, onnx_export: Path, tmp_path: Path) -> Path:
    """A copy of the torch-trained artifact with the session's export copied into its onnx/ folder (unrecorded)."""
    path = Path(shutil.copytree(torch_artifact, tmp_path / "router"))
    shutil.copytree(onnx_export, path / "onnx")
    return path


def test_export_writes_both_graphs_with_hashes_and_is_reused(onnx_export: Path) -> None:
    meta = json.loads((onnx_export / EXPORT_META).read_text())
    assert meta["source_fingerprint"] == make_embedder(DEFAULT_MODEL).fingerprint
    assert meta["pooling"] == "mean" and meta["max_seq_length"] == 256 and meta["dim"] == 384
    for backend, file in GRAPH_FILES.items():
        assert meta["graphs"][backend]["file"] == file and (onnx_export / file).stat().st_size > 1_000_000
    mtime = (onnx_export / EXPORT_META).stat().st_mtime_ns
    assert export_onnx(folder=onnx_export) == onnx_export  # an existing export is kept, not redone
    assert (onnx_export / EXPORT_META).stat().st_mtime_ns == mtime


def test_onnx_matches_torch_and_int8_is_close(torch_embedder, onnx_export: Path) -> None:
    reference = torch_embedder.encode(TEXTS)
    onnx = make_embedder(DEFAULT_MODEL, backend="onnx", export_dir=onnx_export).encode(TEXTS)
    int8 = make_embedder(DEFAULT_MODEL, backend="onnx-int8", export_dir=onnx_export).encode(TEXTS)
    assert onnx.shape == int8.shape == reference.shape and onnx.dtype == np.float32
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(onnx * reference, axis=1)) > 0.99999
    cosine = np.sum(int8 * reference, axis=1)
    assert cosine.mean() > 0.98 and cosine.min() > 0.95
    # batching, padding and length sorting do not change a text's embedding
    one_by_one = np.vstack(
        [make_embedder(DEFAULT_MODEL, backend="onnx", export_dir=onnx_export).encode([t]) for t in TEXTS]
    )
    assert np.allclose(one_by_one, onnx, atol=1e-5)


def test_onnx_labels_agree_with_torch(torch_artifact: Path, onnx_artifact: Path, small_data) -> None:
    assert not (torch_artifact / "onnx").exists()
    torch_router = Router.load(torch_artifact, cache_size=0)
    assert torch_router.backend == "torch"
    onnx_router = Router.load(onnx_artifact, backend="onnx", cache_size=0)
    assert onnx_router.backend == "onnx"
    export = json.loads((onnx_artifact / "onnx" / EXPORT_META).read_text())
    assert artifact.read_manifest(onnx_artifact)["onnx_export"]["graphs"] == export["graphs"]  # recorded at first use
    prompts = small_data.texts[::3] + TEXTS
    torch_labels = [d.predicted for d in torch_router.route_batch(prompts)]
    assert [d.predicted for d in onnx_router.route_batch(prompts)] == torch_labels


def test_long_prompts_keep_head_and_tail_without_warnings(torch_embedder, onnx_export: Path, caplog) -> None:
    long_text = TEXTS[-1]
    onnx = make_embedder(DEFAULT_MODEL, backend="onnx", export_dir=onnx_export)
    fitted = head_and_tail([long_text, "short"], onnx._splitter, onnx.max_seq_length)
    assert fitted[1] == "short"
    head, tail = fitted[0].split(" ... ")
    assert long_text.startswith(head) and long_text.endswith(tail) and tail.endswith(LONG_TAIL)  # cut as written
    assert len(onnx._splitter.encode(fitted[0]).ids) <= onnx.max_seq_length
    accented = "Café crème brûlée à Zürich, naïve façade. " * 60 + LONG_TAIL
    head, tail = head_and_tail([accented], onnx._splitter, onnx.max_seq_length)[0].split(" ... ")
    assert accented.startswith(head) and accented.endswith(tail) and "brûlée" in head  # character offsets, not bytes
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vectors = [e.encode(long_text) for e in (torch_embedder, onnx)]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # the tail is read: a different last instruction moves the embedding
    other = long_text.replace(LONG_TAIL, "Write a limerick about this report.")
    assert float(torch_embedder.encode(other) @ vectors[0]) < 0.99
    assert float(vectors[0] @ vectors[1]) > 0.99999


def test_int8_is_refused_until_measured_then_accepted(onnx_artifact: Path, small_data) -> None:
    with pytest.raises(ArtifactError, match=r"no measured accuracy on onnx-int8.*router-ml backends"):
        Router.load(onnx_artifact, backend="onnx-int8")
    reports = measure_backends(onnx_artifact, small_data.subset(list(range(0, len(small_data), 2))))
    assert [r.backend for r in reports] == ["onnx", "onnx-int8"]
    onnx_report, int8_report = reports
    assert onnx_report.label_agreement == 1.0 and onnx_report.macro_f1_delta == 0.0
    assert int8_report.cosine_mean > 0.98 and abs(int8_report.macro_f1_delta) <= 0.05
    recorded = artifact.read_manifest(onnx_artifact)["backends"]["onnx-int8"]
    assert (
        recorded["export"]["sha256"]
        == json.loads((onnx_artifact / "onnx" / EXPORT_META).read_text())["graphs"]["onnx-int8"]["sha256"]
    )
    if int8_report.accepted:
        assert Router.load(onnx_artifact, backend="onnx-int8").backend == "onnx-int8"
    manifest = artifact.read_manifest(onnx_artifact)
    manifest["backends"]["onnx-int8"]["macro_f1_delta"] = -0.05
    (onnx_artifact / artifact.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"more than the 0\.01 tolerated"):
        Router.load(onnx_artifact, backend="onnx-int8")


def test_tampered_graph_is_refused(onnx_artifact: Path) -> None:
    graph = onnx_artifact / "onnx" / GRAPH_FILES["onnx"]
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(EmbedderError, match="changed after export"):
        Router.load(onnx_artifact, backend="onnx")


def test_export_failure_is_clear_and_falls_back_only_when_asked(torch_artifact: Path, tmp_path: Path) -> None:
    path = Path(shutil.copytree(torch_artifact, tmp_path / "router"))
    (path / "onnx").mkdir()  # a leftover folder that is not an export
    with pytest.raises(EmbedderError, match=r"not a complete ONNX export.*delete it"):
        Router.load(path, backend="onnx")
    with pytest.warns(RuntimeWarning, match="falling back to backend 'torch'"):
        router = Router.load(path, backend="onnx", fallback_backend="torch")
    assert router.backend == "torch" and router.route("Write a haiku about rain.").label in router.labels
    with pytest.raises(EmbedderError, match="unknown embedder backend 'tpu'"):
        Router.load(path, backend="tpu")


# Whitespace of every kind, case that lowers differently in context (final sigma, dotted I), scripts without spaces.
TRICKY = [
    "ΟΔΟΣ ΣΟΦΟΣ.Σ\tİstanbul\u00a0ŞİŞLİ",
    "tabs\tand\nnewlines\r\nand  double  spaces\u2003em-space\u3000ideographic",
    "def f(x):\n    return x**2  # square_it, x_1 == y_2",
    "日本語の文章を英語に翻訳してください。😀👍 emoji-wörds straße STRASSE",
    "   leading and trailing   ",
    "a b c d e f g",
]


def test_linear_head_equals_scikit_learn(small_result, small_data, embedder) -> None:
    head = small_result.model.head_
    texts = small_data.texts[:40] + TEXTS + TRICKY
    X = embedder.encode(texts)
    fast = LinearHead.compile(head)
    assert fast is not None
    expected = head.predict_proba(X, texts)
    np.testing.assert_allclose(fast.predict_proba(X, texts), expected, atol=1e-5)  # word memos empty
    np.testing.assert_allclose(fast.predict_proba(X, texts), expected, atol=1e-5)  # every word memoized


def test_word_memos_find_exactly_the_analyzers_ngrams(small_result, small_data) -> None:
    fast = LinearHead.compile(small_result.model.head_)
    assert fast is not None
    vectorizers = [v for _, v in small_result.model.head_.vectorizer_.transformer_list]
    for columns, vectorizer in zip(fast.ngrams.finders, vectorizers, strict=True):
        analyzer, vocabulary = vectorizer.build_analyzer(), vectorizer.vocabulary_
        for text in [*TRICKY, *TEXTS, *small_data.texts[:20]] * 2:
            expected = sorted(vocabulary[g] for g in analyzer(text) if g in vocabulary)
            assert sorted(columns(text)) == expected, (vectorizer.analyzer, text[:60])


def test_unsupported_heads_are_left_to_scikit_learn(small_data, small_result) -> None:
    X = small_result.embeddings
    sigmoid = EmbeddingClassifier(C=4.0, calibration="sigmoid", calibration_cv=3).fit(
        X, small_data.labels, texts=small_data.texts
    )
    assert LinearHead.compile(sigmoid) is None
    binary_rows = [i for i, y in enumerate(small_data.labels) if y in ("code", "simple")]
    binary = EmbeddingClassifier(C=4.0).fit(
        X[binary_rows], [small_data.labels[i] for i in binary_rows], texts=[small_data.texts[i] for i in binary_rows]
    )
    assert LinearHead.compile(binary) is None


def test_decision_cache_hits_normalized_text_and_resets_on_reload(small_artifact: Path) -> None:
    router = Router.load(small_artifact, cache_size=2)
    first = router.route("Write a  haiku about\nrain.")
    again = router.route("  Write a haiku about rain. ")
    assert not first.cached and again.cached
    assert (again.label, again.probabilities) == (first.label, first.probabilities)
    assert router.cache_info() == {"hits": 1, "misses": 1, "size": 1, "maxsize": 2}
    # the same last turn after another conversation is another decision
    convo = [
        {"role": "user", "content": "Debug my Rust borrow checker error"},
        {"role": "user", "content": "Write a haiku about rain."},
    ]
    assert not router.route(convo).cached
    router.route("Explain recursion.")  # third distinct key: the least recently used is evicted
    assert router.cache_info()["size"] == 2
    assert not router.route("Write a haiku about rain.").cached
    reloaded = Router.load(small_artifact)
    assert not reloaded.route("Write a haiku about rain.").cached
    from router_ml.router import DEFAULT_CACHE_SIZE
    from router_ml.serving.settings import ServiceConfig

    assert ServiceConfig(model="m").cache_size == DEFAULT_CACHE_SIZE  # the service's default is the router's
    off = Router.load(small_artifact, cache_size=0)
    assert not off.route("hi there").cached and not off.route("hi there").cached
    assert off.cache_info()["maxsize"] == 0 and off.cache_info()["misses"] == 2


def test_micro_batcher_answers_each_caller_in_batches(small_artifact: Path, small_data) -> None:
    router = Router.load(small_artifact, cache_size=0)
    prompts = small_data.texts[:50]
    expected = [d.probabilities for d in router.route_batch(prompts)]

    async def scenario() -> list:
        batcher = MicroBatcher(router, max_batch=8, max_wait_ms=20)
        try:
            return await asyncio.gather(*(batcher.route(p) for p in prompts)), batcher.stats
        finally:
            await batcher.close()

    decisions, stats = asyncio.run(scenario())
    for got, want in zip(decisions, expected, strict=True):
        assert got.probabilities == pytest.approx(want, abs=1e-6)
    assert stats.requests == 50 and max(stats.sizes) <= 8 and stats.batches < 50


def test_micro_batcher_lone_request_waits_at_most_the_window(small_artifact: Path) -> None:
    router = Router.load(small_artifact, cache_size=0)
    router.route("warm up")

    async def scenario() -> tuple[float, float]:
        waits = []
        for max_wait_ms in (0.0, 300.0):
            batcher = MicroBatcher(router, max_batch=4, max_wait_ms=max_wait_ms)
            started = time.perf_counter()
            await batcher.route("Write a haiku about rain.")
            waits.append(time.perf_counter() - started)
            await batcher.close()
        return waits[0], waits[1]

    no_wait, window = asyncio.run(scenario())
    assert window >= 0.3 and no_wait < 0.3  # the window is waited for a lone request, and only then


def test_micro_batcher_isolates_bad_prompts_and_cancelled_callers(small_artifact: Path) -> None:
    router = Router.load(small_artifact, cache_size=0)

    async def scenario() -> list:
        batcher = MicroBatcher(router, max_batch=16, max_wait_ms=50)
        abandoned = asyncio.ensure_future(batcher.route("this caller gives up"))
        await asyncio.sleep(0)
        abandoned.cancel()
        results = await asyncio.gather(
            batcher.route("Write a haiku about rain."), batcher.route("   "), batcher.route([]), return_exceptions=True
        )
        await batcher.close()
        return [*results, batcher.stats]

    good, blank, empty, stats = asyncio.run(scenario())
    assert good.label in router.labels
    assert isinstance(blank, DataError) and isinstance(empty, DataError)
    assert stats.requests == 1  # the cancelled caller was not embedded


def test_cli_backends_measures_and_route_uses_the_backend(onnx_artifact: Path, small_jsonl: Path) -> None:
    from click.testing import CliRunner

    from router_ml.cli import cli

    runner = CliRunner()
    measured = runner.invoke(cli, ["backends", str(onnx_artifact), "--data", str(small_jsonl), "--backend", "onnx"])
    assert measured.exit_code == 0, measured.output
    assert "onnx " in measured.output and "same label 100.00%" in measured.output
    routed = runner.invoke(cli, ["route", "--model", str(onnx_artifact), "--backend", "onnx", "--json", "Sort a list"])
    assert routed.exit_code == 0, routed.output
    assert json.loads(routed.output.splitlines()[-1])["label"] in ("code", "creative", "reasoning", "simple")
    refused = runner.invoke(cli, ["route", "--model", str(onnx_artifact), "--backend", "onnx-int8", "hi"])
    assert refused.exit_code == 2 and "router-ml backends" in refused.output


TOO_LOW = {"macro_f1": 0.9, "reference_macro_f1": 0.92}


def _manifest_for(trained: str, export: bool, int8: dict | None = None) -> dict:
    graphs = {"onnx": {"file": "model.onnx", "sha256": "a" * 64}, "onnx-int8": {"file": "x", "sha256": "b" * 64}}
    manifest: dict = {"embedder": {"backend": trained, "name": DEFAULT_MODEL}, "backends": {}}
    if export:
        manifest["onnx_export"] = {"graphs": graphs}
    if int8 is not None:
        manifest["backends"]["onnx-int8"] = {"export": {"sha256": "b" * 64}, **int8}
    return manifest


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (_manifest_for("torch", export=False), "torch"),
        (_manifest_for("torch", export=True), "onnx"),
        (_manifest_for("onnx", export=False), "onnx"),
        (_manifest_for("onnx", export=True, int8={"macro_f1_delta": -0.004}), "onnx-int8"),
        (_manifest_for("onnx", export=True, int8={"macro_f1_delta": -0.02, **TOO_LOW}), "onnx"),
        (_manifest_for("torch", export=False, int8={"macro_f1_delta": 0.0}), "torch"),  # no export: nothing measured
        ({"embedder": {"backend": "numpy", "name": USE_MODEL}, "backends": {}}, "numpy"),  # its only backend
    ],
)
def test_fastest_backend_is_the_fastest_the_artifact_verified(manifest: dict, expected: str) -> None:
    backend, why = artifact.fastest_backend(manifest)
    assert backend == expected and why


def test_fastest_backend_ignores_a_measurement_of_another_graph() -> None:
    manifest = _manifest_for("onnx", export=True, int8={"macro_f1_delta": 0.0})
    manifest["backends"]["onnx-int8"]["export"]["sha256"] = "c" * 64  # measured on an older export
    assert artifact.fastest_backend(manifest)[0] == "onnx"


def test_route_defaults_to_the_fastest_verified_backend_and_says_so(
    small_artifact: Path, small_jsonl: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from router_ml.cli import cli

    path = Path(shutil.copytree(small_artifact, tmp_path / "router"))
    runner = CliRunner()
    first = runner.invoke(cli, ["route", "--model", str(path), "--json", "Sort a list"])
    assert first.exit_code == 0, first.output
    assert "embedder backend: onnx (fastest verified: the float ONNX export" in first.stderr
    measured = runner.invoke(cli, ["backends", str(path), "--data", str(small_jsonl)])
    assert measured.exit_code == 0, measured.output
    assert "against onnx" in measured.output and "onnx-int8" in measured.output
    assert "\n  onnx " not in measured.output  # the trained backend is not measured against itself
    delta = artifact.read_manifest(path)["backends"]["onnx-int8"]["macro_f1_delta"]
    second = runner.invoke(cli, ["route", "--model", str(path), "--json", "Sort a list"])
    expected = "onnx-int8" if delta >= -artifact.MACRO_F1_TOLERANCE else "onnx"
    assert f"embedder backend: {expected} (fastest verified" in second.stderr
    asked = runner.invoke(cli, ["route", "--model", str(path), "--backend", "torch", "--json", "Sort a list"])
    assert "embedder backend: torch (as asked)" in asked.stderr
