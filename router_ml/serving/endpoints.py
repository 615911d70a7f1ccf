"""The ``/v1/*`` endpoints clients call: chat completions (plain or streamed), route decisions, feedback and the
model list. Each reads the worker's :class:`~router_ml.serving.state.ServiceState` from ``request.app.state``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..exceptions import DispatchError, StoreError
from ..router import Prompt
from .metrics import Metrics
from .schemas import (
    ROUTER_MODELS,
    APIError,
    ChatRequest,
    FeedbackRequest,
    RouteRequest,
    decision_headers,
    message_dicts,
    over_limit,
    parse_body,
    sse_event,
)
from .settings import ServiceConfig
from .state import ready_state

if TYPE_CHECKING:
    from ..online.dispatch import DispatchResult

__all__ = ["SESSION_HEADER", "api_router"]

api_router = APIRouter()

SESSION_HEADER = "x-router-session"
"""Request header naming a conversation, for session stickiness (:mod:`router_ml.online.sessions`)."""


def _forced_model(name: str, models: Sequence[str]) -> str | None:
    """The model a request names, or ``None`` for the router's choice; a 404 error for a model not served here."""
    if name in ROUTER_MODELS:
        return None
    if name not in models:
        raise APIError(
            404, f"model {name!r} does not exist here; use 'router' or one of {models}",
            code="model_not_found", param="model",
        )  # fmt: skip
    return name


def _upstream_error(exc: DispatchError, metrics: Metrics) -> APIError:
    """Count the failed outcome; the 504 (deadline) or 502 (every model failed) error that answers it."""
    metrics.outcome(exc.outcome)
    status = 504 if exc.outcome.status == "deadline" else 502
    headers = decision_headers(exc.outcome.request_id, None, None, exc.outcome.router_version or "")
    return APIError(status, str(exc), "upstream_error", code=exc.outcome.status, headers=headers)


async def _sse_events(result: DispatchResult, metrics: Metrics) -> AsyncIterator[bytes]:
    """A dispatch result's stream as server-sent events ending in ``[DONE]``; the outcome is counted at the end."""
    try:
        async for chunk in result.stream:
            yield sse_event(chunk.model_dump_json(exclude_none=True))
        yield sse_event("[DONE]")
    except Exception as exc:  # the provider's stream broke mid-way: tell the client in-band, then stop
        yield sse_event(json.dumps({"error": {"message": f"upstream stream failed: {exc}", "type": "upstream_error"}}))
    finally:
        await result.stream.aclose()  # a client that went away: the outcome is logged now, not when collected
        metrics.outcome(result.outcome)


@api_router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions: ``router``/``auto`` lets the router choose, a served model name forces it; an
    ``x-router-session`` header keeps a conversation on one model (``x-router-sticky`` says whether it held)."""
    state = ready_state(request)
    assert state.dispatcher is not None
    config, metrics = state.config, state.metrics
    body = await parse_body(request, ChatRequest, config.max_body_bytes)
    if len(body.messages) > config.max_messages:
        raise over_limit(len(body.messages), "messages", config.max_messages, param="messages")
    forced = _forced_model(body.model, state.dispatcher.routes.all_models)
    messages, params = message_dicts(body.messages), body.model_extra or {}
    session = request.headers.get(SESSION_HEADER)  # pins the conversation to the model of its first routed turn
    try:
        result = await state.dispatcher.acomplete(messages, model=forced, stream=body.stream, session=session, **params)
    except DispatchError as exc:
        raise _upstream_error(exc, metrics) from None
    headers = decision_headers(
        result.request_id, result.decision, result.outcome.model, result.outcome.router_version or ""
    )
    headers["x-router-sticky"] = str(result.outcome.sticky).lower()  # whether the session's pinned model answered
    if result.decision is None and result.outcome.label:  # a pinned turn: the router was not asked
        headers["x-router-route"] = result.outcome.label
    if not body.stream:
        metrics.outcome(result.outcome)
        return JSONResponse(result.response.model_dump(mode="json", exclude_none=True), headers=headers)
    return StreamingResponse(_sse_events(result, metrics), media_type="text/event-stream", headers=headers)


def _route_prompts(body: RouteRequest, config: ServiceConfig) -> tuple[list[Prompt], bool]:
    """The prompts of a route request within the limits, and whether it was a single one (not a list)."""
    if (body.messages is None) == (body.input is None):
        raise APIError(400, "send exactly one of 'messages' (a conversation) or 'input' (a string or a list)")
    single = body.input is None or isinstance(body.input, str)
    items: list[Any] = [body.input if body.input is not None else body.messages] if single else list(body.input)  # type: ignore[arg-type]
    if not items:
        raise APIError(400, "'input' is an empty list", param="input")
    if len(items) > config.max_batch_inputs:
        raise over_limit(len(items), "inputs", config.max_batch_inputs, param="input")
    prompts: list[Prompt] = [i if isinstance(i, str) else message_dicts(i) for i in items]
    for prompt in prompts:
        if not isinstance(prompt, str) and len(prompt) > config.max_messages:
            raise over_limit(len(prompt), "messages", config.max_messages)
    return prompts, single


@api_router.post("/v1/route")
async def route(request: Request) -> dict[str, Any]:
    """The router's decision, without calling a model, for one prompt or conversation or a list of them; with
    ``"explain": true``, each with its ``explanation`` (margin, nearest training prompts, top terms per route)."""
    state = ready_state(request)
    assert state.dispatcher is not None and state.router is not None
    body = await parse_body(request, RouteRequest, state.config.max_body_bytes)
    prompts, single = _route_prompts(body, state.config)
    router = state.router
    results = await asyncio.gather(*(state.dispatcher.acomplete(p, decision_only=True) for p in prompts))
    data = [{"request_id": r.request_id, **r.decision.to_dict()} for r in results]  # type: ignore[union-attr]
    if body.explain:  # off the event loop: it embeds the prompt again
        explanations = await asyncio.gather(*(asyncio.to_thread(router.explain, p) for p in prompts))
        for item, explanation in zip(data, explanations, strict=True):
            item["explanation"] = explanation.to_dict()
    version = results[0].outcome.router_version
    if single:
        return {"object": "route", "router_version": version, **data[0]}
    return {"object": "list", "router_version": version, "data": data}


@api_router.post("/v1/feedback")
async def feedback(request: Request) -> dict[str, Any]:
    """Record a label, score and/or comment for a logged request id (404 for an unknown one)."""
    state = ready_state(request)
    body = await parse_body(request, FeedbackRequest, state.config.max_body_bytes)
    assert state.store is not None
    try:
        await asyncio.to_thread(
            state.store.add_feedback, body.request_id, label=body.label, score=body.score, comment=body.comment
        )
    except StoreError as exc:
        raise APIError(404, str(exc), code="unknown_request_id", param="request_id") from None
    return {"object": "feedback", "request_id": body.request_id, "recorded": True}


@api_router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The OpenAI model list: ``router``, ``auto`` and every model of the route table."""
    state = ready_state(request)
    assert state.dispatcher is not None
    now = int(time.time())
    ids = [*ROUTER_MODELS, *state.dispatcher.routes.all_models]
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": now, "owned_by": "router-ml"} for i in ids],
    }
