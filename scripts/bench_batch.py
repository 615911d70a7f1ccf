"""Throughput of route-batch on the local engine and on the Ray engine (1 and 2 workers), on the same file.

Trains a small router on the default embedder (USE multilingual v3: routing time is its embedding time, whatever
the head), writes N bundled prompts as 4 Parquet parts, routes them on each engine into a fresh folder, and prints
rows per second with the ratio to the local engine measured in the same run. The local engine runs twice: as it
ships (one BLAS thread, as each Ray actor has: Ray sets OMP_NUM_THREADS=1 for a one-CPU actor) and with numpy's
BLAS on every core (``blas_threads=None``). Each Ray figure includes its actors' start (each loads the router);
the Ray runtime's own start is printed apart. It also checks the identity target: every output part of the Ray
engine equals the local engine's (labels, and probabilities bit for bit).

    python scripts/bench_batch.py                   # 10,000 prompts, workers 1 and 2
    python scripts/bench_batch.py --prompts 2000 --workers 1,2 --json artifacts/bench-batch.json
    python scripts/bench_batch.py --driver-only     # what the driver alone sustains: read, check, chunk, write
    python scripts/bench_batch.py --success-heads --prompts 3072   # labels and success in one embedding pass

``--success-heads`` gives the small router nine success heads (outcomes made up from the labels: the timing does
not depend on them) and times, per 256-prompt chunk and interleaved, what the batch engine runs for each chunk
(``Router.route_rows(chunk, success=True)``: one embedding pass) against a routing pass plus a
``predict_success`` pass (what it ran before 0.5.2).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from router_ml import artifact
from router_ml.batch import route_file
from router_ml.batch.engine import chunked
from router_ml.batch.io import read_part, write_atomic
from router_ml.data import load_bundled
from router_ml.route_table import bundled_routes_path
from router_ml.training import TrainConfig, train

PARTS = 4


def small_router(folder: Path) -> Path:
    """A router trained on 40 bundled prompts a label (USE multilingual v3, the default embedder)."""
    data = load_bundled("train")
    keep = []
    for label in sorted(set(data.labels)):
        rows = [i for i, y in enumerate(data.labels) if y == label]
        keep += rows[:: len(rows) // 40][:40]
    subset = data.subset(sorted(keep))
    result = train(subset, TrainConfig(cv_folds=3))
    return artifact.save(
        result.model, folder / "router", threshold=result.threshold, data=subset, embeddings=result.embeddings,
        metrics=result.metrics, routes_file=bundled_routes_path(),
    )  # fmt: skip


def write_input(folder: Path, n: int) -> Path:
    """``n`` bundled prompts (all splits, in file order, repeated if needed) as PARTS Parquet parts."""
    texts = load_bundled("all").texts
    texts = (texts * (n // len(texts) + 1))[:n]
    folder.mkdir(parents=True)
    step = -(-n // PARTS)
    for k in range(PARTS):
        part = texts[k * step : (k + 1) * step]
        pq.write_table(
            pa.table({"id": np.arange(k * step, k * step + len(part)), "text": part}), folder / f"{k}.parquet"
        )
    return folder


def compare(local: Path, other: Path) -> dict[str, Any]:
    """Whether every part of ``other`` equals ``local``'s, with the labels that differ and the largest probability
    difference."""
    equal, differing, largest, rows = True, 0, 0.0, 0
    for path in sorted(local.glob("*.parquet")):
        a, b = pq.read_table(path), pq.read_table(other / path.name)
        equal &= a.equals(b)
        differing += sum(x != y for x, y in zip(a["label"].to_pylist(), b["label"].to_pylist(), strict=True))
        for x, y in zip(a["probabilities"].flatten(), b["probabilities"].flatten(), strict=True):
            largest = max(largest, float(np.max(np.abs(np.asarray(x) - np.asarray(y)))))
        rows += a.num_rows
    return {"rows": rows, "tables_equal": equal, "labels_differing": differing, "max_probability_diff": largest}


def driver_rate(source: Path, batch_size: int) -> float:
    """Rows per second the driver sustains on its own share of the work: read and check each part, pickle its
    chunks as the Ray engine ships them, and write the part back with its input columns."""
    started, rows = time.perf_counter(), 0
    for path in sorted(source.glob("*.parquet")):
        part = read_part(path, "text")
        payloads = [pickle.dumps(chunk) for chunk in chunked(part.prompts, batch_size)]
        assert len(payloads) == -(-len(part.prompts) // batch_size)
        write_atomic(part.table, source.parent / f"{path.stem}.out.parquet")
        rows += len(part.rows)
    return rows / (time.perf_counter() - started)


def success_pass(folder: Path, n: int, batch_size: int) -> dict[str, float]:
    """Prompts per second of one pass for labels and success against two passes, interleaved per chunk."""
    from router_ml import Router
    from router_ml.success import Outcomes
    from router_ml.success.training import save_outcome_router, train_outcomes

    category = artifact.load(small_router(folder))
    data = load_bundled("train").subset(range(600))
    labels = np.array(data.labels)
    models = [f"model-{k}" for k in range(9)]
    scores = np.stack([np.roll(labels, k) == labels for k in range(9)], axis=1).astype(float)
    outcomes = Outcomes(list(data.texts), models, scores, [f"made-up:{i}" for i in range(len(labels))])
    trained = train_outcomes(outcomes, embedder=category.model.embedder, prices={m: (1.0, 1.0) for m in models})
    router = Router.load(save_outcome_router(trained, folder / "both", category=category), cache_size=0)
    texts = load_bundled("all").texts[:n]
    one = two = 0.0
    for chunk in chunked(texts, batch_size):
        started = time.perf_counter()
        router.route_batch(chunk), router.predict_success(chunk)
        two += time.perf_counter() - started
        started = time.perf_counter()
        router.route_rows(chunk, success=True)
        one += time.perf_counter() - started
    return {"prompts": len(texts), "one_pass_per_s": len(texts) / one, "two_passes_per_s": len(texts) / two}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2", help="Ray worker counts, comma-separated")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--driver-only", action="store_true", help="measure the driver's share of the work only")
    parser.add_argument("--success-heads", action="store_true", help="one pass for labels and success against two")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    if args.success_heads:
        r = success_pass(work, args.prompts, args.batch_size)
        print(
            f"labels and success of {r['prompts']} prompts: one embedding pass {r['one_pass_per_s']:,.0f} prompts/s, "
            f"two passes {r['two_passes_per_s']:,.0f} prompts/s: {r['one_pass_per_s'] / r['two_passes_per_s']:.2f}x"
        )
        return
    if args.driver_only:
        rate = driver_rate(write_input(work / "input", args.prompts), args.batch_size)
        print(f"driver: {rate:,.0f} rows/s read, checked, chunked and written ({args.prompts} prompts)")
        return
    model = small_router(work)
    source = write_input(work / "input", args.prompts)
    results: dict[str, Any] = {"prompts": args.prompts, "cpus": os.cpu_count(), "batch_size": args.batch_size}
    local = route_file(model, source, work / "local", batch_size=args.batch_size)
    results["local"] = local.to_dict()
    print(f"local engine: {local.rows} prompts in {local.seconds:.1f}s, {local.rows_per_second:.1f} prompts/s")
    every = route_file(model, source, work / "local-all", batch_size=args.batch_size, blas_threads=None)
    results["local_blas_every_core"] = {**every.to_dict(), "identity": compare(work / "local", work / "local-all")}
    print(f"local engine, BLAS on every core: {every.rows_per_second:.1f} prompts/s in {every.seconds:.1f}s")
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    results["ray_init_seconds"] = round(time.perf_counter() - started, 1)
    print(f"Ray runtime started in {results['ray_init_seconds']}s (not counted below)")
    for workers in (int(w) for w in args.workers.split(",")):
        out = work / f"ray-{workers}"
        run = route_file(model, source, out, "ray", workers=workers, batch_size=args.batch_size)
        ratio, ratio_every = run.rows_per_second / local.rows_per_second, run.rows_per_second / every.rows_per_second
        same = compare(work / "local", out)
        results[f"ray_{workers}"] = {
            **run.to_dict(), "ratio_to_local": round(ratio, 3), "ratio_to_local_blas_every_core": round(ratio_every, 3),
            "identity": same,
        }  # fmt: skip
        print(
            f"ray engine, {workers} worker(s): {run.rows_per_second:.1f} prompts/s in {run.seconds:.1f}s, "
            f"{ratio:.2f}x local, {ratio_every:.2f}x local with BLAS on every core; identical to local: "
            f"{same['tables_equal']} ({same['rows']} rows, "
            f"{same['labels_differing']} labels differ, largest probability difference {same['max_probability_diff']})"
        )
    ray.shutdown()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
