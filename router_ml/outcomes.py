"""The outcome log: one durable record per request, feedback on it, summaries and export for retraining.

Storage is SQLite in WAL mode. The schema is built by migrations registered with :func:`migration`, applied once
each, in order, and recorded by name in ``_migrations``. The path comes from the ``path`` argument, else
``$ROUTER_ML_DB``, else ``~/.local/share/router-ml/outcomes.db``.

Writes never block the request path: :meth:`OutcomeStore.record` puts the outcome on a queue and a writer thread
commits batches in single transactions. :meth:`OutcomeStore.flush` waits until everything queued is on disk,
and :meth:`OutcomeStore.close` flushes before closing, so no record is lost when many requests finish at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .exceptions import ConfigError, DataError, RouterMLError

__all__ = [
    "PROMPT_STORAGE",
    "Attempt",
    "Outcome",
    "OutcomeStore",
    "StoreError",
    "default_db_path",
    "migration",
]

logger = logging.getLogger(__name__)

PROMPT_STORAGE = ("full", "hash", "none")
PromptStorage = Literal["full", "hash", "none"]


class StoreError(RouterMLError, RuntimeError):
    """The outcome store cannot be opened or written, or a request id is unknown."""


@dataclass
class Attempt:
    """One model tried for a request: answered, failed (``error`` is the exception class) or skipped."""

    model: str
    status: Literal["ok", "error", "skipped"]
    error: str | None = None
    reason: str | None = None
    latency_ms: float = 0.0


@dataclass
class Outcome:
    """Everything that happened to one request."""

    request_id: str
    started_at: float
    finished_at: float = 0.0
    status: str = "ok"
    router_version: str | None = None
    label: str | None = None
    predicted: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    abstained: bool = False
    forced: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    model: str | None = None
    routing_ms: float = 0.0
    provider_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None
    stream: bool = False
    prompt_text: str | None = None


_MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = []


def migration(func: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """Register a schema migration; migrations run once each, in registration order."""
    _MIGRATIONS.append((func.__name__, func))
    return func


@migration
def m001_outcomes(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE outcomes (
            request_id TEXT PRIMARY KEY,
            started_at REAL NOT NULL,
            finished_at REAL NOT NULL,
            status TEXT NOT NULL,
            router_version TEXT,
            label TEXT,
            predicted TEXT,
            confidence REAL,
            probabilities TEXT NOT NULL,
            abstained INTEGER NOT NULL,
            forced TEXT,
            attempts TEXT NOT NULL,
            model TEXT,
            routing_ms REAL NOT NULL,
            provider_ms REAL NOT NULL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost_usd REAL,
            error TEXT,
            stream INTEGER NOT NULL,
            prompt_text TEXT,
            prompt_hash TEXT
        )"""
    )
    db.execute("CREATE INDEX outcomes_started_at ON outcomes (started_at)")


@migration
def m002_feedback(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL REFERENCES outcomes (request_id),
            created_at REAL NOT NULL,
            label TEXT,
            score REAL,
            comment TEXT
        )"""
    )
    db.execute("CREATE INDEX feedback_request_id ON feedback (request_id)")


def default_db_path() -> Path:
    """``$ROUTER_ML_DB``, else ``~/.local/share/router-ml/outcomes.db``."""
    env = os.environ.get("ROUTER_ML_DB")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "router-ml" / "outcomes.db"


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(
            f"cannot open the outcome store at {path}: {exc}. Pass a writable path (--db or ROUTER_ML_DB)."
        ) from None
    return db


_COLUMNS = [
    "request_id",
    "started_at",
    "finished_at",
    "status",
    "router_version",
    "label",
    "predicted",
    "confidence",
    "probabilities",
    "abstained",
    "forced",
    "attempts",
    "model",
    "routing_ms",
    "provider_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "error",
    "stream",
    "prompt_text",
    "prompt_hash",
]


def parse_score(score: float | str | None) -> float | None:
    """A feedback score in [0, 1]; ``"up"``/``"down"`` (or 👍/👎) read as 1 and 0."""
    if score is None:
        return None
    words = {"up": 1.0, "down": 0.0, "👍": 1.0, "👎": 0.0, "good": 1.0, "bad": 0.0}
    if isinstance(score, str):
        if score.strip().lower() in words:
            return words[score.strip().lower()]
        try:
            score = float(score)
        except ValueError:
            raise DataError(f"score must be a number in [0, 1] or up/down, got {score!r}") from None
    if not 0.0 <= float(score) <= 1.0:
        raise DataError(f"score must be in [0, 1] (or up/down), got {score}")
    return float(score)


class OutcomeStore:
    """SQLite outcome log with a background writer.

    Args:
        path (str | Path | None): database file; ``$ROUTER_ML_DB`` or the default location when ``None``.
        prompt_storage (str): what to keep of each prompt: ``"full"`` text, a SHA-256 ``"hash"``, or ``"none"``.
    """

    def __init__(self, path: str | Path | None = None, *, prompt_storage: PromptStorage = "full") -> None:
        if prompt_storage not in PROMPT_STORAGE:
            raise ConfigError(f"prompt_storage must be one of {PROMPT_STORAGE}, got {prompt_storage!r}")
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.prompt_storage = prompt_storage
        self._read = _connect(self.path)
        self._read_lock = threading.Lock()
        self._migrate()
        self._queue: queue.Queue[Outcome | None] = queue.Queue()
        self._write = _connect(self.path)
        self._writer = threading.Thread(target=self._write_loop, name="router-ml-outcome-writer", daemon=True)
        self._writer.start()
        self._closed = False

    # -- schema ------------------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        db = self._read
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        for name, func in _MIGRATIONS:
            if name in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                    func(db)
                    db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                db.execute("COMMIT")
            except Exception:
                db.execute("ROLLBACK")
                raise

    def migrations(self) -> list[str]:
        """Names of the applied migrations, in order."""
        with self._read_lock:
            return [r[0] for r in self._read.execute("SELECT name FROM _migrations ORDER BY rowid")]

    # -- writing -----------------------------------------------------------------------------------------------
    def record(self, outcome: Outcome) -> None:
        """Queue an outcome for writing; returns at once."""
        if self._closed:
            raise StoreError(f"the outcome store {self.path} is closed")
        self._queue.put(outcome)

    def _row(self, o: Outcome) -> tuple[Any, ...]:
        text = o.prompt_text
        digest = (
            hashlib.sha256(text.encode()).hexdigest() if text is not None and self.prompt_storage != "none" else None
        )
        values = asdict(o)
        values.update(
            probabilities=json.dumps(o.probabilities),
            attempts=json.dumps([asdict(a) for a in o.attempts]),
            abstained=int(o.abstained),
            stream=int(o.stream),
            prompt_text=text if self.prompt_storage == "full" else None,
            prompt_hash=digest,
        )
        return tuple(values[c] for c in _COLUMNS)

    def _write_loop(self) -> None:
        sql = f"INSERT INTO outcomes ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < 500:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            outcomes = [o for o in batch if o is not None]
            try:
                if outcomes:
                    self._write_batch(sql, outcomes)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if any(o is None for o in batch):
                return

    def _write_batch(self, sql: str, outcomes: list[Outcome]) -> None:
        rows = [self._row(o) for o in outcomes]
        for attempt in range(5):
            try:
                self._write.execute("BEGIN IMMEDIATE")
                self._write.executemany(sql, rows)
                self._write.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:  # locked by another process: retry, then report loudly
                self._write.execute("ROLLBACK") if self._write.in_transaction else None
                if attempt == 4:
                    logger.error("could not write %d outcomes to %s: %s", len(rows), self.path, exc)
                    raise
                time.sleep(0.05 * 2**attempt)

    def flush(self) -> None:
        """Block until every queued outcome is committed."""
        self._queue.join()

    def close(self) -> None:
        """Flush and close the store."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        self._write.close()
        self._read.close()

    def __enter__(self) -> OutcomeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- feedback ----------------------------------------------------------------------------------------------
    def add_feedback(
        self,
        request_id: str,
        *,
        label: str | None = None,
        score: float | str | None = None,
        comment: str | None = None,
    ) -> None:
        """Attach a corrected label, a score in [0, 1] (or up/down) and/or a comment to a logged request."""
        value = parse_score(score)
        if label is None and value is None and not comment:
            raise DataError("feedback needs at least one of label, score or comment")
        self.flush()
        with self._read_lock:
            if self._read.execute("SELECT 1 FROM outcomes WHERE request_id = ?", (request_id,)).fetchone() is None:
                raise StoreError(
                    f"unknown request id {request_id!r} in {self.path}; use the id returned with the response "
                    "(x-router-request-id) or listed by `router-ml outcomes list`"
                )
            self._read.execute(
                "INSERT INTO feedback (request_id, created_at, label, score, comment) VALUES (?, ?, ?, ?, ?)",
                (request_id, time.time(), label, value, comment),
            )

    # -- reading -----------------------------------------------------------------------------------------------
    def _select(self, where: str, args: tuple[Any, ...], tail: str = "") -> list[dict[str, Any]]:
        """Rows of ``outcomes`` matching ``where``, with the JSON and boolean columns decoded."""
        self.flush()
        with self._read_lock:
            cursor = self._read.execute(f"SELECT * FROM outcomes WHERE {where} {tail}", args)
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        for row in rows:
            row["probabilities"] = json.loads(row["probabilities"])
            row["attempts"] = json.loads(row["attempts"])
            row["abstained"] = bool(row["abstained"])
            row["stream"] = bool(row["stream"])
        return rows

    def outcomes(self, since: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Logged outcomes started at or after ``since`` (epoch seconds), newest first."""
        tail = "ORDER BY started_at DESC" + (" LIMIT ?" if limit is not None else "")
        args: tuple[Any, ...] = (since or 0.0,) + ((limit,) if limit is not None else ())
        return self._select("started_at >= ?", args, tail)

    def get(self, request_id: str) -> dict[str, Any]:
        """One outcome with its feedback list."""
        rows = self._select("request_id = ?", (request_id,))
        if not rows:
            raise StoreError(f"unknown request id {request_id!r} in {self.path}")
        rows[0]["feedback"] = self.feedback(request_id)
        return rows[0]

    def feedback(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Feedback rows (for one request, or all), oldest first."""
        sql = "SELECT request_id, created_at, label, score, comment FROM feedback"
        args: tuple[Any, ...] = ()
        if request_id is not None:
            sql += " WHERE request_id = ?"
            args = (request_id,)
        with self._read_lock:
            cursor = self._read.execute(sql + " ORDER BY id", args)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    def count(self) -> int:
        """Number of logged outcomes."""
        self.flush()
        with self._read_lock:
            return int(self._read.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])

    def summary(self, since: float | None = None) -> dict[str, Any]:
        """Requests, per-route share, error and fallback rates, cost and latency percentiles since ``since``."""
        rows = self.outcomes(since)
        n = len(rows)
        if n == 0:
            return {"requests": 0}
        routes: dict[str, int] = {}
        for r in rows:
            routes[r["label"] or "-"] = routes.get(r["label"] or "-", 0) + 1
        called = [r for r in rows if r["status"] != "decision_only"]
        fallback = [r for r in called if any(a["status"] != "ok" for a in r["attempts"]) and r["status"] == "ok"]
        routing = np.array([r["routing_ms"] for r in rows])
        total = np.array([(r["finished_at"] - r["started_at"]) * 1000 for r in called]) if called else np.zeros(1)
        costs = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
        return {
            "requests": n,
            "from": min(r["started_at"] for r in rows),
            "to": max(r["started_at"] for r in rows),
            "route_share": {k: round(v / n, 4) for k, v in sorted(routes.items())},
            "status": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})},
            "error_rate": round(
                sum(r["status"] not in ("ok", "decision_only") for r in called) / max(1, len(called)), 4
            ),
            "fallback_rate": round(len(fallback) / max(1, len(called)), 4),
            "abstention_rate": round(sum(r["abstained"] for r in rows) / n, 4),
            "cost_usd": round(sum(costs), 6),
            "routing_ms_p50": round(float(np.percentile(routing, 50)), 3),
            "routing_ms_p95": round(float(np.percentile(routing, 95)), 3),
            "latency_ms_p50": round(float(np.percentile(total, 50)), 3),
            "latency_ms_p95": round(float(np.percentile(total, 95)), 3),
        }

    def export(
        self,
        path: str | Path,
        *,
        include: Iterable[str] = ("corrected", "confirmed"),
        min_score: float = 0.5,
        since: float | None = None,
    ) -> dict[str, int]:
        """Write labelled prompts from feedback as JSONL in the trainer's format (``text``, ``label``).

        Args:
            include: ``"corrected"`` (feedback gave a label) and/or ``"confirmed"`` (a score of at least
                ``min_score`` on a request without a corrected label confirms the routed label).
            min_score (float): lowest score that confirms a routed label. Default 0.5.
            since (float | None): only requests started at or after this time.

        Returns:
            dict: how many rows were written per kind, and how many could not be (prompt text not stored).
        """
        kinds = set(include)
        unknown = kinds - {"corrected", "confirmed"}
        if unknown or not kinds:
            raise DataError(f"include must name corrected and/or confirmed, got {sorted(kinds)}")
        rows = {r["request_id"]: r for r in self.outcomes(since)}
        by_request: dict[str, list[dict[str, Any]]] = {}
        for fb in self.feedback():
            if fb["request_id"] in rows:
                by_request.setdefault(fb["request_id"], []).append(fb)
        counts = {"corrected": 0, "confirmed": 0, "no_text": 0, "unlabelled": 0}
        with Path(path).open("w", encoding="utf-8") as handle:
            for request_id, items in by_request.items():
                row = rows[request_id]
                corrected = [f["label"] for f in items if f["label"]]
                scores = [f["score"] for f in items if f["score"] is not None]
                if corrected and "corrected" in kinds:
                    kind, label = "corrected", corrected[-1]  # the latest correction wins
                elif not corrected and scores and scores[-1] >= min_score and "confirmed" in kinds:
                    kind, label = "confirmed", row["label"]
                else:
                    counts["unlabelled"] += 1
                    continue
                if row["prompt_text"] is None:
                    counts["no_text"] += 1
                    continue
                handle.write(json.dumps({"text": row["prompt_text"], "label": label}, ensure_ascii=False) + "\n")
                counts[kind] += 1
        return counts
