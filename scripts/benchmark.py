"""Routing speed benchmark: raw embedding vs full routing, single and batched, plus training time.

Every figure is measured in this one run, and each routing figure is printed as a ratio against the raw
embedding of the same inputs with the same embedder (the baseline a router cannot beat).

    python scripts/benchmark.py [--model artifacts/router] [--repeats 200] [--skip-train]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHORT = "Can you write a Python function that checks whether a string is a palindrome, ignoring case and spaces?"
LONG = (
    "Here are the notes from yesterday's product meeting. The team agreed to move the mobile release from March to "
    "April because the payment provider's new API is still in beta and two of our largest customers asked for more "
    "time to test the offline mode. Marketing will keep the launch webinar on the original date but present it as a "
    "preview. Engineering raised concerns about the sync conflicts reported by the pilot group: about three percent "
    "of sessions end with duplicated records, mostly on older Android devices with intermittent connectivity. Priya "
    "will lead a task force to reproduce the issue and propose a fix within two weeks. Finance reminded everyone "
    "that the cloud budget is already eighty percent spent for the quarter, so load tests should run on the staging "
    "cluster only. Support asked for a short FAQ for customers who upgrade early, and for a clear rollback "
    "procedure. The next check-in is on Thursday at ten. Please summarize these notes as five bullet points with "
    "owners and deadlines, and list any open questions separately at the end."
)


def percentiles(func: Callable[[], object], repeats: int, warmup: int = 10) -> tuple[float, float]:
    """p50 and p95 of ``func``'s wall time in milliseconds."""
    for _ in range(warmup):
        func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", type=Path, default=Path("artifacts/router"), help="router artifact (trained if missing)"
    )
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per single-prompt measurement")
    parser.add_argument("--batch", type=int, default=512, help="prompts in the batched-throughput measurement")
    parser.add_argument("--skip-train", action="store_true", help="do not time training on the bundled data")
    args = parser.parse_args()

    import torch

    from router_ml import artifact
    from router_ml.data import load_bundled
    from router_ml.route import Router
    from router_ml.training import TrainConfig, train

    data = load_bundled("train")
    train_seconds = None
    if not args.skip_train or not (args.model / "manifest.json").is_file():
        os.environ["ROUTER_ML_CACHE_DIR"] = "off"  # time the real thing, embedding included
        start = time.perf_counter()
        result = train(data, TrainConfig())
        train_seconds = time.perf_counter() - start
        artifact.save(
            result.model, args.model, threshold=result.threshold, data=data, metrics=result.metrics, overwrite=True
        )

    router = Router.load(args.model)
    embedder = router.artifact.model.embedder
    tokenizer = embedder.model.tokenizer
    print(f"router-ml benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(f"embedder {embedder.name} ({embedder.backend}), head {router.artifact.manifest['head']['params']}\n")

    print(f"{'single prompt':<28}{'embed p50/p95 ms':>18}{'route p50/p95 ms':>18}{'ratio p50':>11}")
    for name, text in (("short", SHORT), ("long", LONG)):
        tokens = len(tokenizer(text)["input_ids"])
        e50, e95 = percentiles(lambda t=text: embedder.encode(t), args.repeats)
        r50, r95 = percentiles(lambda t=text: router.route(t), args.repeats)
        print(
            f"{name + f' ({tokens} tokens)':<28}{e50:>9.2f} / {e95:<6.2f}{r50:>10.2f} / {r95:<6.2f}{r50 / e50:>10.2f}x"
        )

    mixed = [t for t in load_bundled("heldout").texts][: args.batch]
    start = time.perf_counter()
    embedder.encode(mixed, batch_size=64)
    embed_rate = len(mixed) / (time.perf_counter() - start)
    start = time.perf_counter()
    router.route_batch(mixed)
    route_rate = len(mixed) / (time.perf_counter() - start)
    print(f"\nbatched throughput, {len(mixed)} mixed-length held-out prompts:")
    print(f"  raw embedding {embed_rate:8.1f} prompts/s")
    print(f"  route_batch   {route_rate:8.1f} prompts/s   ({route_rate / embed_rate:.2f}x of raw embedding)")
    if train_seconds is not None:
        print(f"\ntraining on {len(data)} bundled prompts (embedding included, no cache): {train_seconds:.1f} s")


if __name__ == "__main__":
    main()
