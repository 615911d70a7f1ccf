"""How long training takes, stage by stage, against the way it was done before, measured in the same run.

1. **Embedding:** sentence-transformers' torch ``encode`` against the ONNX float backend on the same prompts
   (a sample of the bundled training split), and whether the vectors agree.
2. **Model selection:** the previous procedure (every grid setting cross-validated from scratch, with its own
   TF-IDF fit per fold; then a second cross-validation of the calibrated head for the out-of-fold report; then
   ``CalibratedClassifierCV``'s own folds for the final head) against :func:`router_ml.training.train`'s single
   pass, both on the same cached embeddings, with their cross-validated macro-F1 (they must agree within 0.002).
3. **Training in total** (embedding included), as a multiple of its embedding time.

    python scripts/train_bench.py [--sample 1000] [--skip-reference]
"""

from __future__ import annotations

import argparse
import os
import time
from itertools import product

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from router_ml.data import load_bundled
from router_ml.embed import DEFAULT_MODEL, embed_texts, make_embedder
from router_ml.metrics import classification_report
from router_ml.model import EmbeddingClassifier
from router_ml.training import TrainConfig, train

PREVIOUS_GRID = {"c_grid": (4.0, 16.0, 64.0), "tfidf": (True, False)}
"""The grid training searched before the one-pass selection."""
PREVIOUS_DEFAULT_GRID = (8.0, 32.0)
"""The default C grid before the single default point, whose final fit waited for the folds."""


def _fold(head, X, y, texts, train_rows, test_rows):
    fitted = clone(head).fit(X[train_rows], y[train_rows], texts=list(texts[train_rows]))
    return fitted.predict_proba(X[test_rows], texts=list(texts[test_rows]))


def _oof(head, X, y, texts, splits):
    parts = Parallel(n_jobs=-1)(delayed(_fold)(head, X, y, texts, tr, te) for tr, te in splits)
    proba = np.zeros((len(y), len(np.unique(y))))
    for (_, te), p in zip(splits, parts, strict=True):
        proba[te] = p
    return proba


def reference_selection(X, y, texts, config: TrainConfig) -> tuple[dict, float, float]:
    """The previous procedure; returns (best setting, its cv macro-F1, seconds)."""
    started = time.perf_counter()
    texts, classes = np.asarray(texts, dtype=object), np.unique(y)
    splits = list(StratifiedKFold(config.cv_folds, shuffle=True, random_state=config.seed).split(X, y))
    grid = []
    for c, weight, tfidf in product(config.c_grid, config.class_weights, config.tfidf):
        head = EmbeddingClassifier(C=c, class_weight=weight, tfidf=tfidf, calibration="none")
        score = classification_report(y, classes[_oof(head, X, y, texts, splits).argmax(axis=1)]).macro_f1
        grid.append(({"C": c, "class_weight": weight, "tfidf": tfidf}, score))
    best, score = max(grid, key=lambda g: (g[1], -g[0]["C"]))
    head = EmbeddingClassifier(**best, calibration=config.calibration)
    _oof(head, X, y, texts, splits)  # the calibrated out-of-fold pass (report, threshold)
    clone(head).fit(X, y, texts=list(texts))
    return best, score, time.perf_counter() - started


def embedding_speed(texts: list[str]) -> None:
    torch_model = make_embedder(DEFAULT_MODEL, backend="torch")
    onnx = make_embedder(DEFAULT_MODEL, backend="onnx")
    torch_model.warm_up()
    onnx.warm_up()
    onnx.encode(texts[:32])
    started = time.perf_counter()
    reference = torch_model.model.encode(texts, batch_size=32, normalize_embeddings=True)
    torch_seconds = time.perf_counter() - started
    started = time.perf_counter()
    vectors = onnx.encode(texts)
    onnx_seconds = time.perf_counter() - started
    cosine = np.sum(reference * vectors, axis=1)  # long prompts differ: router-ml keeps their head and tail
    flop = _matmul_flop(torch_model, texts)
    rate = {name: flop / seconds / 1e9 / (os.cpu_count() or 1) for name, seconds in
            (("torch", torch_seconds), ("onnx", onnx_seconds))}  # fmt: skip
    print(f"embedding {len(texts)} prompts ({flop / 1e12:.2f} TFLOP of weight matrix products):")
    print(
        f"  sentence-transformers torch encode  {torch_seconds:7.1f}s  {len(texts) / torch_seconds:6.1f}/s  1.00×"
        f"  {rate['torch']:5.1f} GFLOP/s per core"
    )
    print(
        f"  onnx float backend                  {onnx_seconds:7.1f}s  {len(texts) / onnx_seconds:6.1f}/s  "
        f"{torch_seconds / onnx_seconds:.2f}×  {rate['onnx']:5.1f} GFLOP/s per core  "
        f"(cosine to torch ≥ 0.9999 on {np.mean(cosine > 0.9999):.1%})"
    )


def _matmul_flop(torch_model, texts: list[str]) -> float:
    """Floating-point operations of the transformer's weight matrix products over the prompts' tokens (each
    truncated to the model's maximum length): 2 × (4·h² + 2·h·i) per token and layer, h the hidden size and i
    the feed-forward size. Attention scores and the rest add a few percent; this is a floor, to compare a
    backend's rate with the CPU's peak."""
    config = torch_model.model[0].auto_model.config
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    limit = torch_model.max_seq_length
    tokens = sum(len(ids) for ids in torch_model.model.tokenizer(texts, truncation=True, max_length=limit)["input_ids"])
    return float(tokens) * layers * 2 * (4 * h * h + 2 * h * i)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=1000, help="prompts for the embedding comparison")
    parser.add_argument("--skip-reference", action="store_true", help="do not run the previous procedure")
    args = parser.parse_args()
    data = load_bundled("train")
    rng = np.random.default_rng(0)
    embedding_speed([data.texts[i] for i in rng.choice(len(data), size=min(args.sample, len(data)), replace=False)])

    onnx = make_embedder(DEFAULT_MODEL, backend="onnx")
    started = time.perf_counter()
    X = embed_texts(onnx, data.texts)
    print(f"\nembedded the {len(data)} training prompts on onnx in {time.perf_counter() - started:.1f}s (cache)")
    y = np.asarray(data.labels)
    result = train(data, TrainConfig(embedder=DEFAULT_MODEL), embedder=onnx)
    m = result.metrics
    new_seconds = m["stage_seconds"]["select"] + m["stage_seconds"]["fit"]
    print(f"\nmodel selection + final fit on {len(data)} prompts:")
    if not args.skip_reference:
        config = TrainConfig(embedder=DEFAULT_MODEL, **PREVIOUS_GRID)
        best, score, seconds = reference_selection(X, y, data.texts, config)
        print(f"  previous procedure, previous grid   {seconds:7.1f}s  1.00×  best {best} cv macro-F1 {score:.4f}")
        ratio = f"{seconds / new_seconds:.2f}×"
    else:
        score, ratio = None, "-"
    two = train(data, TrainConfig(embedder=DEFAULT_MODEL, c_grid=PREVIOUS_DEFAULT_GRID), embedder=onnx).metrics
    two_seconds = two["stage_seconds"]["select"] + two["stage_seconds"]["fit"]
    print(
        f"  one pass, grid C {PREVIOUS_DEFAULT_GRID} (final fit after the folds)  {two_seconds:7.1f}s  "
        f"best {two['best_params']} cv macro-F1 {two['cv_macro_f1']:.4f}"
    )
    print(
        f"  one pass, current grid              {new_seconds:7.1f}s  {ratio}  best {m['best_params']} "
        f"cv macro-F1 {m['cv_macro_f1']:.4f}"
        + (f" (difference {m['cv_macro_f1'] - score:+.4f})" if score is not None else "")
        + f" ({two_seconds / new_seconds:.2f}× faster than C {PREVIOUS_DEFAULT_GRID}, cv difference "
        f"{m['cv_macro_f1'] - two['cv_macro_f1']:+.4f})"
    )
    for point in m["cv_grid"]:
        print(f"    {point}")
    embed_rate = m["embedding"]["prompts_per_second"]
    uncached = len(data) / embed_rate if not m["embedding"]["cached"] else None
    if uncached is None:
        started = time.perf_counter()
        onnx.encode(data.texts)
        uncached = time.perf_counter() - started
    print(
        f"\ntraining in total: embedding {uncached:.1f}s + selection and fit {new_seconds:.1f}s = "
        f"{(uncached + new_seconds) / uncached:.2f}× the embedding time"
    )


if __name__ == "__main__":
    main()
