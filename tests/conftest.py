"""Shared fixtures: the real embedding model (loaded once), small real data, a trained router artifact."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json
from pathlib import Path

import pytest

from router_ml import artifact
from router_ml.data import LabelledPrompts, load_bundled
from router_ml.embed import SentenceTransformerEmbedder
from router_ml.routes import bundled_routes_path
from router_ml.training import TrainConfig, train

DEV_PATH = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev.jsonl"
PER_LABEL = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the notebook last: it then reuses the embedding cache the quality tests warmed."""
    items.sort(key=lambda item: item.path.name == "test_notebook.py")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Embedding cache in a per-session folder, so tests never read a cache another run wrote."""
    os.environ["ROUTER_ML_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real default embedder, loaded once per session."""
    emb = SentenceTransformerEmbedder()
    emb.encode("warm up")
    return emb


@pytest.fixture(scope="session")
def small_data() -> LabelledPrompts:
    """The first PER_LABEL prompts of each label from the bundled training split (real, varied text)."""
    data = load_bundled("train")
    seen: dict[str, int] = {}
    keep = []
    for i, label in enumerate(data.labels):
        if seen.get(label, 0) < PER_LABEL:
            seen[label] = seen.get(label, 0) + 1
            keep.append(i)
    return data.subset(keep)


@pytest.fixture(scope="session")
def small_config() -> TrainConfig:
    return TrainConfig(c_grid=(4.0,), tfidf=(True,), cv_folds=3)


@pytest.fixture(scope="session")
def small_result(small_data, small_config, embedder):
    return train(small_data, small_config, embedder=embedder)


@pytest.fixture(scope="session")
def small_artifact(small_result, small_data, tmp_path_factory) -> Path:
    """A router trained on the small data, saved as an artifact directory."""
    path = tmp_path_factory.mktemp("artifact") / "router"
    return artifact.save(
        small_result.model,
        path,
        threshold=small_result.threshold,
        data=small_data,
        metrics=small_result.metrics,
        routes_file=bundled_routes_path(),
    )


@pytest.fixture
def small_jsonl(small_data, tmp_path) -> Path:
    """The small data written as a JSONL file."""
    path = tmp_path / "prompts.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for text, label in zip(small_data.texts, small_data.labels, strict=True):
            handle.write(json.dumps({"text": text, "label": label}) + "\n")
    return path
