"""Session stickiness: a conversation pinned to the model that answered its first routed turn.

A caller names its conversation with a session id (the ``x-router-session`` header, or ``session=`` in
:meth:`~router_ml.online.dispatch.Dispatcher.complete`). The first routed turn that is answered pins the session to
the model that answered it and to its route; later turns go to that model first, without asking the router, with
the route's fallbacks behind it. A pin lives ``ttl`` seconds from the conversation's last turn (every answered turn
under it renews it); after that the next turn is routed afresh and pinned again.

Pins live in memory in each worker (a TTL cache) and, when the dispatcher has an outcome store, in that store's
``session_pins`` table too, so every worker and replica sharing the store (PostgreSQL, or one SQLite file) sees
the same pins. Session ids are kept only as their SHA-256. The store is a help, never a failure: if it cannot be
read or written, the worker carries on with its own memory and logs a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from dataclasses import dataclass

from cachetools import TTLCache

from ..exceptions import ConfigError, DataError, StoreError
from ..route_table import RouteTable
from .db import Database, Target
from .outcome import Outcome

__all__ = ["DEFAULT_SESSION_TTL", "MAX_SESSION_CHARS", "Pin", "SessionPins", "check_session", "pinned_chain"]

logger = logging.getLogger(__name__)

DEFAULT_SESSION_TTL = 1800.0
"""Seconds a pin lives after the conversation's last turn (30 minutes)."""

MAX_SESSION_CHARS = 256
"""Longest accepted session id."""

_PURGE_EVERY = 60.0  # seconds between deletions of expired rows from the shared table

_UPSERT = (
    "INSERT INTO session_pins (session_key, model, label, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (session_key) DO UPDATE SET model = excluded.model, label = excluded.label, "
    "expires_at = excluded.expires_at"
)


def check_session(session: str | None) -> str | None:
    """``session`` if it is a usable session id (``None``, or 1 to 256 printable characters); else a DataError."""
    if session is None:
        return None
    if not isinstance(session, str) or not session or len(session) > MAX_SESSION_CHARS or not session.isprintable():
        raise DataError(
            f"a session id must be 1 to {MAX_SESSION_CHARS} printable characters, got {session!r}; "
            "send one id per conversation, e.g. a UUID"
        )
    return session


@dataclass(frozen=True)
class Pin:
    """A session's pinned model, the route it was routed to, and when the pin expires (epoch seconds)."""

    model: str
    label: str
    expires_at: float


def pinned_chain(pin: Pin | None, routes: RouteTable) -> list[str] | None:
    """The models a turn under ``pin`` tries: the pinned model, then its route's others in their order (so a
    pinned model that fails falls back as usual); ``None`` without a pin, or when ``routes`` no longer has its
    route or model (after a reload): the turn is then routed afresh."""
    if pin is None or pin.label not in routes.routes or pin.model not in routes.all_models:
        return None
    return [pin.model, *(m for m in routes[pin.label].chain if m != pin.model)]


class SessionPins:
    """The pins of one worker: a TTL cache in memory, backed by the outcome store's table when given one.

    Args:
        ttl (float): seconds a pin lives after the conversation's last turn. Default 1800.
        target (Target | None): the outcome store whose ``session_pins`` table shares pins between workers and
            replicas (migrated by :class:`~router_ml.online.store.OutcomeStore`); memory only when ``None``.
        maxsize (int): most pins kept in memory (least recently used dropped first). Default 100,000.
    """

    def __init__(self, ttl: float = DEFAULT_SESSION_TTL, target: Target | None = None, *, maxsize: int = 100_000):
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            raise ConfigError(f"the session TTL must be a positive number of seconds, got {ttl!r}")
        self.ttl = float(ttl)
        self.target = target
        self._memory: TTLCache[str, Pin] = TTLCache(maxsize, self.ttl, timer=time.time)
        self._lock = threading.Lock()  # the memory cache and the connection
        self._db: Database | None = None
        self._next_purge = 0.0

    @property
    def shared(self) -> bool:
        """Whether pins are also kept in a store that other workers and replicas read (I/O on each lookup)."""
        return self.target is not None

    @staticmethod
    def _key(session: str) -> str:
        return hashlib.sha256(session.encode("utf-8")).hexdigest()

    def get(self, session: str) -> Pin | None:
        """The session's live pin: from memory, else from the shared store; ``None`` when it has none."""
        key, now = self._key(session), time.time()
        with self._lock:
            pin = self._memory.get(key)
            if pin is not None and pin.expires_at > now:
                return pin
            row = self._shared(
                "SELECT model, label, expires_at FROM session_pins WHERE session_key = ? AND expires_at > ?", (key, now)
            )
            if row is None:
                return None
            pin = Pin(str(row[0]), str(row[1]), float(row[2]))
            self._memory[key] = pin
            return pin

    def pin(self, session: str, model: str, label: str) -> Pin:
        """Pin ``session`` to ``model`` (serving route ``label``) for ``ttl`` seconds from now; renews a pin."""
        key, now = self._key(session), time.time()
        pin = Pin(model, label, now + self.ttl)
        with self._lock:
            self._memory[key] = pin
            self._shared(_UPSERT, (key, model, label, pin.expires_at), fetch=False)
            if self.target is not None and now >= self._next_purge:
                self._next_purge = now + _PURGE_EVERY
                self._shared("DELETE FROM session_pins WHERE expires_at <= ?", (now,), fetch=False)
        return pin

    def resume(self, session: str, routes: RouteTable, outcome: Outcome) -> tuple[Pin | None, list[str] | None]:
        """The session's live pin and the models its turn tries (see :func:`pinned_chain`); ``(None, None)``
        without one that ``routes`` still serves. The outcome takes the pin's route."""
        pin = self.get(session)
        chain = pinned_chain(pin, routes)
        if pin is None or chain is None:
            return None, None
        outcome.label = pin.label
        return pin, chain

    def settle(self, session: str, pin: Pin | None, outcome: Outcome) -> None:
        """After an answered turn that was routed or pinned (not forced): note on the outcome whether the pin held
        (its model answered), and pin the session to the model that answered, or renew the pin it has (a pin
        stays on its model when a fallback answered: the conversation goes back once that model recovers)."""
        if outcome.forced is not None or outcome.model is None:
            return
        outcome.sticky = pin is not None and outcome.model == pin.model
        if pin is not None:
            self.pin(session, pin.model, pin.label)
        elif outcome.label is not None:
            self.pin(session, outcome.model, outcome.label)

    def drop(self, session: str) -> None:
        """Forget ``session``'s pin, here and in the shared store."""
        key = self._key(session)
        with self._lock:
            self._memory.pop(key, None)
            self._shared("DELETE FROM session_pins WHERE session_key = ?", (key,), fetch=False)

    def _shared(self, sql: str, args: tuple[object, ...], *, fetch: bool = True) -> tuple[object, ...] | None:
        """Run ``sql`` on the shared store (the caller holds the lock); ``None`` without one or on a failure."""
        if self.target is None:
            return None
        try:
            if self._db is None:
                self._db = Database(self.target)
            cursor = self._db.execute(sql, args)
            return cursor.fetchone() if fetch else None
        except (StoreError, *self._errors()) as exc:
            logger.warning("session pins: %s failed (%s); using this worker's memory", self.target.display, exc)
            self._reset()
            return None

    def _errors(self) -> tuple[type[Exception], ...]:
        return (self._db.error,) if self._db is not None else ()

    def _reset(self) -> None:
        """Drop a connection that failed, so the next use reconnects."""
        if self._db is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too; it is dropped anyway
                self._db.close()
            self._db = None

    def close(self) -> None:
        """Close the connection to the shared store (pins in memory are kept until the object goes)."""
        with self._lock:
            self._reset()
