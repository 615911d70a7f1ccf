from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest

from router_ml import embed
from router_ml.embed import (
    BUNDLED_MODEL_SHA256,
    SentenceTransformerEmbedder,
    file_sha256,
    make_embedder,
    sentence_transformer,
)
from router_ml.exceptions import EmbedderError


def test_bundled_weights_match_the_published_hash():
    assert file_sha256(embed.bundled_model_path() / "model.safetensors") == BUNDLED_MODEL_SHA256


def test_encode_shapes_and_unit_norm(embedder):
    one = embedder.encode("write a haiku about rain")
    many = embedder.encode(["write a haiku about rain", "sort a list in python", "x"])
    assert one.shape == (384,) and many.shape == (3, 384)
    assert many.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one, many[0], atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)


def test_embeddings_carry_meaning(embedder):
    a, b, c = embedder.encode(
        ["write a python function to reverse a list", "reverse an array in python", "a poem about the sea"]
    )
    assert a @ b > a @ c + 0.2


def test_non_strings_are_refused(embedder):
    with pytest.raises(EmbedderError, match="item 1 is int"):
        embedder.encode(["ok", 3])  # type: ignore[list-item]


def test_a_local_model_folder_works_and_is_fingerprinted(embedder, tmp_path):
    copy = tmp_path / "minilm"
    shutil.copytree(embed.bundled_model_path(), copy)
    local = SentenceTransformerEmbedder(str(copy))
    assert local.fingerprint == embedder.fingerprint == BUNDLED_MODEL_SHA256
    np.testing.assert_allclose(local.encode("hello there"), embedder.encode("hello there"), atol=1e-5)


def test_tampered_bundled_weights_are_refused(tmp_path, monkeypatch):
    copy = tmp_path / "minilm"
    shutil.copytree(embed.bundled_model_path(), copy)
    with (copy / "model.safetensors").open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    monkeypatch.setattr(sentence_transformer, "bundled_model_path", lambda: copy)
    with pytest.raises(EmbedderError, match=r"expected 53aa5117.*not the published all-MiniLM-L6-v2"):
        _ = SentenceTransformerEmbedder().model


def test_unknown_model_and_backend_fail_clearly(tmp_path):
    with pytest.raises(EmbedderError, match="cannot load sentence-transformers model"):
        _ = SentenceTransformerEmbedder(str(tmp_path / "no-such-model")).model
    with pytest.raises(EmbedderError, match="unknown embedder backend 'tpu'"):
        make_embedder(backend="tpu")


def test_many_texts_embed_on_every_core_with_the_same_vectors(default_embedder, monkeypatch):
    from threadpoolctl import threadpool_info

    from router_ml.embed import use_multilingual

    texts = [
        f"Prompt number {i}: {'summarise this note ' * (i % 7)}" for i in range(use_multilingual.PARALLEL_MIN_TEXTS)
    ]
    seen: set[str] = set()
    forward = default_embedder.model._encode
    monkeypatch.setattr(
        default_embedder.model, "_encode", lambda chunk: seen.add(threading.current_thread().name) or forward(chunk)
    )
    blas_before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    parallel = default_embedder.encode(texts)
    if use_multilingual._threads() > 1:
        assert threading.current_thread().name not in seen and len(seen) > 1  # chunks on pool threads
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == blas_before  # restored
    seen.clear()
    monkeypatch.setattr(use_multilingual, "PARALLEL_MIN_TEXTS", len(texts) + 1)
    sequential = default_embedder.encode(texts)
    assert seen == {threading.current_thread().name}
    np.testing.assert_array_equal(parallel, sequential)  # the same chunks: not a bit differs
    np.testing.assert_array_equal(sequential, default_embedder.encode(texts, show_progress=True))


def test_omp_num_threads_caps_the_embedding_threads(monkeypatch):
    from router_ml.embed import use_multilingual

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as Ray sets it for an actor with one CPU
    assert use_multilingual._threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1000")
    assert use_multilingual._threads() == (os.cpu_count() or 1)
