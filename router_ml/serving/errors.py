"""The request guard (bearer-key checks and request metrics) and the exception handlers that answer every error
as OpenAI-style JSON; stack traces go to the log, never to the client. :func:`install_error_handling` adds both."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..exceptions import ConfigError, DataError
from .schemas import APIError
from .state import service_state

__all__ = ["install_error_handling"]

logger = logging.getLogger(__name__)


def _check_bearer(request: Request, keys: list[str], what: str) -> None:
    """A 401 error unless the request carries ``Authorization: Bearer <one of keys>``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, f"missing bearer token: send 'Authorization: Bearer <{what}>'", code="invalid_api_key")
    if not any(secrets.compare_digest(token.encode(), k.encode()) for k in keys):
        raise APIError(401, f"invalid {what}", code="invalid_api_key")


def _authorize(request: Request) -> None:
    """Check the API key on ``/v1/*`` (when keys are set) and the admin key on ``/admin/*`` (404 when unset)."""
    config = service_state(request).config
    path = request.url.path
    if path.startswith("/v1/") and config.api_keys:
        _check_bearer(request, config.api_keys, "API key")
    if path.startswith("/admin/"):
        if not config.admin_key:
            raise APIError(404, "admin endpoints are off: start the service with an admin key", code="not_found")
        _check_bearer(request, [config.admin_key], "admin key")


async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """HTTP middleware: authorize the request, answer it, and count it by endpoint and status code."""
    started = time.perf_counter()
    try:
        _authorize(request)
        response = await call_next(request)
    except APIError as exc:
        response = exc.response()
    metrics = service_state(request).metrics
    endpoint = request.url.path if request.scope.get("route") is not None else "other"
    metrics.requests.labels(endpoint, str(response.status_code)).inc()
    metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
    return response


async def api_error(request: Request, exc: APIError) -> JSONResponse:
    """An :class:`APIError` as its own response."""
    return exc.response()


async def bad_request(request: Request, exc: DataError | ConfigError) -> JSONResponse:
    """Malformed prompts (``DataError``) and invalid settings in a request (``ConfigError``) are 400s."""
    return APIError(400, str(exc)).response()


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (unknown path, wrong method) in the OpenAI shape."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return APIError(exc.status_code, message, code=code).response()


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Any other exception: logged with its trace and counted; the client gets a 500 naming only its type."""
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    service_state(request).metrics.errors.labels("internal").inc()
    return APIError(500, f"internal error ({type(exc).__name__}); see the service log", "server_error").response()


def install_error_handling(app: FastAPI) -> None:
    """Add the guard middleware and the exception handlers to ``app``."""
    app.middleware("http")(guard)
    app.add_exception_handler(APIError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(DataError, bad_request)  # type: ignore[arg-type]
    app.add_exception_handler(ConfigError, bad_request)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)
