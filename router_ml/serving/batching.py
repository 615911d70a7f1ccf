"""Micro-batching: concurrent single routing requests are embedded together.

Embedding 16 prompts in one forward pass costs far less than 16 passes, so a service that receives many
requests at once gains throughput by batching them. :class:`MicroBatcher` queues each request; a worker task takes
the first one waiting, keeps collecting until ``max_batch`` requests are in hand or ``max_wait_ms`` has passed
since the first, then routes the batch in a thread (off the event loop). While a batch is being embedded, new
requests queue up and form the next batch, so under load batches grow by themselves and a lone request waits at
most ``max_wait_ms``. Each caller gets its own decision; a malformed prompt fails only its own call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ..router import Decision, Prompt, Router, routing_texts

__all__ = ["BatchStats", "MicroBatcher"]


@dataclass
class BatchStats:
    """Counters for metrics: requests batched, batches run, and how many batches had each size."""

    requests: int = 0
    batches: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    def add(self, size: int) -> None:
        """Count one batch of ``size`` requests."""
        self.requests += size
        self.batches += 1
        self.sizes[size] = self.sizes.get(size, 0) + 1


@dataclass
class _Pending:
    prompt: Prompt
    future: asyncio.Future[Decision]


class MicroBatcher:
    """Batches concurrent :meth:`route` calls on one event loop.

    Args:
        router (Router): the router; replace the attribute to switch routers (a batch already running finishes
            on the one it started with).
        max_batch (int): most requests embedded together. Default 32.
        max_wait_ms (float): most time the first request of a batch waits for others. Default 2.0.
        on_batch (Callable[[int], None] | None): called with each batch's size (for metrics).

    Example:
        >>> batcher = MicroBatcher(router)  # doctest: +SKIP
        >>> decisions = await asyncio.gather(*(batcher.route(p) for p in prompts))  # doctest: +SKIP
    """

    def __init__(
        self,
        router: Router,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """A batcher for ``router``; its worker task starts with the first request."""
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be ≥ 1 and max_wait_ms ≥ 0, got {max_batch} and {max_wait_ms}")
        self.router = router
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.stats = BatchStats()
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def route(self, prompt: Prompt) -> Decision:
        """The decision for one prompt, batched with whatever else arrives meanwhile.

        Raises:
            DataError: the prompt is malformed (checked before queueing, so no other request is affected).
        """
        routing_texts(prompt)
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="router-ml micro-batcher")
        assert self._queue is not None
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(prompt, future))
        return await future

    async def _collect(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        """The next batch: the first request waiting, then more until ``max_batch`` or ``max_wait_ms``."""
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        """The worker: route batch after batch in a thread and answer each caller's future."""
        queue = self._queue
        assert queue is not None
        while True:
            batch = await self._collect(queue)
            live = [p for p in batch if not p.future.done()]  # a caller may have given up (cancelled)
            if not live:
                continue
            self.stats.add(len(live))
            if self.on_batch is not None:
                self.on_batch(len(live))
            router = self.router
            try:
                decisions = await asyncio.to_thread(router.route_batch, [p.prompt for p in live])
            except Exception as exc:  # one failure is every waiting caller's answer; the worker goes on
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            for pending, decision in zip(live, decisions, strict=True):
                if not pending.future.done():
                    pending.future.set_result(decision)

    async def close(self) -> None:
        """Stop the worker (requests still queued are cancelled)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait().future.cancel()
