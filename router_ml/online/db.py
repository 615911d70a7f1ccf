"""Where the outcome log lives: a path or URL resolved to SQLite or PostgreSQL, behind one small interface.

The outcome store writes its SQL once, in SQLite's spelling with ``?`` placeholders. :class:`Database` runs it
unchanged on SQLite and translates it for PostgreSQL: ``%s`` placeholders, ``DOUBLE PRECISION`` for ``REAL``
and an identity column for ``INTEGER PRIMARY KEY AUTOINCREMENT``; NUL characters, which PostgreSQL text cannot
hold, are stored as U+FFFD. Both back-ends offer the same
:meth:`Database.transaction`; with ``exclusive=True`` it also keeps other processes out (``BEGIN IMMEDIATE`` on
SQLite, a transaction-scoped advisory lock on PostgreSQL), which is what makes concurrent migrations safe.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..exceptions import ConfigError, StoreError

__all__ = ["Database", "Target", "default_db", "mask_url", "resolve_target"]

_MIGRATION_LOCK = 0x726F_7574_6572  # any fixed bigint: the advisory lock the migrations of every store share
_USAGE = "a file path, sqlite:///relative.db, sqlite:////absolute.db or postgresql://user:password@host:port/db"


def default_db() -> str | Path:
    """``$ROUTER_ML_DB`` (a path or a URL), else ``~/.local/share/router-ml/outcomes.db``."""
    return os.environ.get("ROUTER_ML_DB") or Path.home() / ".local" / "share" / "router-ml" / "outcomes.db"


def mask_url(url: str) -> str:
    """``url`` with its password, in the user part or a ``password=`` parameter, replaced by ``***``."""
    url = re.sub(r"(://[^/@:]*:)[^/]*@", r"\1***@", url)  # greedy: up to the last @ of the host part
    return re.sub(r"(\bpassword=)[^&\s]*", r"\1***", url)


@dataclass(frozen=True)
class Target:
    """A resolved outcome store: ``kind``, and a file path (SQLite) or a libpq URL (PostgreSQL)."""

    kind: Literal["sqlite", "postgresql"]
    location: str

    @property
    def display(self) -> str:
        """The location, safe to print (the password masked)."""
        return mask_url(self.location) if self.kind == "postgresql" else self.location


def resolve_target(spec: str | Path | None) -> Target:
    """Read a path, ``sqlite:///path`` or ``postgresql://`` / ``postgres://`` URL; ``None`` means :func:`default_db`.

    ``sqlite:///`` follows SQLAlchemy: three slashes then a relative path, four for an absolute one.
    """
    spec = default_db() if spec is None else spec
    if isinstance(spec, Path):
        return Target("sqlite", str(spec.expanduser()))
    scheme, sep, rest = spec.partition("://")
    if not sep:
        return Target("sqlite", str(Path(spec).expanduser()))
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return Target("postgresql", spec)
    if scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return Target("sqlite", str(Path(rest[1:]).expanduser()))
    raise ConfigError(f"cannot use {mask_url(spec)!r} as the outcome store: expected {_USAGE}")


class Database:
    """One connection to the outcome store, SQLite or PostgreSQL, in autocommit mode outside transactions.

    Args:
        target (Target): where to connect (see :func:`resolve_target`).
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self.postgres = target.kind == "postgresql"
        self._in_transaction = False
        if self.postgres:
            psycopg = _psycopg(target)
            self.error: type[Exception] = psycopg.Error  # any database error
            self.retryable: tuple[type[Exception], ...] = (psycopg.OperationalError,)  # locks, lost connections
        else:
            self.error = sqlite3.Error
            self.retryable = (sqlite3.OperationalError,)
        self._conn: Any = self._connect()

    def _connect(self) -> Any:
        return _connect_postgres(self.target) if self.postgres else _connect_sqlite(Path(self.target.location))

    def _alive(self) -> Any:
        """The connection, reconnected first if PostgreSQL dropped it (never inside a transaction)."""
        if self.postgres and not self._in_transaction and (self._conn.closed or self._conn.broken):
            self._conn = self._connect()
        return self._conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement; returns a DB-API cursor (``fetchone``, ``fetchall``, ``description``)."""
        if not self.postgres:
            return self._conn.execute(sql, args)
        query, params = _postgres_sql(sql, bool(args)), _postgres_args(args) if args else None
        try:
            return self._alive().execute(query, params)
        except self.retryable:
            if self._in_transaction or not self._conn.broken or not sql.lstrip().upper().startswith("SELECT"):
                raise
            return self._alive().execute(query, params)  # the server dropped an idle connection: read again

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row (pipelined on PostgreSQL)."""
        if not self.postgres:
            self._conn.executemany(sql, rows)
            return
        with self._alive().cursor() as cursor:
            cursor.executemany(_postgres_sql(sql, True), [_postgres_args(row) for row in rows])

    @contextmanager
    def transaction(self, *, exclusive: bool = False) -> Iterator[Database]:
        """Commit what runs inside, or roll it all back; ``exclusive`` also waits for and locks out other writers.

        On SQLite every transaction here is ``BEGIN IMMEDIATE`` (a writer). On PostgreSQL ``exclusive`` takes
        ``pg_advisory_xact_lock``, held by one store at a time in the whole database until the commit.
        """
        conn = self._alive()
        self._in_transaction = True
        try:
            if self.postgres:
                with conn.transaction():
                    if exclusive:
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    yield self
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            self._in_transaction = False

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


# -- SQLite ----------------------------------------------------------------------------------------------------
def _connect_sqlite(path: Path) -> sqlite3.Connection:
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


# -- PostgreSQL ------------------------------------------------------------------------------------------------
_POSTGRES_DDL = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),  # PostgreSQL's REAL is 4 bytes: epoch seconds would blur
)


@functools.lru_cache(maxsize=128)
def _postgres_sql(sql: str, has_args: bool) -> str:
    """SQLite-spelled ``sql`` for PostgreSQL: column types in ``CREATE``/``ALTER``, then ``?`` placeholders."""
    if re.match(r"\s*(CREATE|ALTER)\b", sql, re.I):
        for pattern, replacement in _POSTGRES_DDL:
            sql = pattern.sub(replacement, sql)
    return sql.replace("%", "%%").replace("?", "%s") if has_args else sql


def _postgres_args(args: Sequence[Any]) -> tuple[Any, ...]:
    """``args`` with NUL characters in strings replaced by U+FFFD: PostgreSQL text cannot hold NUL."""
    return tuple(a.replace("\x00", "\ufffd") if isinstance(a, str) and "\x00" in a else a for a in args)


def _psycopg(target: Target) -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            f"the outcome store {target.display} is PostgreSQL, which needs psycopg 3: "
            "pip install 'psycopg[binary]>=3.2'"
        ) from None
    return psycopg


def _connect_postgres(target: Target, attempts: int = 3) -> Any:
    """Connect (autocommit), retrying briefly; a :class:`StoreError` with the password masked when it cannot."""
    psycopg = _psycopg(target)
    try:
        params = psycopg.conninfo.conninfo_to_dict(target.location)
    except psycopg.ProgrammingError as exc:
        raise StoreError(
            f"cannot read the outcome store URL {target.display}: {_reason(exc, target)} Expected {_USAGE}."
        ) from None
    params.setdefault("connect_timeout", 10)
    params.setdefault("application_name", "router-ml")
    for attempt in range(attempts):
        try:
            return psycopg.connect(autocommit=True, **params)
        except psycopg.OperationalError as exc:
            if attempt + 1 < attempts and "does not exist" not in str(exc) and "authentication" not in str(exc):
                time.sleep(0.2 * 2**attempt)
                continue
            raise StoreError(
                f"cannot connect to the outcome store at {target.display}: {_reason(exc, target)} Check that "
                "PostgreSQL is running and reachable there, and that the user, password and database in the URL "
                "(--db or ROUTER_ML_DB) are right; scripts/ci_postgres.sh starts a local test server."
            ) from None
    raise AssertionError("unreachable")


def _reason(exc: Exception, target: Target) -> str:
    """The driver's message as one sentence, with the URL's password (if any) masked."""
    text = " ".join(str(exc).split())
    password = re.search(r"://[^/@:]*:([^/]*)@", target.location)
    text = text.replace(password.group(1), "***") if password and password.group(1) else text
    return text if text.endswith((".", "?", "!")) else text + "."
