"""The operations endpoints: ``/healthz`` (alive), ``/readyz`` (router loaded), ``/metrics`` (Prometheus) and
``/admin/reload`` (load the artifact again; the admin key is checked by the guard middleware)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..exceptions import RouterMLError
from .metrics import CONTENT_TYPE_LATEST
from .schemas import APIError
from .state import ready_state, service_state

__all__ = ["operations_router"]

operations_router = APIRouter()


@operations_router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@operations_router.get("/readyz")
async def readyz(request: Request) -> dict[str, Any]:
    """Readiness: the router is loaded (503 until then), with its version and embedder backend."""
    state = ready_state(request)
    assert state.router is not None
    return {"status": "ready", "router_version": state.router.version, "backend": state.router.backend}


@operations_router.get("/metrics")
async def metrics(request: Request) -> Response:
    """The Prometheus exposition text (every worker's, in multiprocess mode)."""
    return Response(service_state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


@operations_router.post("/admin/reload")
async def admin_reload(request: Request) -> dict[str, Any]:
    """Load the artifact again if it changed (``?force=true``: anyway); 409 keeps the current router serving."""
    state = ready_state(request)
    force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
    try:
        return await state.reload(force=force)
    except RouterMLError as exc:
        raise APIError(409, f"reload failed, still serving the previous router: {exc}", code="reload_failed") from None
