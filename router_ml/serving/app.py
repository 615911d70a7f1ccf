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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..artifact import read_manifest, resolve
from ..exceptions import ConfigError, DataError, RouterMLError
from ..online.store import OutcomeStore, StoreError
from ..route import Decision, Router
from .batching import MicroBatcher
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .settings import ServiceConfig

__all__ = ["CONFIG_ENV", "ServiceConfig", "app_from_env", "create_app"]

logger = logging.getLogger(__name__)

CONFIG_ENV = "ROUTER_ML_SERVICE_CONFIG"
ROUTER_MODELS = ("router", "auto")


# -- request bodies --------------------------------------------------------------------------------------------
class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[Message] | None = None
    input: str | list[str | list[Message]] | None = None


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1)
    label: str | None = None
    score: float | Literal["up", "down"] | None = None
    comment: str | None = None


_Body = TypeVar("_Body", bound=BaseModel)


class APIError(Exception):
    """An error answered as OpenAI-style JSON."""

    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
        param: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or None
    return f"{where + ': ' if where else ''}{first['msg']}", where


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body of {declared} bytes is over the {limit}-byte limit", code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, f"request body is over the {limit}-byte limit", code="body_too_large")
    return bytes(body)


async def _parse(request: Request, model: type[_Body], limit: int) -> _Body:
    body = await _read_body(request, limit)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, f"request body must be a JSON object, found {type(data).__name__}", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = _validation_message(exc)
        raise APIError(400, message, param=param) from None


def _messages(items: list[Message]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in items]


def _decision_headers(request_id: str, decision: Decision | None, model: str | None, version: str) -> dict[str, str]:
    headers = {"x-router-request-id": request_id, "x-router-version": version}
    if model:
        headers["x-router-model"] = model
    if decision is not None:
        headers |= {
            "x-router-route": decision.label,
            "x-router-confidence": f"{decision.confidence:.4f}",
            "x-router-abstained": str(decision.abstained).lower(),
        }
    return headers


class _State:
    """One worker's router, batcher, dispatcher and store; swapped together on reload."""

    def __init__(self, config: ServiceConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.router: Router | None = None
        self.batcher: MicroBatcher | None = None
        self.dispatcher: Any = None
        self.store: OutcomeStore | None = None
        self.artifact_dir: Path | None = None
        self.reload_lock = asyncio.Lock()

    def load_router(self) -> Router:
        c = self.config
        return Router.load(
            c.model, c.routes, backend=c.backend, fallback_backend=c.fallback_backend, cache_size=c.cache_size
        )

    def start(self) -> None:
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
            decide=self.decide,
        )  # fmt: skip
        self.router, self.artifact_dir = router, resolve(self.config.model)

    async def decide(self, prompt: Any) -> Decision:
        assert self.batcher is not None
        decision = await self.batcher.route(prompt)
        self.metrics.decision(decision)
        return decision

    async def reload(self, force: bool = False) -> dict[str, Any]:
        """Load the artifact again if it changed (or ``force``); swap it in for the next requests."""
        async with self.reload_lock:
            assert self.router is not None
            target = resolve(self.config.model)
            changed = target != self.artifact_dir or read_manifest(target)["router_id"] != self.router.version
            if not (changed or force):
                return {"reloaded": False, "router_version": self.router.version}
            try:
                router = await asyncio.to_thread(self.load_router)
                await asyncio.to_thread(router.route, "warm up")
                router.clear_cache()
            except RouterMLError:
                self.metrics.reloads.labels("error").inc()
                raise
            previous = self.router.version
            self.router, self.artifact_dir = router, target
            self.batcher.router = router  # type: ignore[union-attr]
            self.dispatcher.router = router
            self.metrics.reloads.labels("ok").inc()
            logger.info("reloaded router %s → %s from %s", previous, router.version, target)
            return {"reloaded": True, "router_version": router.version, "previous_version": previous}

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval)
            try:
                await self.reload()
            except RouterMLError as exc:  # keep serving the current router; the log says why
                logger.error("router reload failed, keeping the current router: %s", exc)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI application for ``config`` (the router loads when the app starts)."""
    metrics = Metrics()
    state = _State(config, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(state.start)
        watcher = asyncio.create_task(state.watch()) if config.reload_interval > 0 else None
        yield
        if watcher is not None:
            watcher.cancel()
        if state.batcher is not None:
            await state.batcher.close()
        await asyncio.to_thread(state.close)

    app = FastAPI(title="router-ml", version=_version(), lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.router_ml = state

    def check_key(request: Request, keys: list[str], what: str) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise APIError(401, f"missing bearer token: send 'Authorization: Bearer <{what}>'", code="invalid_api_key")
        if not any(secrets.compare_digest(token.encode(), k.encode()) for k in keys):
            raise APIError(401, f"invalid {what}", code="invalid_api_key")

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        started = time.perf_counter()
        path = request.url.path
        try:
            if path.startswith("/v1/") and config.api_keys:
                check_key(request, config.api_keys, "API key")
            if path.startswith("/admin/"):
                if not config.admin_key:
                    raise APIError(
                        404, "admin endpoints are off: start the service with an admin key", code="not_found"
                    )
                check_key(request, [config.admin_key], "admin key")
            response = await call_next(request)
        except APIError as exc:
            response = exc.response()
        endpoint = path if request.scope.get("route") is not None else "other"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        return APIError(400, str(exc)).response()

    @app.exception_handler(ConfigError)
    async def config_error(request: Request, exc: ConfigError) -> JSONResponse:
        return APIError(400, str(exc)).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        metrics.errors.labels("internal").inc()
        return APIError(500, f"internal error ({type(exc).__name__}); see the service log", "server_error").response()

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return APIError(exc.status_code, message, code=code).response()

    def ready() -> _State:
        if state.router is None or state.dispatcher is None:
            raise APIError(503, "the router is still loading; retry shortly", "server_error", code="not_ready")
        return state

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        s = ready()
        assert s.router is not None
        return {"status": "ready", "router_version": s.router.version, "backend": s.router.backend}

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        now = int(time.time())
        ids = [*ROUTER_MODELS, *ready().dispatcher.routes.all_models]
        return {
            "object": "list",
            "data": [{"id": i, "object": "model", "created": now, "owned_by": "router-ml"} for i in ids],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        s = ready()
        body = await _parse(request, ChatRequest, config.max_body_bytes)
        if len(body.messages) > config.max_messages:
            raise APIError(
                400, f"{len(body.messages)} messages is over the limit of {config.max_messages}", param="messages"
            )
        params = body.model_extra or {}
        forced = None if body.model in ROUTER_MODELS else body.model
        if forced is not None and forced not in s.dispatcher.routes.all_models:
            raise APIError(
                404, f"model {forced!r} does not exist here; use 'router' or one of {s.dispatcher.routes.all_models}",
                code="model_not_found", param="model",
            )  # fmt: skip
        from ..online.dispatch import DispatchError

        try:
            result = await s.dispatcher.acomplete(_messages(body.messages), model=forced, stream=body.stream, **params)
        except DispatchError as exc:
            metrics.outcome(exc.outcome)
            status = 504 if exc.outcome.status == "deadline" else 502
            headers = _decision_headers(exc.outcome.request_id, None, None, exc.outcome.router_version or "")
            raise APIError(status, str(exc), "upstream_error", code=exc.outcome.status, headers=headers) from None
        headers = _decision_headers(
            result.request_id, result.decision, result.outcome.model, result.outcome.router_version or ""
        )
        if not body.stream:
            metrics.outcome(result.outcome)
            return JSONResponse(result.response.model_dump(mode="json", exclude_none=True), headers=headers)

        async def events() -> AsyncIterator[bytes]:
            try:
                async for chunk in result.stream:
                    yield f"data: {chunk.model_dump_json(exclude_none=True)}\n\n".encode()
                yield b"data: [DONE]\n\n"
            except Exception as exc:  # the provider's stream broke mid-way: tell the client in-band, then stop
                error = {"error": {"message": f"upstream stream failed: {exc}", "type": "upstream_error"}}
                yield f"data: {json.dumps(error)}\n\n".encode()
            finally:
                metrics.outcome(result.outcome)

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @app.post("/v1/route")
    async def route(request: Request) -> dict[str, Any]:
        s = ready()
        body = await _parse(request, RouteRequest, config.max_body_bytes)
        if (body.messages is None) == (body.input is None):
            raise APIError(400, "send exactly one of 'messages' (a conversation) or 'input' (a string or a list)")
        single = body.input is None or isinstance(body.input, str)
        items: list[Any] = [body.input if body.input is not None else body.messages] if single else list(body.input)  # type: ignore[arg-type]
        if not items:
            raise APIError(400, "'input' is an empty list", param="input")
        if len(items) > config.max_batch_inputs:
            raise APIError(400, f"{len(items)} inputs is over the limit of {config.max_batch_inputs}", param="input")
        prompts = [i if isinstance(i, str) else _messages(i) for i in items]
        for prompt in prompts:
            if not isinstance(prompt, str) and len(prompt) > config.max_messages:
                raise APIError(400, f"{len(prompt)} messages is over the limit of {config.max_messages}")
        results = await asyncio.gather(*(s.dispatcher.acomplete(p, decision_only=True) for p in prompts))
        data = [{"request_id": r.request_id, **r.decision.to_dict()} for r in results]
        version = results[0].outcome.router_version
        if single:
            return {"object": "route", "router_version": version, **data[0]}
        return {"object": "list", "router_version": version, "data": data}

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> dict[str, Any]:
        s = ready()
        body = await _parse(request, FeedbackRequest, config.max_body_bytes)
        assert s.store is not None
        try:
            await asyncio.to_thread(
                s.store.add_feedback, body.request_id, label=body.label, score=body.score, comment=body.comment
            )
        except StoreError as exc:
            raise APIError(404, str(exc), code="unknown_request_id", param="request_id") from None
        return {"object": "feedback", "request_id": body.request_id, "recorded": True}

    @app.post("/admin/reload")
    async def admin_reload(request: Request) -> dict[str, Any]:
        s = ready()
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        try:
            return await s.reload(force=force)
        except RouterMLError as exc:
            raise APIError(
                409, f"reload failed, still serving the previous router: {exc}", code="reload_failed"
            ) from None

    return app


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("router-ml")
    except metadata.PackageNotFoundError:
        return "0"


def app_from_env() -> FastAPI:
    """The app for uvicorn's ``--factory`` mode, configured by ``$ROUTER_ML_SERVICE_CONFIG`` (JSON)."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise ConfigError(f"{CONFIG_ENV} is not set; start the service with `router-ml serve`")
    return create_app(ServiceConfig.from_json(text))
