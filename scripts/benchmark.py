"""Routing speed and accuracy benchmark across embedder backends (numpy for USE multilingual v3, the default
model; torch, onnx, onnx-int8 for a sentence-transformers model), in one run.

Every routing figure is measured against the raw embedder of the same backend on the same inputs, in the same
run, with the two calls interleaved so that machine noise hits both alike:

1. a single short prompt (~30 tokens): ``embedder.encode(text)`` vs ``router.route(text)`` (decision cache off),
   p50 / p95 and the ratio routing / raw;
2. a single long prompt (~280 tokens, longer than the model reads, so it is cut to head + tail): the same;
3. a stream of distinct held-out prompts routed one at a time by a fresh router (its per-word n-gram memos start
   empty and fill as real traffic would), against the raw embedder on the same prompts: mean ms and the ratio;
4. batched throughput on a fixed sample of the bundled held-out split (real mixed lengths):
   ``router.route_batch`` vs ``embedder.encode``, prompts/s, plus a sweep of the encoder's ``batch_size``;
5. accuracy on the full held-out split: torch vs onnx label differences and the onnx-int8 macro-F1 delta, via
   :func:`router_ml.backend_check.measure_backends` (which records them in the manifest; an artifact trained on
   torch embeddings refuses onnx-int8 until it has);
6. startup: a fresh ``python -c`` process that imports, loads the artifact and answers its first ``route()``,
   timed from inside the process (from before its imports) and by this process (wall time);
7. the decision cache: a hit on a repeated prompt vs uncached routing;
8. optionally (``--train``) training time on the bundled train split.

It ends with markdown tables (results per backend, targets with pass/fail) ready to paste into the README.
CPU only, no network (the ONNX export is made offline at first use, into ``<artifact>/onnx``).

    python scripts/benchmark.py [--model artifacts/router] [--backends torch,onnx,onnx-int8] [--repeats 200]
                                [--batch 512] [--batch-sizes 1,8,16,32,64] [--startup-runs 2] [--train]
                                [--skip-accuracy] [--no-breakdown] [--json results.json]

Quick run while developing: ``python scripts/benchmark.py --repeats 20 --rounds 1 --batch 128 --startup-runs 1``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "TOKENIZERS_PARALLELISM": "false",
    "TQDM_DISABLE": "1",  # no progress bars from the held-out embedding passes in the log
}.items():
    os.environ.setdefault(_key, _value)

BACKENDS = ("numpy", "torch", "onnx", "onnx-int8")
DEFAULT_BATCH_SIZE = 64
"""``Embedder.encode``'s default ``batch_size``, which ``Router.route_batch`` uses."""
TARGET_BACKENDS = ("numpy", "onnx-int8")
"""The targets are checked on the first of these benchmarked: the default model's backend, else the fastest ONNX."""

# Targets from the acceptance criteria.
SHORT_P50_MS = 5.0
OVERHEAD_MAX = 1.10
LONG_P50_MS = 20.0
BATCH_MIN_RATE = 200.0
F1_DELTA_MAX = 0.01
STARTUP_MAX_S = 3.0

SHORT = (
    "Can you write a Python function that checks whether a string is a palindrome, ignoring case, spaces and "
    "punctuation?"
)
LONG = (
    "Here are the notes from yesterday's product meeting. The team agreed to move the mobile release from March to "
    "April because the payment provider's new API is still in beta and two of our largest customers asked for more "
    "time to test the offline mode. Marketing will keep the launch webinar on the original date but present it as a "
    "preview. Engineering raised concerns about the sync conflicts reported by the pilot group: about three percent "
    "of sessions end with duplicated records, mostly on older Android devices with intermittent connectivity. Priya "
    "will lead a task force to reproduce the issue and propose a fix within two weeks. Finance reminded everyone "
    "that the cloud budget is already eighty percent spent for the quarter, so load tests should run on the staging "
    "cluster only. Support asked for a short FAQ for customers who upgrade early, and for a clear rollback "
    "procedure. Design will share the updated onboarding screens by Monday, after the accessibility review flagged "
    "low contrast on the settings page. Legal still needs to approve the new data retention wording before it goes "
    "into the app store listing. Sales wants a one-page comparison with the two main competitors before the partner "
    "summit, and asked whether the offline mode can be demoed on a tablet. The next check-in is on Thursday at ten. "
    "Please summarize these notes as five bullet points with owners and deadlines, and list any open questions "
    "separately at the end."
)

STARTUP_CODE = """\
import time
_t0 = time.perf_counter()
import json
import sys
from router_ml.router import Router
_t1 = time.perf_counter()
router = Router.load(sys.argv[1], backend=sys.argv[2], cache_size=0)
_t2 = time.perf_counter()
decision = router.route(sys.argv[3])
_t3 = time.perf_counter()
print(json.dumps({"imports": _t1 - _t0, "load": _t2 - _t1, "first_route": _t3 - _t2, "total": _t3 - _t0,
                  "label": decision.label, "torch_imported": "torch" in sys.modules}))
"""


@dataclass
class Latency:
    """Percentiles of one timed call, in milliseconds."""

    p50: float
    p95: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Latency:
        ordered = sorted(samples)
        return cls(statistics.median(ordered), ordered[round(0.95 * (len(ordered) - 1))], len(ordered))

    def __str__(self) -> str:
        return f"{self.p50:.2f} / {self.p95:.2f}"


@dataclass
class SingleResult:
    tokens: int
    raw: Latency
    route: Latency

    @property
    def ratio(self) -> float:
        return self.route.p50 / self.raw.p50


@dataclass
class BackendResult:
    backend: str
    load_seconds: float = 0.0
    short: SingleResult | None = None
    long: SingleResult | None = None
    stream_n: int = 0
    stream_raw_ms: float = 0.0
    stream_route_ms: float = 0.0
    raw_rate: float = 0.0
    route_rate: float = 0.0
    batch_n: int = 0
    batch_tokens_mean: float = 0.0
    batch_tokens_median: float = 0.0
    sweep: dict[int, float] = field(default_factory=dict)
    route_rate_best: float = 0.0
    best_batch_size: int = 0
    uncached: Latency | None = None
    cache_hit: Latency | None = None
    long_cache_hit: Latency | None = None
    startup: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stream_ratio(self) -> float:
        return self.stream_route_ms / self.stream_raw_ms if self.stream_raw_ms else float("nan")

    @property
    def batch_ratio(self) -> float:
        return self.route_rate / self.raw_rate if self.raw_rate else float("nan")

    def startup_best(self) -> dict[str, Any] | None:
        return min(self.startup, key=lambda s: s["total"]) if self.startup else None


def timed_pairs(
    first: Callable[[], object], second: Callable[[], object], repeats: int, budget_s: float, warmup: int = 5
) -> tuple[Latency, Latency]:
    """Time two calls interleaved (alternating which goes first), up to ``repeats`` pairs or ``budget_s`` seconds
    (at least 20 pairs); returns the latency of each."""
    for _ in range(warmup):
        first()
        second()
    a: list[float] = []
    b: list[float] = []
    deadline = time.perf_counter() + budget_s
    for i in range(repeats):
        for call, samples in ((first, a), (second, b)) if i % 2 == 0 else ((second, b), (first, a)):
            start = time.perf_counter()
            call()
            samples.append((time.perf_counter() - start) * 1000)
        if i >= 20 and time.perf_counter() > deadline:
            break
    return Latency.of(a), Latency.of(b)


def timed(
    call: Callable[[], object], repeats: int, warmup: int = 5, before: Callable[[], object] | None = None
) -> Latency:
    """Latency of one call repeated (each time after an untimed ``before()``, if given)."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return Latency.of(samples)


def throughput(call: Callable[[], object], n: int) -> float:
    """Prompts per second of one call over ``n`` prompts."""
    start = time.perf_counter()
    call()
    return n / (time.perf_counter() - start)


def token_count(embedder: Any, text: str) -> int:
    """Tokens of ``text`` with special tokens, before any truncation (the embedder's own tokenizer)."""
    if hasattr(embedder, "_splitter"):
        return len(embedder._splitter.encode(text).ids)
    return len(embedder.model.sp.encode(text))  # USE's SentencePiece pieces


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_times() -> list[int] | None:
    """Aggregate CPU time counters from ``/proc/stat`` (user nice system idle iowait irq softirq steal), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return [int(x) for x in fields[1:9]] if fields and fields[0] == "cpu" else None


def cpu_share(before: list[int] | None, after: list[int] | None) -> tuple[float, float] | None:
    """Busy and steal shares of all CPU time between two :func:`cpu_times` samples."""
    if before is None or after is None:
        return None
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta) or 1
    return (total - delta[3] - delta[4] - delta[7]) / total, delta[7] / total


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def print_environment(backends: Sequence[str]) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "numpy": np.__version__,
        "load_average": load_average(),
        "backends": list(backends),
    }
    print("router-ml benchmark")
    print(f"  python {env['python']} on {env['platform']}")
    print(f"  CPU {env['cpu']}: {env['cores']} cores ({usable} usable), load average {env['load_average']}")
    print(f"  torch {env['torch']} ({env['torch_threads']} threads), numpy {env['numpy']}")
    print(f"  onnxruntime {env['onnxruntime']} (CPUExecutionProvider, default intra-op threads: one per core)")
    before = cpu_times()
    time.sleep(1.0)
    share = cpu_share(before, cpu_times())
    if share is not None:
        env["busy_before_start"], env["steal_before_start"] = share
        print(f"  CPU busy in the second before the start: {share[0]:.0%} (steal {share[1]:.0%})")
        if share[0] > 0.1 or share[1] > 0.02:
            print("  warning: the machine is not idle; figures will be noisy")
    return env


def time_training(model: Path, save: bool) -> float:
    """Seconds to train on the bundled train split, embedding included (the embedding cache is off)."""
    from router_ml import artifact
    from router_ml.data import load_bundled
    from router_ml.training import TrainConfig, train

    data = load_bundled("train")
    previous = os.environ.get("ROUTER_ML_CACHE_DIR")
    os.environ["ROUTER_ML_CACHE_DIR"] = "off"  # time the real thing, embedding included
    try:
        start = time.perf_counter()
        result = train(data, TrainConfig())
        seconds = time.perf_counter() - start
    finally:
        if previous is None:
            os.environ.pop("ROUTER_ML_CACHE_DIR", None)
        else:
            os.environ["ROUTER_ML_CACHE_DIR"] = previous
    if save:
        artifact.save(
            result.model, model, threshold=result.threshold, data=data, metrics=result.metrics, overwrite=True
        )
    print(f"\ntraining on {len(data)} bundled prompts (embedding included, no cache): {seconds:.1f} s")
    return seconds


def measure_accuracy(model: Path, backends: Sequence[str]) -> list[Any]:
    """Held-out accuracy of the ONNX backends against torch (recorded in the manifest, which onnx-int8 needs)."""
    from router_ml.artifact import export_dir, read_manifest
    from router_ml.backend_check import measure_backends
    from router_ml.data import load_bundled
    from router_ml.embed.onnx_export import export_onnx

    name = read_manifest(model)["embedder"]["name"]
    folder = export_dir(model)
    if folder is not None and not (folder / "export.json").is_file():
        start = time.perf_counter()
        export_onnx(name, folder)
        print(f"\nONNX export made at first use into {folder} in {time.perf_counter() - start:.1f} s")
    heldout = load_bundled("heldout")
    print(f"\naccuracy on the bundled held-out split ({len(heldout)} prompts), against torch:")
    reports = measure_backends(model, heldout, backends=backends, dataset="bundled:heldout")
    for report in reports:
        print(f"  {report.format()}")
        print(f"  {'':<10} {differing_labels(report)} of {report.n} labels differ from {report.reference_backend}")
    return list(reports)


def bench_backend(
    model: Path, backend: str, mixed: list[str], batch_sizes: Sequence[int], args: argparse.Namespace
) -> BackendResult:
    from router_ml.router import DEFAULT_CACHE_SIZE, Router

    result = BackendResult(backend)
    start = time.perf_counter()
    router = Router.load(model, backend=backend, cache_size=0)
    embedder = router.artifact.model.embedder
    embedder.warm_up()
    router.route("warm up the head")
    result.load_seconds = time.perf_counter() - start
    print(
        f"\n== {backend}: loaded in {result.load_seconds:.1f} s (warm-up included); reads at most "
        f"{getattr(embedder, 'max_seq_length', None) or 'any number of'} tokens"
    )

    print(f"  {'single prompt':<34}{'raw p50/p95 ms':>18}{'route p50/p95 ms':>20}{'route/raw':>11}")
    for name, text in (("short", SHORT), ("long", LONG)):
        tokens = token_count(embedder, text)
        raw, routed = timed_pairs(
            lambda t=text: embedder.encode(t), lambda t=text: router.route(t), args.repeats, args.budget
        )
        single = SingleResult(tokens, raw, routed)
        setattr(result, name, single)
        limit = getattr(embedder, "max_seq_length", None)
        cut = " (cut to head+tail)" if limit and tokens > limit else ""
        label = f"{name}, {tokens} tokens{cut}"
        print(f"  {label:<34}{raw!s:>18}{routed!s:>20}{single.ratio:>10.2f}x   (n={raw.n})")

    stream = mixed[: args.stream]
    if stream:
        fresh = Router(router.artifact, router.routes, cache_size=0)  # empty word memos, as after a (re)load
        raw_ms: list[float] = []
        route_ms: list[float] = []
        for i, text in enumerate(stream):
            for call, samples in ((embedder.encode, raw_ms), (fresh.route, route_ms))[:: 1 if i % 2 == 0 else -1]:
                start = time.perf_counter()
                call(text)
                samples.append((time.perf_counter() - start) * 1000)
        result.stream_n = len(stream)
        result.stream_raw_ms, result.stream_route_ms = statistics.mean(raw_ms), statistics.mean(route_ms)
        print(
            f"  {len(stream)} distinct held-out prompts one at a time, fresh router: raw {result.stream_raw_ms:.2f} "
            f"ms, route {result.stream_route_ms:.2f} ms on average ({result.stream_ratio:.2f}x)"
        )

    n = len(mixed)
    counts = [token_count(embedder, t) for t in mixed]
    result.batch_n = n
    result.batch_tokens_mean, result.batch_tokens_median = statistics.mean(counts), statistics.median(counts)
    over = sum(c > (getattr(embedder, "max_seq_length", None) or 10**9) for c in counts)
    raw_rates: list[float] = []
    route_rates: list[float] = []

    def raw_call() -> object:
        return embedder.encode(mixed)

    def route_call() -> object:
        return router.route_batch(mixed)

    deadline = time.perf_counter() + args.budget * 2
    for i in range(args.rounds):  # alternate which goes first, so that drift hits both alike
        for rates, call in ((raw_rates, raw_call), (route_rates, route_call))[:: 1 if i % 2 == 0 else -1]:
            rates.append(throughput(call, n))
        if time.perf_counter() > deadline:
            break
    result.raw_rate, result.route_rate = statistics.median(raw_rates), statistics.median(route_rates)
    print(
        f"  batched, {n} held-out prompts (tokens: mean {result.batch_tokens_mean:.1f}, median "
        f"{result.batch_tokens_median:.0f}, max {max(counts)}, {over} cut to head+tail; median of {len(raw_rates)} "
        "rounds, encoder batch_size 64):"
    )
    print(f"    raw embedding {result.raw_rate:8.1f} prompts/s")
    print(f"    route_batch   {result.route_rate:8.1f} prompts/s   ({result.batch_ratio:.2f}x of raw embedding)")
    if batch_sizes:
        for size in batch_sizes:
            if size == DEFAULT_BATCH_SIZE:
                result.sweep[size] = result.raw_rate
            else:
                result.sweep[size] = throughput(lambda s=size: embedder.encode(mixed, batch_size=s), n)
        result.sweep = dict(sorted(result.sweep.items()))
        best = result.best_batch_size = max(result.sweep, key=result.sweep.__getitem__)
        cells = "  ".join(f"{s}: {r:.0f}" for s, r in result.sweep.items())
        print(f"    raw embedding by encoder batch_size (prompts/s, 1 round each): {cells}  -> best {best}")
        if best != DEFAULT_BATCH_SIZE:
            # What-if, local to this process: route_batch with the embedder's default batch size set to the best.
            embedder.encode = functools.partial(type(embedder).encode, embedder, batch_size=best)
            try:
                result.route_rate_best = throughput(route_call, n)
            finally:
                del embedder.encode
            print(
                f"    route_batch if the encoder's default batch_size were {best}: {result.route_rate_best:.1f} "
                f"prompts/s ({result.route_rate_best / result.route_rate:.2f}x of route_batch now)"
            )

    if backend.startswith("onnx") and args.breakdown:
        for name, text in (("short", SHORT), ("long", LONG)):
            print(f"  where route() time goes, {name}: {breakdown(router, text, min(args.repeats, 50))}")

    cached = Router(router.artifact, router.routes, cache_size=DEFAULT_CACHE_SIZE)
    cached.route(SHORT)
    cached.route(LONG)
    result.uncached, result.cache_hit = timed_pairs(
        lambda: router.route(SHORT), lambda: cached.route(SHORT), args.repeats, args.budget
    )
    result.long_cache_hit = timed(lambda: cached.route(LONG), args.repeats)
    assert cached.route(SHORT).cached and not router.route(SHORT).cached
    print(
        f"  decision cache, short prompt: hit p50 {result.cache_hit.p50:.3f} ms vs uncached "
        f"{result.uncached.p50:.2f} ms ({result.cache_hit.p50 / result.uncached.p50:.3f}x); long prompt hit p50 "
        f"{result.long_cache_hit.p50:.3f} ms; {cached.cache_info()}"
    )
    return result


def breakdown(router: Any, text: str, repeats: int) -> str:
    """Where one uncached ``route()`` on an ONNX backend spends its time (p50 of each step timed alone).

    Diagnostic only: it reaches into the embedder's internals, so it says so and moves on if they have changed.
    """
    import numpy as np

    from router_ml.embed import head_and_tail

    embedder, head = router.artifact.model.embedder, router._head
    try:
        fitted = head_and_tail([text], embedder._splitter, embedder.max_seq_length)
        encodings = embedder.tokenizer.encode_batch(fitted)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        vector = embedder.encode(text)[None]
        steps = {
            "head_and_tail": lambda: head_and_tail([text], embedder._splitter, embedder.max_seq_length),
            "tokenize": lambda: embedder.tokenizer.encode_batch(fitted),
            "session.run": lambda: embedder.session.run(None, feed),
            "head": lambda: head.predict_proba(vector, [text]) if head is not None else None,
        }
        parts = {name: timed(call, repeats).p50 for name, call in steps.items()}
        # As in route(), the head runs right after the embedding, which has evicted its tables from the CPU caches.
        parts["head"] = timed(steps["head"], repeats, before=lambda: embedder.encode(text)).p50
        warm_head = timed(steps["head"], repeats).p50
    except (AttributeError, KeyError, TypeError) as exc:
        return f"unavailable ({type(exc).__name__}: {exc})"
    total = timed(lambda: router.route(text), repeats).p50
    parts["rest (pooling, bookkeeping, cache effects)"] = total - sum(parts.values())
    cells = ", ".join(f"{name} {ms:.2f}" for name, ms in parts.items())
    return (
        f"{cells} (ms, p50 of each step alone; route() {total:.2f}; {ids.shape[1]} tokens fed; the head (TF-IDF + "
        f"linear) is timed right after an embedding, as in route(): {warm_head:.2f} ms when its tables are in cache)"
    )


def bench_startup(model: Path, backend: str, runs: int) -> list[dict[str, Any]]:
    """Fresh processes: import, load the artifact on ``backend``, answer one ``route()``."""
    results = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", STARTUP_CODE, str(model.resolve()), backend, SHORT],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            check=False,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"startup run on {backend} failed:\n{done.stderr[-2000:]}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        results.append({**measured, "wall": wall})
    return results


def verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def summary(results: dict[str, BackendResult], reports: list[Any], env: dict[str, Any]) -> str:
    """Markdown: the machine, results per backend, then the targets with pass/fail."""
    backends = list(results)
    head = (
        f"{env['usable_cores']}-core {env['cpu']}, torch {env['torch']} ({env['torch_threads']} threads), "
        f"onnxruntime {env['onnxruntime']}, python {env['python']}; all figures from one run"
    )
    lines = [head, "", "| measurement | " + " | ".join(backends) + " |", "|---" * (len(backends) + 1) + "|"]

    def row(name: str, cell: Callable[[BackendResult], str]) -> None:
        lines.append(f"| {name} | " + " | ".join(cell(results[b]) for b in backends) + " |")

    first = results[backends[0]]
    assert first.short is not None and first.long is not None
    for name, single in (("short", first.short), ("long", first.long)):
        row(
            f"{name} prompt ({single.tokens} tokens): raw embedding p50 / p95 ms",
            lambda r, n=name: str(getattr(r, n).raw),
        )
        row(f"{name} prompt: route() p50 / p95 ms", lambda r, n=name: str(getattr(r, n).route))
        row(f"{name} prompt: route / raw (p50)", lambda r, n=name: f"{getattr(r, n).ratio:.2f}×")
    if first.stream_n:
        row(
            f"{first.stream_n} distinct held-out prompts one at a time, fresh router: raw / route mean ms",
            lambda r: f"{r.stream_raw_ms:.2f} / {r.stream_route_ms:.2f}",
        )
        row("distinct prompts: route / raw (mean)", lambda r: f"{r.stream_ratio:.2f}×")
    row(
        f"batched, {first.batch_n} held-out prompts (tokens mean {first.batch_tokens_mean:.0f}, median "
        f"{first.batch_tokens_median:.0f}): raw embedding prompts/s",
        lambda r: f"{r.raw_rate:.0f}",
    )
    row(f"batched: route_batch() prompts/s (encoder batch_size {DEFAULT_BATCH_SIZE})", lambda r: f"{r.route_rate:.0f}")
    row("batched: route_batch / raw", lambda r: f"{r.batch_ratio:.2f}×")
    if any(r.sweep for r in results.values()):
        row(
            "best encoder batch_size: raw / route_batch prompts/s",
            lambda r: (
                f"{r.best_batch_size}: {r.sweep[r.best_batch_size]:.0f} / {r.route_rate_best or r.route_rate:.0f}"
                if r.sweep
                else "—"
            ),
        )
    row(
        "decision cache hit p50 ms (short prompt; × uncached route)",
        lambda r: (
            "—"
            if r.cache_hit is None or r.uncached is None
            else f"{r.cache_hit.p50:.3f} ({r.cache_hit.p50 / r.uncached.p50:.3f}×)"
        ),
    )
    row(
        "startup to first route(), fresh process: in-process / wall s",
        lambda r: "—" if (b := r.startup_best()) is None else f"{b['total']:.2f} / {b['wall']:.2f}",
    )
    by_backend = {r.backend: r for r in reports}
    if reports:
        reference = reports[0]
        row(
            f"held-out macro-F1 ({reference.n} prompts)",
            lambda r: (
                f"{reference.reference_macro_f1:.4f}"
                if r.backend == reference.reference_backend
                else (f"{by_backend[r.backend].macro_f1:.4f}" if r.backend in by_backend else "—")
            ),
        )
        row(
            f"held-out labels differing from {reference.reference_backend}",
            lambda r: "— (reference)" if r.backend not in by_backend else str(differing_labels(by_backend[r.backend])),
        )

    targets = ["| target | measured | result |", "|---|---|---|"]

    def target(name: str, measured: str, ok: bool) -> None:
        targets.append(f"| {name} | {measured} | {verdict(ok)} |")

    target_backend = next((b for b in TARGET_BACKENDS if b in results), TARGET_BACKENDS[-1])
    t = results.get(target_backend)
    if t is not None and t.short is not None and t.long is not None:
        target(
            f"short prompt route() p50 ≤ {SHORT_P50_MS:g} ms ({target_backend})",
            f"{t.short.route.p50:.2f} ms",
            t.short.route.p50 <= SHORT_P50_MS,
        )
    worst = max(results.values(), key=lambda r: r.short.ratio if r.short else 0.0)
    if worst.short is not None:
        target(
            f"short prompt route / raw embedding ≤ {OVERHEAD_MAX:.2f}× (every backend, worst shown)",
            f"{worst.short.ratio:.2f}× ({worst.backend})",
            worst.short.ratio <= OVERHEAD_MAX,
        )
    if t is not None and t.long is not None:
        target(
            f"long prompt route() p50 ≤ {LONG_P50_MS:g} ms ({target_backend})",
            f"{t.long.route.p50:.2f} ms",
            t.long.route.p50 <= LONG_P50_MS,
        )
    if t is not None:
        target(
            f"route_batch() ≥ {BATCH_MIN_RATE:g} prompts/s ({target_backend})",
            f"{t.route_rate:.0f} prompts/s",
            t.route_rate >= BATCH_MIN_RATE,
        )
    if "onnx" in by_backend:
        report = by_backend["onnx"]
        target(
            "torch vs onnx: 0 differing held-out labels",
            f"{differing_labels(report)} of {report.n}",
            differing_labels(report) == 0,
        )
    if "onnx-int8" in by_backend:
        delta = by_backend["onnx-int8"].macro_f1_delta
        target(
            f"onnx-int8 held-out macro-F1 within {F1_DELTA_MAX} of torch", f"{delta:+.4f}", abs(delta) <= F1_DELTA_MAX
        )
    if t is not None and (best := t.startup_best()) is not None:
        target(
            f"startup to first route() ≤ {STARTUP_MAX_S:g} s ({target_backend})",
            f"{best['total']:.2f} s in process, {best['wall']:.2f} s wall",
            best["total"] <= STARTUP_MAX_S,
        )
    return "\n".join(lines) + "\n\n" + "\n".join(targets)


def differing_labels(report: Any) -> int:
    """Held-out prompts whose label differs from the reference backend's."""
    return round((1.0 - report.label_agreement) * report.n)


def parse_sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", type=Path, default=Path("artifacts/router"), help="router artifact (trained if missing)"
    )
    parser.add_argument(
        "--backends", default=None, help="comma-separated, from: " + ", ".join(BACKENDS) + " (default: the model's)"
    )
    parser.add_argument("--repeats", type=int, default=200, help="max timed pairs per single-prompt measurement")
    parser.add_argument(
        "--budget", type=float, default=8.0, help="seconds after which a single-prompt measurement stops early"
    )
    parser.add_argument("--batch", type=int, default=512, help="held-out prompts in the batched measurement")
    parser.add_argument(
        "--stream", type=int, default=300, help="distinct held-out prompts routed one at a time (0 to skip)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="max rounds of the batched measurement (median)")
    parser.add_argument(
        "--batch-sizes",
        default="1,8,16,32,64",
        help="encoder batch sizes swept on the ONNX backends ('' to skip)",
    )
    parser.add_argument("--startup-runs", type=int, default=2, help="fresh processes per backend (best is reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out sample")
    parser.add_argument(
        "--no-breakdown", dest="breakdown", action="store_false", help="skip the per-step timing of route() on ONNX"
    )
    parser.add_argument("--skip-accuracy", action="store_true", help="use the accuracy already in the manifest")
    parser.add_argument("--train", action="store_true", help="also time training (the artifact is kept as it is)")
    parser.add_argument("--skip-train", action="store_true", help=argparse.SUPPRESS)  # the default; kept for old calls
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if args.backends is None:
        from router_ml.embed import DEFAULT_EMBEDDER, model_backends

        name = DEFAULT_EMBEDDER
        if (args.model / "manifest.json").is_file():
            name = json.loads((args.model / "manifest.json").read_text())["embedder"]["name"]
        args.backends = ",".join(model_backends(name))
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backends {unknown}; choose from {list(BACKENDS)}")
    if not backends:
        parser.error("--backends names no backend")
    env = print_environment(backends)
    started, times_at_start = time.perf_counter(), cpu_times()
    from router_ml.data import load_bundled

    train_seconds = None
    if not (args.model / "manifest.json").is_file():
        print(f"\n{args.model} has no trained router: training one")
        train_seconds = time_training(args.model, save=True)
    elif args.train:
        train_seconds = time_training(args.model, save=False)

    reports: list[Any] = []
    if not args.skip_accuracy and any(b.startswith("onnx") for b in backends):
        reports = measure_accuracy(args.model, ("onnx", "onnx-int8"))

    heldout = load_bundled("heldout")
    indices = random.Random(args.seed).sample(range(len(heldout)), min(args.batch, len(heldout)))
    mixed = [heldout.texts[i] for i in indices]
    sweep = parse_sizes(args.batch_sizes)
    results: dict[str, BackendResult] = {}
    for backend in backends:
        results[backend] = bench_backend(args.model, backend, mixed, sweep if backend.startswith("onnx") else [], args)
        gc.collect()
    print("\nstartup: fresh `python -c` process, from before its imports to the first route() answered")
    for backend in backends:
        runs = bench_startup(args.model, backend, args.startup_runs)
        results[backend].startup = runs
        cells = ", ".join(
            f"{r['total']:.2f} s (imports {r['imports']:.2f} + load {r['load']:.2f} + first route "
            f"{r['first_route'] * 1000:.0f} ms; wall {r['wall']:.2f} s)"
            for r in runs
        )
        torch_note = "torch imported" if runs[0]["torch_imported"] else "torch not imported"
        print(f"  {backend:<10} {cells}; {torch_note}")
    if train_seconds is not None:
        print(f"\ntraining (embedding included, no cache): {train_seconds:.1f} s")
    print("\n## Summary (markdown)\n")
    print(summary(results, reports, env))
    share = cpu_share(times_at_start, cpu_times())
    steal = "" if share is None else f"; CPU steal during the run {share[1]:.1%} (time taken by other VMs on this host)"
    print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s; load average now {load_average()}{steal}")
    if share is not None:
        env["steal_during_run"] = share[1]
    if args.json is not None:
        payload = {
            "environment": env,
            "results": {b: asdict(r) for b, r in results.items()},
            "accuracy": [asdict(r) for r in reports],
            "train_seconds": train_seconds,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
