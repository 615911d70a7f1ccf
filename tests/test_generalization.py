"""Estimates for new sources: prompts' sources, per-source scores, grouped cross-validation, paired bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import f1_score

from router_ml.cli import cli
from router_ml.data import auto_group_depth, load_bundled, load_file
from router_ml.evaluation import _folds, cross_validate_methods
from router_ml.exceptions import DataError
from router_ml.metrics import paired_bootstrap, per_group_scores
from router_ml.model import EmbeddingClassifier


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_sources_are_read_trimmed_and_all_or_nothing(tmp_path):
    rows = [
        {"text": "sort a list in go", "label": "code", "source": "forum:go:1"},
        {"text": "a poem about rain", "label": "creative", "source": "app:poems:7"},
    ]
    path = write_rows(tmp_path / "a.jsonl", rows)
    assert load_file(path).groups == ["forum:go:1", "app:poems:7"]
    assert load_file(path, group_depth=1).groups == ["forum", "app"]
    assert load_file(path, group_column=None).groups is None
    assert load_file(write_rows(tmp_path / "b.jsonl", [{"text": "x", "label": "code"}])).groups is None
    mixed = write_rows(tmp_path / "c.jsonl", [*rows, {"text": "no source here", "label": "simple"}])
    with pytest.raises(DataError, match=r"c\.jsonl:3: no source, while other rows have one"):
        load_file(mixed)


def test_auto_group_depth_merges_per_prompt_ids_into_sources_with_several_prompts(tmp_path):
    rows = [
        {"text": f"prompt {i} of {cat}", "label": "code" if i % 2 else "simple", "source": f"bench:{cat}:{i}"}
        for cat in ("math", "coding")
        for i in range(6)
    ] + [{"text": "one more", "label": "code", "source": "bench:rare:1"}]
    path = write_rows(tmp_path / "ids.jsonl", rows)
    assert auto_group_depth(load_file(path).groups) == 2  # ids are singletons; 12 of 13 prompts in groups of 6
    assert set(load_file(path, group_depth="auto").groups) == {"bench:math", "bench:coding", "bench:rare"}
    assert auto_group_depth(["a:x", "a:y", "b:z"]) == 1  # no depth gives groups of 5: the first part
    assert auto_group_depth(["forum"] * 5 + ["app"] * 5) == 0  # already whole sources of 5: kept


def test_bundled_prompts_are_grouped_by_batch_file():
    data = load_bundled("heldout")
    assert data.groups is not None and len(data.groups) == len(data)
    assert "material_first" in set(data.groups) and len(set(data.groups)) >= 20
    sub = data.subset([0, 5])
    assert sub.groups == [data.groups[0], data.groups[5]]


def test_per_source_scores_put_the_worst_first():
    truth = ["code", "code", "simple", "creative", "creative", "simple"]
    pred = ["code", "code", "simple", "simple", "creative", "creative"]
    groups = ["a", "a", "a", "b", "b", "b"]
    scores = per_group_scores(truth, pred, groups)
    assert list(scores) == ["b", "a"] and scores["a"]["macro_f1"] == 1.0
    assert scores["b"]["macro_f1"] == pytest.approx(f1_score(truth[3:], pred[3:], average="macro"))


def test_paired_bootstrap_matches_the_point_difference_and_brackets_it():
    rng = np.random.default_rng(0)
    labels = np.array(["code", "creative", "reasoning", "simple"])
    truth = labels[rng.integers(0, 4, 1500)]
    a = np.where(rng.random(1500) < 0.85, truth, labels[rng.integers(0, 4, 1500)])
    b = np.where(rng.random(1500) < 0.95, truth, labels[rng.integers(0, 4, 1500)])
    result = paired_bootstrap(list(truth), list(a), list(b))
    expected = f1_score(truth, b, average="macro") - f1_score(truth, a, average="macro")
    assert result["delta"] == pytest.approx(expected, abs=1e-4)
    assert 0 < result["low"] < result["delta"] < result["high"]  # b is clearly better
    same = paired_bootstrap(list(truth), list(a), list(a))
    assert same["delta"] == same["low"] == same["high"] == 0.0
    small = paired_bootstrap(list(truth[:60]), list(a[:60]), list(b[:60]))
    assert small["high"] - small["low"] > result["high"] - result["low"]  # fewer prompts, wider interval


def test_grouped_folds_never_split_a_source(small_data):
    y = np.asarray(small_data.labels)
    groups = [f"src{i % 7}" for i in range(len(y))]
    for train_idx, test_idx in _folds(y, groups, 5, seed=0):
        assert not {groups[i] for i in train_idx} & {groups[i] for i in test_idx}
    with pytest.raises(DataError, match="needs at least 5 sources, found 3"):
        _folds(y, [f"s{i % 3}" for i in range(len(y))], 5, seed=0)


def test_grouped_cross_validation_reports_each_source(small_data, small_result):
    groups = [f"src{i % 6}" for i in range(len(small_data))]
    scores = cross_validate_methods(
        small_data.texts, small_data.labels, small_result.embeddings, EmbeddingClassifier(C=4.0), 3, groups=groups
    )
    per_source = scores["router"]["per_source"]
    assert set(per_source) == set(groups) and sum(s["n"] for s in per_source.values()) == len(small_data)
    worst = next(iter(per_source.values()))["macro_f1"]
    assert worst == min(s["macro_f1"] for s in per_source.values())


def test_eval_cli_reports_sources_and_groups_its_folds(small_artifact, small_data, tmp_path):
    rows = [
        {"text": t, "label": y, "source": f"set{i % 4}:part:{i}"}
        for i, (t, y) in enumerate(zip(small_data.texts[::2], small_data.labels[::2], strict=True))
    ]
    path = write_rows(tmp_path / "eval.jsonl", rows)
    args = ["eval", str(small_artifact), "--data", str(path), "--no-baselines", "--cv", "3"]
    result = CliRunner().invoke(cli, [*args, "--report-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "per source (macro-F1, worst first; worst: set" in result.output
    assert "3-fold cross-validation (grouped by source)" in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["per_source"]) == {"set0:part", "set1:part", "set2:part", "set3:part"}  # ids merged: auto
    assert report["cross_validation"]["grouped"] is True
    bad = CliRunner().invoke(cli, [*args, "--group-depth", "deep"])
    assert bad.exit_code == 2 and "expected 'auto' or a whole number of parts" in bad.output
