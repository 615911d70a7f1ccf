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
from router_ml.embed import embed_texts, make_embedder
from router_ml.metrics import classification_report
from router_ml.model import EmbeddingClassifier
from router_ml.training import TrainConfig, train

PREVIOUS_GRID = {"c_grid": (4.0, 16.0, 64.0), "tfidf": (True, False)}
"""The grid training searched before this benchmark's change."""


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
    torch_model = make_embedder(backend="torch")
    onnx = make_embedder(backend="onnx")
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
    print(f"embedding {len(texts)} prompts:")
    print(f"  sentence-transformers torch encode  {torch_seconds:7.1f}s  {len(texts) / torch_seconds:6.1f}/s  1.00×")
    print(
        f"  onnx float backend                  {onnx_seconds:7.1f}s  {len(texts) / onnx_seconds:6.1f}/s  "
        f"{torch_seconds / onnx_seconds:.2f}×  (cosine to torch ≥ 0.9999 on {np.mean(cosine > 0.9999):.1%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=1000, help="prompts for the embedding comparison")
    parser.add_argument("--skip-reference", action="store_true", help="do not run the previous procedure")
    args = parser.parse_args()
    data = load_bundled("train")
    rng = np.random.default_rng(0)
    embedding_speed([data.texts[i] for i in rng.choice(len(data), size=min(args.sample, len(data)), replace=False)])

    onnx = make_embedder(backend="onnx")
    started = time.perf_counter()
    X = embed_texts(onnx, data.texts)
    print(f"\nembedded the {len(data)} training prompts on onnx in {time.perf_counter() - started:.1f}s (cache)")
    y = np.asarray(data.labels)
    result = train(data, TrainConfig(), embedder=onnx)
    m = result.metrics
    new_seconds = m["stage_seconds"]["select"] + m["stage_seconds"]["fit"]
    print(f"\nmodel selection + final fit on {len(data)} prompts:")
    if not args.skip_reference:
        config = TrainConfig(**PREVIOUS_GRID)
        best, score, seconds = reference_selection(X, y, data.texts, config)
        print(f"  previous procedure, previous grid   {seconds:7.1f}s  1.00×  best {best} cv macro-F1 {score:.4f}")
        ratio = f"{seconds / new_seconds:.2f}×"
    else:
        score, ratio = None, "-"
    print(
        f"  one pass, current grid              {new_seconds:7.1f}s  {ratio}  best {m['best_params']} "
        f"cv macro-F1 {m['cv_macro_f1']:.4f}"
        + (f" (difference {m['cv_macro_f1'] - score:+.4f})" if score is not None else "")
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
