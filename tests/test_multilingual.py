"""Every language: the USE multilingual encoder (the default), n-grams of scripts written without spaces, the
instruction view of CJK and mixed prompts, and languages in data and reports."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from router_ml import artifact
from router_ml.cli import cli
from router_ml.data import load_bundled, load_file
from router_ml.embed import DEFAULT_MODEL, USE_MODEL, make_embedder, use_multilingual
from router_ml.embed.use_multilingual import UseEmbedder, head_and_tail_chars
from router_ml.evaluation import evaluate
from router_ml.exceptions import ConfigError, EmbedderError
from router_ml.fast_head import LinearHead
from router_ml.instruction import instruction_part
from router_ml.route_table import load_routes
from router_ml.router import Router
from router_ml.tokens import DEFAULT_TOKEN_PATTERN, TOKEN_PATTERN
from router_ml.training import TrainConfig, train, training_embedder

from .conftest import _saved, evenly_per_label

PER_LABEL = 60
PROMPTS = [
    "帮我写一个Python函数，计算列表里所有偶数的和。",
    "写一首关于秋天落叶的七言绝句。",
    "一个水池有两个进水管，甲管6小时注满，乙管4小时注满，两管同时开要多久？",
    "日本の首都はどこですか？",
    "この関数のバグを直してください：def add(a, b): return a - b",
    "ช่วยแต่งกลอนเกี่ยวกับทะเลยามเย็นให้หน่อย",
    "파이썬으로 퀵소트를 구현해 줘",
    "Напиши рассказ о коте, который научился летать.",
    "Please summarise this for my boss: Продажи выросли на 12 %, но маржа упала из-за логистики.",
    "Переведи на английский и объясни ошибку: TypeError: 'NoneType' object is not subscriptable",
    "bhai ek python script likh do jo folder ke saare pdf merge kare",
]


@pytest.fixture(scope="module")
def use_data():
    """PER_LABEL prompts a label from the bundled training split, evenly spaced, so every language batch is in."""
    return evenly_per_label(load_bundled("train"), PER_LABEL)


@pytest.fixture(scope="module")
def use_result(use_data, default_embedder):
    return train(use_data, TrainConfig(c_grid=(4.0,), cv_folds=3), embedder=default_embedder)


@pytest.fixture(scope="module")
def use_artifact(use_result, use_data, tmp_path_factory) -> Path:
    return _saved(use_result, use_data, tmp_path_factory.mktemp("use") / "router")


def test_default_is_use_on_numpy_with_translations_close_together(default_embedder) -> None:
    assert TrainConfig().embedder == USE_MODEL and training_embedder(TrainConfig()).backend == "numpy"
    assert default_embedder.backend == "numpy" and default_embedder.dim == 512
    poem = ["Write a poem about the sea.", "Escribe un poema sobre el mar.", "写一首关于大海的诗。"]
    sql = ["Fix this SQL query: SELECT * FORM users", "修复这个SQL查询：SELECT * FORM users"]
    X = default_embedder.encode(poem + sql)
    assert X.shape == (5, 512) and X.dtype == np.float32
    cos = X @ X.T / np.outer(np.linalg.norm(X, axis=1), np.linalg.norm(X, axis=1))
    assert min(cos[0, 1], cos[0, 2]) > max(cos[0, 3], cos[0, 4], cos[2, 4])  # meaning, not language
    assert cos[3, 4] > cos[3, 2]


def test_use_weights_are_hash_checked(tmp_path: Path, monkeypatch) -> None:
    real = use_multilingual._resources()
    folder = tmp_path / "resources"
    folder.mkdir()
    shutil.copyfile(real / "sp.model", folder / "sp.model")
    monkeypatch.setattr(use_multilingual, "_resources", lambda: folder)
    with pytest.raises(EmbedderError, match=r"weights\.npz is missing; reinstall"):
        _ = UseEmbedder().model
    weights = bytearray((real / "weights.npz").read_bytes())
    weights[len(weights) // 2] ^= 0xFF  # one byte changed
    (folder / "weights.npz").write_bytes(bytes(weights))
    with pytest.raises(EmbedderError, match=r"weights\.npz has SHA-256 [0-9a-f]{64}, expected 0db566fd"):
        _ = UseEmbedder().model


def test_use_runs_only_on_numpy_and_other_models_never_on_numpy() -> None:
    with pytest.raises(EmbedderError, match=r"does not run on backend 'onnx'; it runs on \['numpy'\]"):
        make_embedder(USE_MODEL, "onnx")
    with pytest.raises(EmbedderError, match=r"does not run on backend 'numpy'"):
        make_embedder(DEFAULT_MODEL, "numpy")
    with pytest.raises(ConfigError, match="runs on"):
        TrainConfig(backend="onnx-int8")
    assert TrainConfig(embedder=DEFAULT_MODEL).backend is None
    assert head_and_tail_chars("x" * 5000).startswith("x" * 1000 + " ... ")
    assert len(head_and_tail_chars("x" * 5000)) == 2005


def test_use_training_never_falls_back_to_torch(monkeypatch) -> None:
    from router_ml import training

    def broken(name, backend=None, **kwargs):
        raise EmbedderError("weights.npz has SHA-256 0000, expected 0db5")

    monkeypatch.setattr(training, "make_embedder", broken)
    with pytest.raises(EmbedderError, match="SHA-256"):
        training.training_embedder(TrainConfig())


def test_token_pattern_splits_scripts_written_without_spaces() -> None:
    assert re.findall(TOKEN_PATTERN, "写一首诗") == ["写", "一", "首", "诗"]
    assert re.findall(DEFAULT_TOKEN_PATTERN, "写一首诗") == ["写一首诗"]  # one "word" no other prompt shares
    assert re.findall(TOKEN_PATTERN, "バグを直して") == ["バ", "グ", "を", "直", "し", "て"]
    assert re.findall(TOKEN_PATTERN, "แต่งกลอน") == list("แต่งกลอน")
    assert re.findall(TOKEN_PATTERN, "파이썬으로 퀵소트를") == ["파이썬으로", "퀵소트를"]  # Korean keeps its words
    assert re.findall(TOKEN_PATTERN, "Напиши python-код x") == ["Напиши", "python", "код"]


def test_instruction_part_of_cjk_and_mixed_prompts() -> None:
    pasted = "本季度销售额增长了百分之十二，但是物流成本上升导致利润下降。" * 12
    text = "请把下面的内容总结成三句话。" + pasted + "谢谢！"
    part = instruction_part(text)
    assert part.startswith("请把下面的内容总结成三句话。") and part.endswith("谢谢！") and len(part) < len(text)
    mixed = "Summarise this for my manager:\n" + "Продажи выросли, но маржа упала из-за логистики. " * 6
    assert instruction_part(mixed).startswith("Summarise this for my manager:")


def test_fast_head_equals_scikit_learn_on_every_script(use_result, use_data, default_embedder) -> None:
    head = use_result.model.head_
    words = [v for _, v in head.vectorizer_.transformer_list if v.analyzer == "word"]
    assert words and all(v.token_pattern == TOKEN_PATTERN for v in words)
    assert any(re.fullmatch(r"[\u4e00-\u9fff]( [\u4e00-\u9fff])?", g) for g in words[0].vocabulary_)  # CJK n-grams
    texts = PROMPTS + use_data.texts[:: len(use_data) // 30]
    X = default_embedder.encode(texts)
    fast = LinearHead.compile(head)
    assert fast is not None
    expected = head.predict_proba(X, texts)
    np.testing.assert_allclose(fast.predict_proba(X, texts), expected, atol=1e-5)
    np.testing.assert_allclose(fast.predict_proba(X, texts), expected, atol=1e-5)  # from the word memos


def test_language_column_is_read_and_reported(use_result, tmp_path: Path) -> None:
    rows = [
        {"text": "写一首关于秋天的诗。", "label": "creative", "language": "zh"},
        {"text": "帮我写一个Python函数，反转字符串。", "label": "code", "language": "zh"},
        {"text": "Напиши, пожалуйста, короткое стихотворение о зиме и о том, как падает снег.", "label": "creative"},
        {"text": "Сколько будет 17 умножить на 23? Объясни по шагам.", "label": "reasoning"},
        {"text": "What is the capital of France?", "label": "simple", "language": "en"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    data = load_file(path)
    assert data.languages == ["zh", "zh", None, None, "en"]
    assert data.subset([0, 4]).languages == ["zh", "en"]
    report = evaluate(use_result.model, data, load_routes(), threshold=use_result.threshold)
    assert set(report.per_language) == {"zh", "ru", "en"}  # Russian detected, the others as given
    assert report.per_language["zh"]["n"] == 2
    assert "language" in report.format()


def test_language_column_must_be_text(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "hola", "label": "simple", "language": ["es"]}\n', encoding="utf-8")
    with pytest.raises(Exception, match=r"bad\.jsonl:1"):
        load_file(path)


def test_use_artifact_round_trip_and_its_only_backend(use_artifact: Path, use_result) -> None:
    manifest = artifact.read_manifest(use_artifact)
    assert manifest["embedder"]["name"] == USE_MODEL and manifest["embedder"]["backend"] == "numpy"
    router = Router.load(use_artifact)
    assert router.backend == "numpy"
    decisions = router.route_batch(PROMPTS)
    X = use_result.model.embedder.encode(PROMPTS)
    expected = use_result.model.predict_proba_embeddings(X, PROMPTS)
    got = np.array([[d.probabilities[c] for c in use_result.model.classes_] for d in decisions])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(EmbedderError, match=r"runs on \['numpy'\]"):
        Router.load(use_artifact, backend="onnx")
    result = CliRunner().invoke(cli, ["backends", str(use_artifact)])
    assert result.exit_code == 0 and "nothing to measure: use-multilingual-v3 runs only on backend 'numpy'" in (
        result.output
    )
