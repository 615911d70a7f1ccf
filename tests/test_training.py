from __future__ import annotations

import numpy as np
import pytest

from router_ml.embed import embed_texts
from router_ml.exceptions import ConfigError, DataError
from router_ml.training import TrainConfig, train


def test_training_reports_its_choices(small_result, small_config, small_data):
    m = small_result.metrics
    assert m["n_train"] == len(small_data)
    assert len(m["cv_grid"]) == len(small_config.c_grid) * len(small_config.tfidf) * len(small_config.class_weights)
    assert m["best_params"]["C"] in small_config.c_grid
    assert 0.5 < m["cv_macro_f1"] <= 1.0
    assert 0.0 <= m["oof_ece"] < 0.3
    assert 0.0 <= small_result.threshold <= 0.5
    assert small_result.embeddings.shape == (len(small_data), 384)


def test_cross_validation_picks_the_best_grid_point(small_data, embedder):
    result = train(small_data, TrainConfig(c_grid=(0.01, 8.0), tfidf=(False,), cv_folds=3), embedder=embedder)
    scores = {g["C"]: g["cv_macro_f1"] for g in result.metrics["cv_grid"]}
    assert result.metrics["best_params"]["C"] == max(scores, key=scores.get)


def test_fixed_threshold_is_kept(small_data, embedder):
    result = train(small_data, TrainConfig(c_grid=(4.0,), tfidf=(False,), cv_folds=3, threshold=0.3), embedder=embedder)
    assert result.threshold == 0.3


def test_too_few_examples_per_label(small_data, embedder):
    first_code = small_data.labels.index("code")
    few = small_data.subset([*[i for i, label in enumerate(small_data.labels) if label != "code"][:60], first_code])
    with pytest.raises(DataError, match=r"fewer than 10 examples: \{'code': 1\}"):
        train(few, TrainConfig(), embedder=embedder)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"c_grid": (0.0,)}, "c_grid must hold positive numbers"),
        ({"calibration": "magic"}, "calibration must be one of"),
        ({"cv_folds": 1}, "cv_folds must be at least 2"),
        ({"threshold": 1.5}, r"threshold must be in \[0, 1\)"),
        ({"class_weights": ("heavy",)}, "class_weights may hold"),
    ],
)
def test_bad_config_is_explained(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_config_round_trips_through_a_dict():
    config = TrainConfig(c_grid=(1.0, 2.0), threshold=0.2)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_embedding_cache_returns_identical_vectors(embedder, small_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTER_ML_CACHE_DIR", str(tmp_path))
    texts = small_data.texts[:20]
    first = embed_texts(embedder, texts)
    assert any(tmp_path.rglob("output.pkl"))  # written by joblib.Memory
    np.testing.assert_array_equal(embed_texts(embedder, texts), first)
    monkeypatch.setenv("ROUTER_ML_CACHE_DIR", "off")
    np.testing.assert_allclose(embed_texts(embedder, texts), first, atol=1e-6)
