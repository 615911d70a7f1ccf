"""The outcome log's schema: ordered migrations, registered by decorator and applied once each by name.

Write the SQL in SQLite's spelling (``?``, ``REAL``, ``INTEGER PRIMARY KEY AUTOINCREMENT``);
:class:`~router_ml.online.db.Database` translates it for PostgreSQL. This module also turns an
:class:`~router_ml.online.outcome.Outcome` into a row and a row back into an ``Outcome``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from typing import Any

from .db import Database
from .outcome import Attempt, Outcome

__all__ = ["COLUMNS", "INSERT", "MIGRATIONS", "from_row", "migration", "to_row"]

Migration = Callable[[Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(func: Migration) -> Migration:
    """Register a schema migration; migrations run once each, in registration order.

    Write the SQL in SQLite's spelling (``?``, ``REAL``, ``INTEGER PRIMARY KEY AUTOINCREMENT``) and run it with
    ``db.execute``: :class:`~router_ml.online.db.Database` translates it for PostgreSQL.
    """
    MIGRATIONS.append((func.__name__, func))
    return func


@migration
def m001_outcomes(db: Database) -> None:
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
def m002_feedback(db: Database) -> None:
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


@migration
def m003_instructions_and_sticky(db: Database) -> None:
    """Which instructions the model received (a SHA-256 prefix), and whether a session's pin held."""
    db.execute("ALTER TABLE outcomes ADD COLUMN instructions_hash TEXT")
    db.execute("ALTER TABLE outcomes ADD COLUMN sticky INTEGER NOT NULL DEFAULT 0")


@migration
def m004_session_pins(db: Database) -> None:
    """Session pins shared by every worker and replica on this store (see :mod:`router_ml.online.sessions`)."""
    db.execute(
        """CREATE TABLE session_pins (
            session_key TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            label TEXT NOT NULL,
            expires_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX session_pins_expires_at ON session_pins (expires_at)")


@migration
def m005_exploration(db: Database) -> None:
    """The first model's probability under the serving policy, whether it was an exploratory choice, and whether
    a failed call counts as a 0 outcome for its model (rows logged before read as unknown, no, yes)."""
    db.execute("ALTER TABLE outcomes ADD COLUMN propensity REAL")
    db.execute("ALTER TABLE outcomes ADD COLUMN explored INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE outcomes ADD COLUMN score_failures INTEGER NOT NULL DEFAULT 1")


COLUMNS = [
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
    "instructions_hash",
    "sticky",
    "propensity",
    "explored",
    "score_failures",
]
INSERT = (
    f"INSERT INTO outcomes ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (request_id) DO NOTHING"
)


def to_row(outcome: Outcome) -> tuple[Any, ...]:
    """The row for ``outcome``, in :data:`COLUMNS` order (the prompt as the outcome holds it)."""
    values = asdict(outcome)
    values.update(
        probabilities=json.dumps(outcome.probabilities),
        attempts=json.dumps([asdict(a) for a in outcome.attempts]),
        abstained=int(outcome.abstained),
        stream=int(outcome.stream),
        sticky=int(outcome.sticky),
        explored=int(outcome.explored),
        score_failures=int(outcome.score_failures),
    )
    return tuple(values[c] for c in COLUMNS)


_OUTCOME_FIELDS = {f.name for f in fields(Outcome)}


def from_row(names: Sequence[str], row: Sequence[Any]) -> Outcome:
    """The :class:`Outcome` a row of ``outcomes`` holds (JSON and boolean columns decoded)."""
    values = {n: v for n, v in zip(names, row, strict=True) if n in _OUTCOME_FIELDS}
    values["probabilities"] = json.loads(values["probabilities"])
    values["attempts"] = [Attempt(**a) for a in json.loads(values["attempts"])]
    values["abstained"] = bool(values["abstained"])
    values["stream"] = bool(values["stream"])
    values["sticky"] = bool(values.get("sticky", 0))
    values["explored"] = bool(values.get("explored", 0))
    values["score_failures"] = bool(values.get("score_failures", 1))
    return Outcome(**values)
