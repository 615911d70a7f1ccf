"""Route a file, or a folder of part files, of prompts into Parquet: :func:`route_file`, on either engine."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..exceptions import ConfigError, DataError
from ..router import Router
from .commit import Manifest
from .engine import ENGINES, LocalRunner, RouteSpec, chunked, route_chunk
from .io import Part, find_parts, output_name, pyarrow, read_part, write_atomic

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "OUTPUT_COLUMNS",
    "WINDOW_ROWS",
    "WINDOW_ROWS_PER_WORKER",
    "BatchSummary",
    "route_file",
]

DEFAULT_BATCH_SIZE = 256
"""Prompts per chunk: one ``route_batch`` call, one Ray batch."""
WINDOW_ROWS = 100_000
WINDOW_ROWS_PER_WORKER = 20_000
"""The Ray engine runs about ``max(WINDOW_ROWS, WINDOW_ROWS_PER_WORKER * workers)`` rows, whole parts, in one Ray
Data job: its actors load the router once per job (about 10 s on a 2-core machine), which the job's minutes of
routing then dwarf. The local engine routes and commits one part at a time."""
OUTPUT_COLUMNS = ("row", "label", "model", "confidence", "predicted", "abstained", "probabilities", "success")
"""The columns added to the input's (``probabilities`` with a category head, ``success`` with success heads)."""
SHOWN_BAD_ROWS = 5


@dataclass(frozen=True)
class BatchSummary:
    """What one :func:`route_file` run did.

    Attributes:
        output (Path): the OUTPUT folder.
        engine (str): ``"local"`` or ``"ray"``.
        workers (int): the workers that routed (1 for the local engine).
        parts (int): part files in INPUT.
        parts_routed (int): parts routed and committed by this run.
        parts_skipped (int): parts a previous run had finished (resumed past).
        rows (int): rows routed by this run.
        bad_rows (int): malformed rows skipped by this run (``skip_bad_rows``).
        seconds (float): the run's wall time.
    """

    output: Path
    engine: str
    workers: int
    parts: int
    parts_routed: int
    parts_skipped: int
    rows: int
    bad_rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """Rows routed per second of wall time."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "output": str(self.output), "rows_per_second": round(self.rows_per_second, 1)}

    def format(self) -> str:
        """One line for the terminal."""
        skipped = f", {self.parts_skipped} finished before (skipped)" if self.parts_skipped else ""
        bad = f"; {self.bad_rows} malformed rows skipped" if self.bad_rows else ""
        on = f"{self.engine} engine, {self.workers} worker{'s' if self.workers != 1 else ''}"
        return (
            f"routed {self.rows} rows in {self.parts_routed} of {self.parts} parts{skipped} in {self.seconds:.1f}s "
            f"({self.rows_per_second:.0f} rows/s, {on}){bad}; wrote {self.output}"
        )


def route_file(
    model: str | Path,
    input: str | Path,
    output: str | Path,
    engine: str = "local",
    *,
    address: str | None = None,
    workers: int | None = None,
    routes: str | Path | None = None,
    backend: str | None = None,
    threshold: float | None = None,
    text_column: str = "text",
    prefix: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
    window_rows: int | None = None,
    skip_bad_rows: bool = False,
    overwrite: bool = False,
    max_retries: int = 3,
    blas_threads: int | None = 1,
) -> BatchSummary:
    """Route every prompt of INPUT (a Parquet, JSONL or CSV file, or a folder of them) into OUTPUT, a folder with
    one Parquet file per input part: the input columns, then ``row`` (the record's position in its part, from 0),
    ``label``, ``model``, ``confidence``, ``predicted``, ``abstained``, ``probabilities`` (one field per label) and,
    when the artifact has success heads, ``success`` (each model's P(success)); rows in input order.

    Each part is committed when written (``_manifest.json``), so a rerun skips the parts already finished. Both
    engines route the same chunks of ``batch_size`` prompts, so their outputs are identical.

    Args:
        model: the router artifact (with the ray engine, a path every worker can read).
        engine: ``"local"`` (this process) or ``"ray"`` (Ray Data actors; ``pip install 'router-ml[ray]'``).
        address: the Ray cluster to join (default: ``$RAY_ADDRESS``, else a local runtime); ray engine only.
        workers: Ray actors (default: one per cluster CPU).
        routes, backend, threshold: as :meth:`Router.load`.
        text_column: the column holding each prompt (a string, or an OpenAI-style messages list).
        prefix: put before every added column's name, when the input already has such columns.
        skip_bad_rows: skip malformed rows (counted in the summary) instead of failing on them.
        overwrite: start again in an OUTPUT that holds another run's parts.
        window_rows: rows (whole parts) per Ray Data job; default in ``WINDOW_ROWS_PER_WORKER``'s note.
        max_retries: restarts of a dead Ray actor and retries of its chunk.
        blas_threads: numpy's BLAS threads for the local engine, as a Ray actor has one (``None``: numpy's default,
            every core). One thread routed 4.7x faster than two on a busy 2-core machine (``docs/batch.md``).

    Raises:
        DataError: a malformed row (its file and row named) without ``skip_bad_rows``, or unreadable INPUT.
        ConfigError: a bad argument, Ray missing, or an OUTPUT folder of another run.
    """
    started = time.perf_counter()
    _check_arguments(engine, address, batch_size, window_rows)
    source, folder = Path(input), Path(output)
    parts = find_parts(source)
    spec = RouteSpec(_absolute(model), None if routes is None else _absolute(routes), backend, threshold)
    router = spec.load()
    manifest = Manifest(folder, _identity(router, text_column, prefix), overwrite=overwrite)
    pending = [p for p in parts if not manifest.finished(output_name(source, p), p)]
    rows = bad = 0
    with _runner(engine, spec, router, address, workers, max_retries, blas_threads) as runner:
        per_job = max(WINDOW_ROWS, WINDOW_ROWS_PER_WORKER * runner.workers) if engine == "ray" else 1
        for window in _windows(pending, text_column, prefix, window_rows or per_job, skip_bad_rows):
            chunks, spans = [], []
            for part in window:
                cut = chunked(part.prompts, batch_size)
                spans.append((len(chunks), len(chunks) + len(cut)))
                chunks += cut
            results = runner.run(chunks)
            for part, (first, last) in zip(window, spans, strict=True):
                name = output_name(source, part.path)
                write_atomic(_output_table(part, results[first:last], router, prefix), folder / name)
                manifest.commit(name, part.path, name, len(part.rows), len(part.bad))
                rows, bad = rows + len(part.rows), bad + len(part.bad)
        used = runner.workers
    seconds = time.perf_counter() - started
    return BatchSummary(folder, engine, used, len(parts), len(pending), len(parts) - len(pending), rows, bad, seconds)


def _absolute(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


def _check_arguments(engine: str, address: str | None, batch_size: int, window_rows: int | None) -> None:
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if address is not None and engine != "ray":
        raise ConfigError(f"an address ({address!r}) is for the ray engine; add --engine ray (engine='ray')")
    if batch_size < 1 or (window_rows is not None and window_rows < 1):
        raise ConfigError(f"batch_size and window_rows must be at least 1, got {batch_size} and {window_rows}")


def _identity(router: Router, text_column: str, prefix: str) -> dict[str, Any]:
    """What makes two runs write the same rows: resuming is refused when any of it changed."""
    table = json.dumps(router.routes.to_dict(), sort_keys=True, default=str).encode()
    return {
        "router": router.version,
        "routes": hashlib.sha256(table).hexdigest()[:16],
        "threshold": router.threshold,
        "default_route": router.default_route,
        "backend": router.backend,
        "text_column": text_column,
        "prefix": prefix,
    }


@contextmanager
def _runner(
    engine: str, spec: RouteSpec, router: Router, address: str | None, workers: int | None, max_retries: int,
    blas_threads: int | None,
) -> Iterator[Any]:  # fmt: skip
    """The engine's runner: the router already loaded here, or Ray actors that each load it."""
    if engine == "local":
        with threadpool_limits(blas_threads, user_api="blas") if blas_threads else nullcontext():
            yield LocalRunner(lambda prompts: route_chunk(router, prompts))
        return
    from .ray_engine import RayRunner, ray_session

    with ray_session(address):
        yield RayRunner(spec, workers, max_retries)


def _windows(
    pending: list[Path], text_column: str, prefix: str, window_rows: int, skip_bad_rows: bool
) -> Iterator[list[Part]]:
    """The pending parts, read and checked, in groups of about ``window_rows`` rows."""
    added = [prefix + name for name in OUTPUT_COLUMNS]
    window: list[Part] = []
    for path in pending:
        part = read_part(path, text_column)
        if part.bad and not skip_bad_rows:
            shown = "; ".join(part.bad[:SHOWN_BAD_ROWS]) + ("; ..." if len(part.bad) > SHOWN_BAD_ROWS else "")
            raise DataError(
                f"{len(part.bad)} malformed row{'s' if len(part.bad) > 1 else ''} in {path}: {shown}. Fix them, or "
                "pass --skip-bad-rows (skip_bad_rows=True) to skip them and count them in the summary"
            )
        clash = sorted(set(added) & set(part.table.column_names))
        if clash:
            raise ConfigError(
                f"{path} already has the column(s) {clash} that routing adds; pass a prefix (--prefix routed_)"
            )
        window.append(part)
        if sum(len(p.rows) for p in window) >= window_rows:
            yield window
            window = []
    if window:
        yield window


def _merge(results: list[dict[str, Any]], router: Router) -> dict[str, Any]:
    """The chunks' columns joined end to end (an empty part gets empty columns of the right shape)."""
    empty = _empty_columns(router)
    if not results:
        return empty
    merged: dict[str, Any] = {}
    for key in ("label", "model", "predicted"):
        merged[key] = [value for r in results for value in r[key]]
    for key in ("confidence", "abstained", "probabilities"):
        merged[key] = np.concatenate([r[key] for r in results])
    merged["success"] = None if empty["success"] is None else {
        m: np.concatenate([r["success"][m] for r in results]) for m in empty["success"]
    }  # fmt: skip
    return merged


def _empty_columns(router: Router) -> dict[str, Any]:
    """The columns :func:`route_chunk` gives for no prompt."""
    success = None if router.artifact.success is None else {m: np.zeros(0) for m in router.predict_success([])}
    return {
        "label": [], "model": [], "predicted": [], "confidence": np.zeros(0), "abstained": np.zeros(0, dtype=bool),
        "probabilities": np.zeros((0, len(router.labels))), "success": success,
    }  # fmt: skip


def _output_table(part: Part, results: list[dict[str, Any]], router: Router, prefix: str) -> Any:
    """The part's input columns, then the routing columns (named with ``prefix``)."""
    pa = pyarrow()
    merged = _merge(results, router)
    columns = {
        "row": pa.array(part.rows, pa.int64()),
        "label": pa.array(merged["label"], pa.string()),
        "model": pa.array(merged["model"], pa.string()),
        "confidence": pa.array(merged["confidence"], pa.float64()),
        "predicted": pa.array(merged["predicted"], pa.string()),
        "abstained": pa.array(merged["abstained"], pa.bool_()),
    }
    if router.labels:  # a struct with no field cannot be written to Parquet
        matrix = merged["probabilities"]
        fields = [pa.array(matrix[:, j], pa.float64()) for j in range(len(router.labels))]
        columns["probabilities"] = pa.StructArray.from_arrays(fields, names=router.labels)
    if merged["success"] is not None:
        success = merged["success"]
        fields = [pa.array(success[m], pa.float64()) for m in success]
        columns["success"] = pa.StructArray.from_arrays(fields, names=list(success))
    table = part.table
    for name, values in columns.items():
        table = table.append_column(prefix + name, values)
    return table
