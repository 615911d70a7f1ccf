"""The outcome log: one durable record per request, feedback on it, summaries and export for retraining.

Storage is a SQLite file in WAL mode (the default), or PostgreSQL when several replicas share one log. The
location comes from the ``path`` argument, else ``$ROUTER_ML_DB``, else ``~/.local/share/router-ml/outcomes.db``;
either may be a file path, ``sqlite:///path`` or ``postgresql://user:password@host:port/db``
(:mod:`router_ml.online.db` resolves it and hides the SQL dialects). The schema is built by migrations
registered in :mod:`router_ml.online.schema`, the same for both back-ends, applied once each, in order, under a
lock that keeps concurrent starts out of each other's way, and recorded by name in ``_migrations``.

Writes never block the request path: :meth:`OutcomeStore.record` puts the outcome on a queue and a writer thread
commits batches in single transactions, retrying (and reconnecting) on transient errors. :meth:`OutcomeStore.flush`
waits until everything queued is committed, and :meth:`OutcomeStore.close` flushes before closing, so no record is
lost when many requests finish at once. A request id is logged once: writing the same id again changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError, DataError, StoreError
from .db import Database, resolve_target
from .outcome import PROMPT_STORAGE, Feedback, Outcome, PromptStorage, parse_score
from .schema import INSERT, MIGRATIONS, from_row, to_row
from .summary import summarize

__all__ = ["OutcomeStore"]

logger = logging.getLogger(__name__)

_WRITE_ATTEMPTS = 8  # about 5 s of retries: a busy SQLite file or a restarting PostgreSQL


class OutcomeStore:
    """The outcome log (SQLite or PostgreSQL) with a background writer.

    Args:
        path (str | Path | None): a database file, ``sqlite:///path`` or ``postgresql://user:password@host:port/db``;
            ``$ROUTER_ML_DB`` or the default file when ``None``.
        prompt_storage (str): what to keep of each prompt: ``"full"`` text, a SHA-256 ``"hash"``, or ``"none"``.
    """

    def __init__(self, path: str | Path | None = None, *, prompt_storage: PromptStorage = "full") -> None:
        if prompt_storage not in PROMPT_STORAGE:
            raise ConfigError(f"prompt_storage must be one of {PROMPT_STORAGE}, got {prompt_storage!r}")
        self.target = resolve_target(path)
        self.location = self.target.display  # printable: a file path, or the URL with its password masked
        self.path = Path(self.target.location) if self.target.kind == "sqlite" else None
        self.prompt_storage = prompt_storage
        self._read = Database(self.target)
        self._read_lock = threading.Lock()
        try:
            self._migrate()
            self._write = Database(self.target)
        except BaseException:
            self._read.close()
            raise
        self._queue: queue.Queue[Outcome | None] = queue.Queue()
        self._failures: list[str] = []
        self._writer = threading.Thread(target=self._write_loop, name="router-ml-outcome-writer", daemon=True)
        self._writer.start()
        self._closed = False

    # -- schema ------------------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Apply pending migrations, each in an exclusive transaction, so stores starting together apply each once."""
        db = self._read
        name = "_migrations"
        try:
            with db.transaction(exclusive=True):
                db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
            done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
            for name, func in MIGRATIONS:
                if name in done:
                    continue
                with db.transaction(exclusive=True):
                    if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                        func(db)
                        db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
        except db.error as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            fix = (
                "The store's user needs the right to create tables there (PostgreSQL: GRANT CREATE ON SCHEMA "
                "<schema> TO <user>)."
                if "permission" in reason.lower()
                else "Fix that and open the store again: migrations already applied are kept."
            )
            raise StoreError(
                f"cannot create the outcome tables in {self.location} (migration {name}): {reason}. {fix}"
            ) from exc

    def migrations(self) -> list[str]:
        """Names of the applied migrations, in order."""
        with self._read_lock:
            return [r[0] for r in self._read.execute("SELECT name FROM _migrations ORDER BY applied_at, name")]

    # -- writing -----------------------------------------------------------------------------------------------
    def record(self, outcome: Outcome) -> None:
        """Queue an outcome for writing; returns at once."""
        if self._closed:
            raise StoreError(f"the outcome store {self.location} is closed")
        self._queue.put(outcome)

    def _row(self, o: Outcome) -> tuple[Any, ...]:
        """The row to write: the prompt kept as ``prompt_storage`` says (its text, its SHA-256, or nothing)."""
        text = o.prompt_text
        digest = (
            hashlib.sha256(text.encode()).hexdigest() if text is not None and self.prompt_storage != "none" else None
        )
        kept = dataclasses.replace(o, prompt_text=text if self.prompt_storage == "full" else None, prompt_hash=digest)
        return to_row(kept)

    def _write_loop(self) -> None:
        """Commit queued outcomes in batches of up to 500 until the ``None`` that :meth:`close` queues."""
        while True:
            batch = [self._queue.get()]
            while len(batch) < 500:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            outcomes = [o for o in batch if o is not None]
            try:
                if outcomes:
                    self._commit(outcomes)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if any(o is None for o in batch):
                return

    def _commit(self, outcomes: list[Outcome]) -> None:
        """Write a batch; a row the database refuses costs only that row. Failures go to :meth:`flush`."""
        try:
            self._write_batch(outcomes)
            return
        except (*self._write.retryable, StoreError) as exc:  # still locked or unreachable after the retries
            error: Exception = exc
        except Exception as exc:  # a row the database refuses: write the others one by one
            if len(outcomes) > 1:
                for o in outcomes:
                    self._commit([o])
                return
            error = exc
        what = f"{len(outcomes)} outcome{'s' * (len(outcomes) > 1)}"
        logger.error("could not write %s to %s: %s", what, self.location, error)
        self._failures.append(f"{what} ({error})")

    def _write_batch(self, outcomes: list[Outcome]) -> None:
        """One transaction for the batch; on a lock or a lost connection, wait, reconnect and try again."""
        rows = [self._row(o) for o in outcomes]
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self._write.transaction():
                    self._write.executemany(INSERT, rows)
                return
            except (*self._write.retryable, StoreError) as exc:
                if attempt + 1 == _WRITE_ATTEMPTS:
                    raise
                logger.warning("writing %d outcomes to %s failed, retrying: %s", len(rows), self.location, exc)
                time.sleep(min(0.05 * 2**attempt, 2.0))

    def flush(self) -> None:
        """Block until every queued outcome is committed; a :class:`StoreError` if some could not be."""
        self._queue.join()
        if self._failures:
            failures, self._failures = self._failures, []
            raise StoreError(
                f"could not write to the outcome store {self.location}: {'; '.join(failures)}. "
                "Check that the database is reachable and writable; the log has the details."
            )

    def close(self) -> None:
        """Flush and close the store."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        self._write.close()
        self._read.close()
        self.flush()  # the queue is empty now: this only reports outcomes that could not be written

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
                    f"unknown request id {request_id!r} in {self.location}; use the id returned with the response "
                    "(x-router-request-id) or listed by `router-ml outcomes list`"
                )
            self._read.execute(
                "INSERT INTO feedback (request_id, created_at, label, score, comment) VALUES (?, ?, ?, ?, ?)",
                (request_id, time.time(), label, value, comment),
            )

    # -- reading -----------------------------------------------------------------------------------------------
    def _select(self, where: str, args: tuple[Any, ...], tail: str = "") -> list[Outcome]:
        """Outcomes whose rows match ``where``."""
        self.flush()
        with self._read_lock:
            cursor = self._read.execute(f"SELECT * FROM outcomes WHERE {where} {tail}", args)
            names = [d[0] for d in cursor.description]
            return [from_row(names, r) for r in cursor.fetchall()]

    def outcomes(self, since: float | None = None, limit: int | None = None) -> list[Outcome]:
        """Logged outcomes started at or after ``since`` (epoch seconds), newest first."""
        tail = "ORDER BY started_at DESC" + (" LIMIT ?" if limit is not None else "")
        args: tuple[Any, ...] = (since or 0.0,) + ((limit,) if limit is not None else ())
        return self._select("started_at >= ?", args, tail)

    def get(self, request_id: str) -> Outcome:
        """One logged outcome (its feedback: :meth:`feedback`)."""
        rows = self._select("request_id = ?", (request_id,))
        if not rows:
            raise StoreError(f"unknown request id {request_id!r} in {self.location}")
        return rows[0]

    def feedback(self, request_id: str | None = None) -> list[Feedback]:
        """Feedback (for one request, or all), oldest first."""
        sql = "SELECT request_id, created_at, label, score, comment FROM feedback"
        args: tuple[Any, ...] = ()
        if request_id is not None:
            sql += " WHERE request_id = ?"
            args = (request_id,)
        with self._read_lock:
            return [Feedback(*row) for row in self._read.execute(sql + " ORDER BY id", args).fetchall()]

    def count(self) -> int:
        """Number of logged outcomes."""
        self.flush()
        with self._read_lock:
            return int(self._read.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])

    def summary(self, since: float | None = None) -> dict[str, Any]:
        """Requests, route share, answered, error and fallback rates, cost and latency since ``since``."""
        return summarize(self.outcomes(since))

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
        rows = {r.request_id: r for r in self.outcomes(since)}
        by_request: dict[str, list[Feedback]] = {}
        for fb in self.feedback():
            if fb.request_id in rows:
                by_request.setdefault(fb.request_id, []).append(fb)
        counts = {"corrected": 0, "confirmed": 0, "no_text": 0, "unlabelled": 0}
        with Path(path).open("w", encoding="utf-8") as handle:
            for request_id, items in by_request.items():
                row = rows[request_id]
                corrected = [f.label for f in items if f.label]
                scores = [f.score for f in items if f.score is not None]
                if corrected and "corrected" in kinds:
                    kind, label = "corrected", corrected[-1]  # the latest correction wins
                elif not corrected and scores and scores[-1] >= min_score and "confirmed" in kinds:
                    kind, label = "confirmed", row.label
                else:
                    counts["unlabelled"] += 1
                    continue
                if row.prompt_text is None:
                    counts["no_text"] += 1
                    continue
                handle.write(json.dumps({"text": row.prompt_text, "label": label}, ensure_ascii=False) + "\n")
                counts[kind] += 1
        return counts
