"""Router.explain: nearest training prompts kept in the artifact, per-route terms, margin; the CLI and /v1/route."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from router_ml import artifact
from router_ml.artifact.integrity import file_entry
from router_ml.artifact.manifest import read_manifest, write_manifest
from router_ml.artifact.neighbours import sample_rows
from router_ml.cli import cli
from router_ml.exceptions import ArtifactError, DataError
from router_ml.router import Router
from router_ml.serving.app import create_app
from router_ml.serving.settings import ServiceConfig
from tests.service_helpers import ServiceThread

CODE_PROMPT = "Write a python function that parses ISO dates from a log file"
NEIGHBOUR_FILES = ["neighbours.json", "neighbours.safetensors"]


@pytest.fixture(scope="module")
def router(small_artifact, embedder) -> Router:
    return Router.load(small_artifact, embedder=embedder)


def _copy(src: Path, tmp_path: Path, name: str = "router") -> Path:
    return Path(shutil.copytree(src, tmp_path / name))


def _without_neighbours(src: Path, tmp_path: Path) -> Path:
    """An artifact as router-ml wrote it before neighbours existed: no neighbour files, none listed."""
    path = _copy(src, tmp_path, "old")
    manifest = read_manifest(path)
    for name in NEIGHBOUR_FILES:
        (path / name).unlink()
        del manifest["files"][name]
    write_manifest(path, manifest)
    return path


def test_neighbours_have_labels_and_descending_similarity(router):
    # (the nearest training prompt to CODE_PROMPT is a simple one: "Normalize these dates to ISO format")
    explanation = router.explain("Why does my Python script raise KeyError when I read a pandas DataFrame column?", k=7)
    near = explanation.nearest
    assert len(near) == 7
    assert all(n.label in router.labels and n.text for n in near)
    similarities = [n.similarity for n in near]
    assert similarities == sorted(similarities, reverse=True) and -1.0 <= similarities[-1] <= similarities[0] <= 1.0
    assert near[0].label == "code"
    assert len(router.explain(CODE_PROMPT, k=2).nearest) == 2 and router.explain(CODE_PROMPT, k=0).nearest == ()


def test_a_training_prompt_is_its_own_nearest_neighbour(router, small_data):
    i = next(i for i, t in enumerate(small_data.texts) if 30 < len(t) < 300)
    top = router.explain(small_data.texts[i]).nearest[0]
    assert top.text == small_data.texts[i] and top.label == small_data.labels[i]
    assert top.similarity == pytest.approx(1.0, abs=2e-3)


def test_a_distinctive_word_is_among_the_code_routes_top_terms(router):
    explanation = router.explain(CODE_PROMPT, top_terms=8)
    code = explanation.terms["code"]
    assert "python" in [t.term for t in code.terms]
    contributions = [t.contribution for t in code.terms]
    assert contributions == sorted(contributions, reverse=True) and all(c > 0 for c in contributions)
    # the split is exact: intercept + embedding + n-grams is each route's logit, whose softmax is the decision
    scores = np.array([explanation.terms[label].score for label in router.labels])
    parts = [explanation.terms[label] for label in router.labels]
    assert scores == pytest.approx([p.intercept + p.embedding + p.ngrams for p in parts])
    softmax = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    assert softmax == pytest.approx([explanation.decision.probabilities[label] for label in router.labels], abs=1e-5)
    assert list(explanation.terms) == sorted(router.labels, key=lambda r: -explanation.decision.probabilities[r])


def test_margin_and_decision_match_route(router):
    for prompt in (CODE_PROMPT, "Write a haiku about rain", [{"role": "user", "content": "Summarize: cats sleep."}]):
        explanation = router.explain(prompt)
        decision = router.route(prompt)
        top = sorted(decision.probabilities.values(), reverse=True)
        assert explanation.margin == pytest.approx(top[0] - top[1])
        ignore = {"latency_ms", "cached"}
        got, want = explanation.decision.to_dict(), decision.to_dict()
        assert {k: v for k, v in got.items() if k not in ignore} == {k: v for k, v in want.items() if k not in ignore}


def test_conversations_explain_the_last_turn_and_say_so(router):
    messages = [
        {"role": "user", "content": "Write a SQL query for monthly revenue"},
        {"role": "assistant", "content": "Which table holds the orders?"},
        {"role": "user", "content": "orders(id, total, created_at). go ahead"},
    ]
    explanation = router.explain(messages)
    assert any("last user turn" in note for note in explanation.notes)
    assert explanation.decision.label == router.route(messages).label


def test_bad_input_is_refused_clearly(router):
    for k in (-1, 101, "3", 2.0, True):
        with pytest.raises(DataError, match="k must be an integer from 0 to 100"):
            router.explain(CODE_PROMPT, k=k)
    with pytest.raises(DataError, match="prompt is empty"):
        router.explain("   ")


def test_to_dict_is_json(router):
    data = json.loads(json.dumps(router.explain(CODE_PROMPT).to_dict()))
    assert set(data) == {"decision", "margin", "nearest", "terms", "notes"}
    assert set(data["nearest"][0]) == {"text", "label", "similarity"}
    assert set(data["terms"]["code"]) == {"score", "intercept", "embedding", "ngrams", "terms"}


def test_neighbour_files_are_in_the_manifest_and_a_tampered_one_is_refused(small_artifact, embedder, tmp_path):
    manifest = read_manifest(small_artifact)
    for name in NEIGHBOUR_FILES:
        assert manifest["files"][name] == file_entry(small_artifact / name)
        path = _copy(small_artifact, tmp_path, f"tampered-{name}")
        data = bytearray((path / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (path / name).write_bytes(bytes(data))
        with pytest.raises(ArtifactError, match=rf"{name} has SHA-256 .* the manifest records"):
            artifact.load(path, embedder=embedder)
    # changed after loading: refused when the explanation reads it
    path = _copy(small_artifact, tmp_path, "late")
    loaded = Router.load(path, embedder=embedder)
    (path / "neighbours.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"neighbours\.json is .* bytes, the manifest records"):
        loaded.explain(CODE_PROMPT)
    # listed alone, without its partner
    path = _without_neighbours(small_artifact, tmp_path / "alone")
    shutil.copyfile(small_artifact / "neighbours.json", path / "neighbours.json")
    manifest = read_manifest(path)
    manifest["files"]["neighbours.json"] = file_entry(path / "neighbours.json")
    write_manifest(path, manifest)
    with pytest.raises(ArtifactError, match=r"does not list \['neighbours.safetensors'\]"):
        artifact.load(path, embedder=embedder)


def test_an_artifact_without_neighbours_routes_and_explains_without_them(small_artifact, embedder, router, tmp_path):
    old = Router.load(_without_neighbours(small_artifact, tmp_path), embedder=embedder)
    assert old.route(CODE_PROMPT).probabilities == router.route(CODE_PROMPT).probabilities
    explanation = old.explain(CODE_PROMPT)
    assert explanation.nearest == () and any("no training neighbours" in n for n in explanation.notes)
    assert "python" in [t.term for t in explanation.terms["code"].terms]


def test_the_sample_is_bounded_stratified_and_from_the_models_embedder(small_result, small_data, embedder, tmp_path):
    labels = ["a"] * 5000 + ["b"] * 30 + ["c"] * 700
    rows = sample_rows([f"text {i}" for i in range(len(labels))], labels, per_label=100)
    counts = {label: sum(labels[i] == label for i in rows) for label in "abc"}
    assert counts == {"a": 100, "b": 30, "c": 100} and rows == sorted(rows)
    assert sample_rows(["x", "x", "y"], ["a", "a", "a"], per_label=5) == [0, 2]  # exact duplicates kept once
    path = artifact.save(
        small_result.model, tmp_path / "r", threshold=0.3, data=small_data, embeddings=small_result.embeddings,
        neighbours_per_label=10,
    )  # fmt: skip
    stored = json.loads((path / "neighbours.json").read_text())
    assert {label: stored["labels"].count(label) for label in set(stored["labels"])} == dict.fromkeys(
        small_data.classes, 10
    )
    assert stored["embedder"]["fingerprint"] == embedder.fingerprint
    kept = artifact.load(path, embedder=embedder).neighbours
    assert kept is not None and kept.vectors.shape == (40, embedder.dim)
    index = [small_data.texts.index(t) for t in kept.texts]  # the training embeddings of the same prompts
    np.testing.assert_allclose(kept.vectors, small_result.embeddings[index], atol=2e-3)
    assert sorted(p.name for p in artifact.save(small_result.model, tmp_path / "none", threshold=0.3).iterdir()) == [
        "head.json",
        "head.safetensors",
        "manifest.json",
        "onnx",  # the ONNX export the model runs; no neighbours without data
    ]
    with pytest.raises(ArtifactError, match="do not come from this model's embedder"):
        artifact.save(
            small_result.model, tmp_path / "x", threshold=0.3, data=small_data,
            embeddings=np.roll(small_result.embeddings, 1, axis=1),
        )  # fmt: skip
    with pytest.raises(ArtifactError, match=r"embeddings have shape \(3, 384\)"):
        artifact.save(
            small_result.model, tmp_path / "y", threshold=0.3, data=small_data, embeddings=small_result.embeddings[:3]
        )


def test_cli_prints_the_explanation_and_json(small_artifact):
    runner = CliRunner()
    result = runner.invoke(cli, ["explain", "--model", str(small_artifact), CODE_PROMPT])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "margin" in out and "nearest training prompts:" in out and "similarity" in out
    assert "top terms:" in out and "python" in out and "embedding" in out
    result = runner.invoke(cli, ["explain", "--model", str(small_artifact), "--k", "3", "--json", CODE_PROMPT])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["nearest"]) == 3 and data["decision"]["label"] in data["terms"]
    bad = runner.invoke(cli, ["explain", "--model", str(small_artifact), "--k", "-1", CODE_PROMPT])
    assert bad.exit_code == 2 and "-1" in bad.output


# -- /v1/route over real HTTP on 127.0.0.1 -------------------------------------------------------------------
@pytest.fixture(scope="module")
def http(small_artifact, tmp_path_factory) -> Iterator[httpx.Client]:
    config = ServiceConfig(model=str(small_artifact), db=str(tmp_path_factory.mktemp("db") / "o.db"), api_keys=["k"])
    with ServiceThread(create_app(config)) as server:
        url = f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer k"}, timeout=60) as client:
            yield client


def test_route_endpoint_explains_only_when_asked(http, router):
    plain = http.post("/v1/route", json={"input": CODE_PROMPT})
    assert plain.status_code == 200 and "explanation" not in plain.json()
    body = http.post("/v1/route", json={"input": CODE_PROMPT, "explain": True}).json()
    explanation = body["explanation"]
    expected = router.explain(CODE_PROMPT).nearest[0]
    assert explanation["decision"]["label"] == body["label"]
    assert (explanation["nearest"][0]["text"], explanation["nearest"][0]["label"]) == (expected.text, expected.label)
    top = sorted(body["probabilities"].values(), reverse=True)
    assert explanation["margin"] == pytest.approx(top[0] - top[1])
    assert "python" in [t["term"] for t in explanation["terms"]["code"]["terms"]]
    batch = http.post("/v1/route", json={"input": [CODE_PROMPT, "Write a haiku about rain"], "explain": True}).json()
    assert [len(item["explanation"]["nearest"]) for item in batch["data"]] == [5, 5]
    assert set(plain.json()) == set(body) - {"explanation"}
    bad = http.post("/v1/route", json={"input": CODE_PROMPT, "explain": "yes"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "explain"
