"""One worker's serving state: the router, its micro-batcher, the dispatcher and the outcome store.

The app keeps one :class:`ServiceState` in ``app.state.router_ml``; endpoints reach it through the request
(:func:`service_state`, :func:`ready_state`). A new router comes in only through :meth:`ServiceState.swap_router`,
which hands it to the batcher and the dispatcher at once; requests already in flight finish on the router they
started with.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request

from ..artifact import read_manifest, resolve
from ..exceptions import RouterMLError
from ..online.store import OutcomeStore
from ..router import Decision, Prompt, Router
from .batching import MicroBatcher
from .metrics import Metrics
from .schemas import APIError
from .settings import ServiceConfig

if TYPE_CHECKING:
    from ..online.dispatch import Dispatcher

__all__ = ["ServiceState", "ready_state", "service_state"]

logger = logging.getLogger(__name__)


class ServiceState:
    """One worker's router, batcher, dispatcher and store; :meth:`start` fills them, :meth:`swap_router` renews.

    Attributes:
        config (ServiceConfig): the service settings.
        metrics (Metrics): the Prometheus counters and histograms.
        router (Router | None): the router serving new requests; ``None`` until started.
        batcher (MicroBatcher | None): batches concurrent routing decisions.
        dispatcher (Dispatcher | None): routes, calls the providers and logs outcomes.
        store (OutcomeStore | None): the outcome log.
        artifact_dir (Path | None): the artifact ``router`` was loaded from (a models folder's ``CURRENT`` resolved).
        reload_lock (asyncio.Lock): one reload at a time.
    """

    config: ServiceConfig
    metrics: Metrics
    router: Router | None
    batcher: MicroBatcher | None
    dispatcher: Dispatcher | None
    store: OutcomeStore | None
    artifact_dir: Path | None
    reload_lock: asyncio.Lock

    def __init__(self, config: ServiceConfig, metrics: Metrics) -> None:
        """An empty state for ``config``; nothing loads before :meth:`open`."""
        self.config = config
        self.metrics = metrics
        self.router = None
        self.batcher = None
        self.dispatcher = None
        self.store = None
        self.artifact_dir = None
        self.reload_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether the router and the dispatcher are loaded."""
        return self.router is not None and self.dispatcher is not None

    # -- life cycle ----------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Load everything (off the event loop) and start the artifact watcher if a reload interval is set."""
        await asyncio.to_thread(self.start)
        if self.config.reload_interval > 0:
            self._watcher = asyncio.create_task(self.watch())

    async def aclose(self) -> None:
        """Stop the watcher and the batcher, and close the store."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self.batcher is not None:
            await self.batcher.close()
        await asyncio.to_thread(self.close)

    def load_router(self) -> Router:
        """The router the settings name (blocking: embedder and classifier load from disk)."""
        c = self.config
        return Router.load(
            c.model, c.routes, backend=c.backend, fallback_backend=c.fallback_backend, cache_size=c.cache_size,
            explore=c.explore,
        )  # fmt: skip

    def start(self) -> None:
        """Load and warm the router, open the store, and build the batcher and the dispatcher (blocking)."""
        from ..online.dispatch import Dispatcher  # imports litellm (seconds): only when serving

        router = self.load_router()
        router.route("warm up")  # load every lazy piece before the first request
        router.clear_cache()
        self.store = OutcomeStore(self.config.db, prompt_storage=self.config.prompt_storage)
        self.batcher = MicroBatcher(
            router,
            max_batch=self.config.max_batch,
            max_wait_ms=self.config.max_wait_ms,
            on_batch=self.metrics.batch_size.observe,
        )
        self.dispatcher = Dispatcher(
            router, router.routes, self.store, timeout=self.config.timeout, deadline=self.config.deadline,
            decide=self.decide, session_ttl=self.config.session_ttl,
        )  # fmt: skip
        self.router, self.artifact_dir = router, resolve(self.config.model)

    def close(self) -> None:
        """Close the session pins' connection and the outcome store (blocking: it flushes pending writes)."""
        if self.dispatcher is not None and self.dispatcher.pins is not None:
            self.dispatcher.pins.close()
        if self.store is not None:
            self.store.close()

    # -- routing ---------------------------------------------------------------------------------------------------
    async def decide(self, prompt: Prompt) -> Decision:
        """The micro-batched decision for ``prompt``, counted in the metrics (the dispatcher's ``decide``)."""
        assert self.batcher is not None
        decision = await self.batcher.route(prompt)
        self.metrics.decision(decision)
        return decision

    def swap_router(self, router: Router, artifact_dir: Path) -> None:
        """Serve ``router`` (loaded from ``artifact_dir``) from the next request on, in the batcher and dispatcher."""
        assert self.batcher is not None and self.dispatcher is not None
        self.router, self.artifact_dir = router, artifact_dir
        self.batcher.router = router
        self.dispatcher.router = router

    # -- reloading -------------------------------------------------------------------------------------------------
    def _changed(self, target: Path) -> bool:
        """Whether ``target`` is another artifact than the one serving (another folder or router id)."""
        assert self.router is not None
        return target != self.artifact_dir or read_manifest(target)["router_id"] != self.router.version

    async def _load_warm(self) -> Router:
        """A freshly loaded, warmed-up router (off the event loop); a failure is counted, then raised."""
        try:
            router = await asyncio.to_thread(self.load_router)
            await asyncio.to_thread(router.route, "warm up")
            router.clear_cache()
        except RouterMLError:
            self.metrics.reloads.labels("error").inc()
            raise
        return router

    async def reload(self, force: bool = False) -> dict[str, Any]:
        """Load the artifact again if it changed (or ``force``); swap it in for the next requests.

        Raises:
            RouterMLError: the new artifact cannot be loaded (the current router keeps serving).
        """
        async with self.reload_lock:
            assert self.router is not None
            target = resolve(self.config.model)
            if not (self._changed(target) or force):
                return {"reloaded": False, "router_version": self.router.version}
            router = await self._load_warm()
            previous = self.router.version
            self.swap_router(router, target)
            self.metrics.reloads.labels("ok").inc()
            logger.info("reloaded router %s → %s from %s", previous, router.version, target)
            return {"reloaded": True, "router_version": router.version, "previous_version": previous}

    async def watch(self) -> None:
        """Every ``reload_interval`` seconds, reload if a new artifact was promoted (runs until cancelled)."""
        while True:
            await asyncio.sleep(self.config.reload_interval)
            try:
                await self.reload()
            except RouterMLError as exc:  # keep serving the current router; the log says why
                logger.error("router reload failed, keeping the current router: %s", exc)


def service_state(request: Request) -> ServiceState:
    """The state of the app answering ``request``."""
    state: ServiceState = request.app.state.router_ml
    return state


def ready_state(request: Request) -> ServiceState:
    """The state of the app answering ``request``; a 503 error while the router is still loading."""
    state = service_state(request)
    if not state.ready:
        raise APIError(503, "the router is still loading; retry shortly", "server_error", code="not_ready")
    return state
