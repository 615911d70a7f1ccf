"""Training time against the time the default encoder takes to embed the same prompts alone, embedding cache off.

On the bundled training split, in one run:

1. the embedding alone, as ``encode`` runs it (chunks on one thread per core, one BLAS thread each), and the
   same chunks one after another on numpy's own BLAS threads (the encoder before 0.5.1), with their vectors
   compared;
2. ``router_ml.train`` with its defaults, uncached (so it embeds too): the total and each stage;
3. the ratio training / embedding alone (issue 22 aims at 1.5× or less).

    python scripts/train_speed.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ["ROUTER_ML_CACHE_DIR"] = "off"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from router_ml.data import load_bundled
from router_ml.embed import make_embedder, use_multilingual
from router_ml.training import TrainConfig, train


def _timed(func, *args):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - started, result


def _one_run(texts: list[str], data) -> dict[str, float]:  # type: ignore[no-untyped-def]
    embedder = make_embedder(TrainConfig().embedder)
    embedder.warm_up()
    parallel_s, parallel = _timed(embedder.encode, texts)
    minimum = use_multilingual.PARALLEL_MIN_TEXTS
    use_multilingual.PARALLEL_MIN_TEXTS = len(texts) + 1  # the same chunks, one after another
    try:
        sequential_s, sequential = _timed(embedder.encode, texts)
    finally:
        use_multilingual.PARALLEL_MIN_TEXTS = minimum
    train_s, result = _timed(train, data)
    stages = result.metrics["stage_seconds"]
    print(
        f"embedding alone: {parallel_s:.1f} s on every core, {sequential_s:.1f} s one chunk after another "
        f"({sequential_s / parallel_s:.2f}x; vectors equal: {np.array_equal(parallel, sequential)})\n"
        f"training: {train_s:.1f} s (embed with n-gram counting {stages['embed']:.1f} s, select "
        f"{stages['select']:.1f} s, calibrate {stages['fit']:.1f} s); cross-validated macro-F1 "
        f"{result.metrics['cv_macro_f1']:.4f}\n"
        f"training / embedding alone: {train_s / parallel_s:.2f}x (target 1.5x); against the sequential "
        f"embedding: {train_s / sequential_s:.2f}x",
        flush=True,
    )
    return {"embed": parallel_s, "sequential": sequential_s, "train": train_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="runs (the median ratio is printed)")
    args = parser.parse_args()
    data = load_bundled("train")
    print(f"{len(data)} training prompts, {os.cpu_count()} cores, cache off")
    runs = [_one_run(data.texts, data) for _ in range(args.repeats)]
    ratios = sorted(r["train"] / r["embed"] for r in runs)
    print(f"median training / embedding alone over {len(runs)} run(s): {ratios[len(ratios) // 2]:.2f}x")


if __name__ == "__main__":
    main()
