"""Checking what a provider answered before the caller sees it: plain answers and streams.

A stream is *committed* to the caller only once a content chunk has arrived: until then it is read here
(:func:`prime`, :func:`aprime`), and a failure, an empty stream or a malformed one raises, so the dispatcher
falls back exactly as for a plain call. litellm turns a malformed stream body into a stream with no content that
still "finishes", so a finish reason alone does not commit a stream: like a plain answer, a stream must carry
content (or a tool call) to count as answered. After the
commit, :func:`relay` and :func:`arelay` pass the chunks on and raise :class:`StreamIncompleteError` when the
stream ends without a finish reason, so a cut-short answer is never logged as ``ok``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .llm import EmptyResponseError, StreamIncompleteError

__all__ = ["StreamState", "alogged", "aprime", "arelay", "check_answer", "logged", "prime", "relay"]

OnEnd = Callable[[BaseException | None], None]
"""Called once when a relayed stream is over: with ``None`` when it ended, else with what stopped it."""


def _first_choice(obj: Any) -> Any:
    choices = getattr(obj, "choices", None)
    return choices[0] if choices else None


def check_answer(response: Any) -> None:
    """Raise :class:`EmptyResponseError` for a plain answer without choices or content."""
    choice = _first_choice(response)
    message = getattr(choice, "message", None)
    if message is None:
        raise EmptyResponseError("the provider answered with no choices")
    if not (message.content or getattr(message, "tool_calls", None) or getattr(message, "function_call", None)):
        raise EmptyResponseError(f"the provider answered with an empty message (finish {choice.finish_reason!r})")


@dataclass
class StreamState:
    """What a stream delivered: its chunks, and whether content and a finish reason arrived."""

    chunks: list[Any] = field(default_factory=list)
    content: bool = False
    finished: bool = False

    def add(self, chunk: Any) -> None:
        """Note one chunk."""
        self.chunks.append(chunk)
        choice = _first_choice(chunk)
        if choice is None:
            return
        delta = getattr(choice, "delta", None)
        if delta is not None and (
            delta.content or getattr(delta, "tool_calls", None) or getattr(delta, "function_call", None)
        ):
            self.content = True
        if getattr(choice, "finish_reason", None):
            self.finished = True

    @property
    def committed(self) -> bool:
        """Whether the stream may go to the caller: content (or a tool call) has arrived."""
        return self.content

    def text(self) -> str:
        """The streamed text, joined."""
        parts = (getattr(getattr(_first_choice(c), "delta", None), "content", None) for c in self.chunks)
        return "".join(p for p in parts if p)

    def usage(self) -> Any:
        """The last usage block a chunk carried, if any."""
        return next((c.usage for c in reversed(self.chunks) if getattr(c, "usage", None)), None)

    def ended(self) -> None:
        """The stream ended: raise unless it was complete."""
        if not self.committed:
            raise EmptyResponseError(
                "the stream ended with no content" + ("" if self.finished else " and no finish reason")
            )
        if not self.finished:
            raise StreamIncompleteError("the stream ended without a finish reason; the answer may be cut short")


def prime(stream: Any) -> StreamState:
    """Read a sync stream up to its first content chunk."""
    state = StreamState()
    for chunk in stream:
        state.add(chunk)
        if state.committed:
            return state
    state.ended()
    return state


async def aprime(stream: Any) -> StreamState:
    """Read an async stream up to its first content chunk."""
    state = StreamState()
    async for chunk in stream:
        state.add(chunk)
        if state.committed:
            return state
    state.ended()
    return state


def relay(stream: Any, state: StreamState) -> Iterator[Any]:
    """The primed chunks, then the rest of a sync stream; raises if it ends incomplete."""
    yield from list(state.chunks)
    for chunk in stream:
        state.add(chunk)
        yield chunk
    state.ended()


async def arelay(stream: Any, state: StreamState) -> AsyncIterator[Any]:
    """The primed chunks, then the rest of an async stream; raises if it ends incomplete."""
    for chunk in list(state.chunks):
        yield chunk
    async for chunk in stream:
        state.add(chunk)
        yield chunk
    state.ended()


def logged(stream: Any, state: StreamState, on_end: OnEnd) -> Iterator[Any]:
    """:func:`relay`, then ``on_end``: with ``None``, the provider's error, or ``GeneratorExit`` (reader left)."""
    error: BaseException | None = None
    try:
        yield from relay(stream, state)
    except (Exception, GeneratorExit) as exc:
        error = exc
        raise
    finally:
        on_end(error)


async def alogged(stream: Any, state: StreamState, on_end: OnEnd) -> AsyncIterator[Any]:
    """:func:`arelay`, then ``on_end`` (as :func:`logged`; a cancelled reader gives ``CancelledError``)."""
    error: BaseException | None = None
    try:
        async for chunk in arelay(stream, state):
            yield chunk
    except (Exception, GeneratorExit, asyncio.CancelledError) as exc:
        error = exc
        raise
    finally:
        on_end(error)
