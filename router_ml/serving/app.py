"""An OpenAI-compatible routing service (FastAPI on uvicorn).

Point any OpenAI client at it; the model name ``router`` (or ``auto``) lets the trained router choose, a model
name from the route table goes to that model. Endpoints:

- ``POST /v1/chat/completions``: OpenAI wire format, plain or streamed (SSE); the decision rides in ``x-router-*``
  response headers (route, model, confidence, abstained, request id, router version).
- ``POST /v1/route``: the decision only, for ``messages``, a plain ``input`` string, or a list of either.
- ``POST /v1/feedback``: a label, score and/or comment for a request id.
- ``GET /v1/models``, ``GET /healthz`` (alive), ``GET /readyz`` (router loaded), ``GET /metrics`` (Prometheus).
- ``POST /admin/reload``: load the artifact again (following a models folder's ``CURRENT``), with the admin key.

Every error is an OpenAI-style JSON body ``{"error": {"message", "type", "param", "code"}}`` with the matching
status code; stack traces go to the log, never to the client. The router loads once per worker; decisions run off
the event loop, micro-batched (:mod:`router_ml.serving.batching`); a reload swaps the router between requests, and
requests already in flight finish on the router they started with.

Where things are: :mod:`.endpoints` (``/v1/*``), :mod:`.operations` (probes, metrics, reload), :mod:`.schemas` (bodies,
errors, headers), :mod:`.errors` (guard middleware, exception handlers), :mod:`.state` (router, batcher,
dispatcher, store).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI

from ..exceptions import ConfigError
from .endpoints import api_router
from .errors import install_error_handling
from .metrics import Metrics
from .operations import operations_router
from .settings import ServiceConfig
from .state import ServiceState

__all__ = ["CONFIG_ENV", "ServiceConfig", "app_from_env", "create_app"]

CONFIG_ENV = "ROUTER_ML_SERVICE_CONFIG"


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the router when the app starts; stop the watcher and batcher and close the store when it stops."""
    state: ServiceState = app.state.router_ml
    await state.open()
    yield
    await state.aclose()


def _version() -> str:
    """The installed package's version ("0" when running from a source tree that is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("router-ml")
    except metadata.PackageNotFoundError:
        return "0"


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI application for ``config`` (the router loads when the app starts)."""
    app = FastAPI(title="router-ml", version=_version(), lifespan=_lifespan, docs_url="/docs", redoc_url=None)
    app.state.router_ml = ServiceState(config, Metrics())
    install_error_handling(app)
    app.include_router(operations_router)
    app.include_router(api_router)
    return app


def app_from_env() -> FastAPI:
    """The app for uvicorn's ``--factory`` mode, configured by ``$ROUTER_ML_SERVICE_CONFIG`` (JSON)."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise ConfigError(f"{CONFIG_ENV} is not set; start the service with `router-ml serve`")
    return create_app(ServiceConfig.from_json(text))
