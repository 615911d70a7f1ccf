from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from router_ml.exceptions import DataError, NotFittedError
from router_ml.model import EmbeddingClassifier, RouterModel


def test_estimator_contract_init_stores_params_only():
    head = EmbeddingClassifier(C=2.0, tfidf=False)
    assert head.get_params()["C"] == 2.0
    assert not [k for k in vars(head) if k.endswith("_")]
    assert clone(head).get_params() == head.get_params()


def test_head_probabilities_follow_classes(small_data, small_result):
    X = small_result.embeddings  # the small data's embeddings, made once per session
    head = EmbeddingClassifier(C=4.0).fit(X, small_data.labels, texts=small_data.texts)
    assert list(head.classes_) == sorted(set(small_data.labels))
    proba = head.predict_proba(X[:5], texts=small_data.texts[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert list(head.predict(X[:5], texts=small_data.texts[:5])) == list(head.classes_[proba.argmax(axis=1)])
    # fitted on these very rows, the head must get (nearly) all of them right
    assert np.mean(head.predict(X, texts=small_data.texts) == np.array(small_data.labels)) > 0.95


def test_tfidf_head_needs_texts(small_data, embedder):
    X = embedder.encode(small_data.texts[:8])
    with pytest.raises(DataError, match="pass texts="):
        EmbeddingClassifier().fit(X, ["a", "b"] * 4)


def test_single_label_is_refused():
    with pytest.raises(DataError, match="at least two labels"):
        EmbeddingClassifier(tfidf=False).fit(np.eye(3), ["a", "a", "a"])


def test_router_model_string_in_string_out(small_result):
    model = small_result.model
    label = model.predict("Write a Python function that checks whether a number is prime.")
    assert isinstance(label, str) and label == "code"
    proba = model.predict_proba("Write a limerick about a sleepy cat.")
    assert proba.shape == (4,)
    assert model.classes_[proba.argmax()] == "creative"


def test_unfitted_router_model_raises(embedder):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        RouterModel(embedder=embedder).predict("hello")
