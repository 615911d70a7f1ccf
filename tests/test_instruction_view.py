"""The instruction view: the n-grams of a long prompt's first and last line, apart from the material between them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from router_ml.artifact.head_format import decode_head, encode_head
from router_ml.exceptions import ConfigError
from router_ml.instruction import MIN_CHARS, VIEWS, instruction_part, view_name
from router_ml.model import EmbeddingClassifier
from router_ml.training import TrainConfig, train


@pytest.fixture(scope="module")
def small_X(small_result) -> np.ndarray:
    return small_result.embeddings


MATERIAL = "\n".join(f"- {n} the council voted {n} to {n + 1} on the bus lane budget." for n in range(12))


def test_a_short_prompt_is_its_own_instruction():
    assert instruction_part("write a haiku about rain") == "write a haiku about rain"


def test_a_long_prompt_keeps_its_first_and_last_line_without_the_material():
    before = instruction_part(f"Notes from yesterday:\n{MATERIAL}\nturn these into a bedtime story for my son")
    after = instruction_part(f"Summarize this for me please\n{MATERIAL}\nthanks!!")
    assert before == "Notes from yesterday: ... turn these into a bedtime story for my son"
    assert after == "Summarize this for me please ... thanks!!"
    assert "council" not in before + after


def test_fenced_code_is_material_and_one_paragraph_splits_into_sentences():
    code = "```python\n" + "x = compute(x)\n" * 30 + "```"
    assert instruction_part(f"{code}\nwhy does this loop forever?") == "why does this loop forever?"
    paragraph = "The mayor opened the bridge on a rainy Monday. " * 8 + "Write a limerick about it."
    assert len(paragraph) >= MIN_CHARS
    assert (
        instruction_part(paragraph) == "The mayor opened the bridge on a rainy Monday. ... Write a limerick about it."
    )


def test_only_named_views_can_be_saved():
    assert view_name(None) is None and view_name(VIEWS["instruction"]) == "instruction"
    with pytest.raises(ValueError, match="named views"):
        view_name(str.lower)


def test_the_instruction_blocks_read_the_instruction_and_not_the_material(small_data, small_X):
    head = EmbeddingClassifier(C=4.0, calibration="none").fit(small_X, small_data.labels, texts=small_data.texts)
    whole, instruction = head.vectorizer_.transformer_list[:2], head.vectorizer_.transformer_list[2:]
    assert len(instruction) == 2 and all(v.preprocessor is VIEWS["instruction"] for _, v in instruction)
    ask = "\nwrite a funny song about it"
    one, other = f"Minutes:\n{MATERIAL}{ask}", f"Minutes:\n{MATERIAL.replace('council', 'school board')}{ask}"
    for _, vectorizer in instruction:
        np.testing.assert_array_equal(vectorizer.transform([one]).toarray(), vectorizer.transform([other]).toarray())
        summary = vectorizer.transform([f"Minutes:\n{MATERIAL}\nsummarize in two lines"])
        assert (summary != vectorizer.transform([one])).nnz > 0
    for _, vectorizer in whole:  # the whole-prompt blocks still see the material
        assert (vectorizer.transform([one]) != vectorizer.transform([other])).nnz > 0


def test_a_head_saved_before_the_view_existed_loads_without_it(small_data, small_X):
    head = EmbeddingClassifier(C=4.0, instruction=False).fit(small_X, small_data.labels, texts=small_data.texts)
    structure, tensors = encode_head(head)
    spec = json.loads(structure)
    assert all(v["params"]["preprocessor"] is None for v in spec["vectorizers"])
    del spec["params"]["instruction"]
    old = decode_head(json.dumps(spec).encode(), tensors)
    assert old.get_params()["instruction"] is False
    texts = small_data.texts[:30]
    np.testing.assert_array_equal(old.predict_proba(small_X[:30], texts), head.predict_proba(small_X[:30], texts))


def test_cross_validation_can_choose_between_the_views(small_data, embedder):
    result = train(small_data, TrainConfig(c_grid=(4.0,), instruction=(True, False), cv_folds=3), embedder=embedder)
    grid = result.metrics["cv_grid"]
    assert sorted(g["instruction"] for g in grid) == [False, True]
    chosen = result.metrics["best_params"]["instruction"]
    assert (
        max(grid, key=lambda g: g["cv_macro_f1"])["instruction"] == chosen or len({g["cv_macro_f1"] for g in grid}) == 1
    )
    blocks = result.model.head_.vectorizer_.transformer_list
    assert len(blocks) == (4 if chosen else 2) and result.model.head_.instruction is chosen
    with pytest.raises(ConfigError, match="instruction must hold"):
        TrainConfig(instruction=())


def test_prefitted_ngrams_must_match_the_heads_view(small_data, small_X):
    from router_ml.model import tfidf_features

    texts = small_data.texts
    whole_only = tfidf_features(False)
    matrix = whole_only.fit_transform(texts)
    with pytest.raises(ValueError, match="needs 4"):
        EmbeddingClassifier(C=4.0).fit(small_X, small_data.labels, texts, ngrams=(whole_only, matrix))
    head = EmbeddingClassifier(C=4.0, instruction=False, calibration="none")
    head.fit(small_X, small_data.labels, texts, ngrams=(whole_only, matrix))
    assert len(head.vectorizer_.transformer_list) == 2
