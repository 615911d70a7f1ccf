"""What the service reads and writes: request bodies, the OpenAI-style error, body parsing with its limits, and
the ``x-router-*`` decision headers and server-sent events of responses."""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from ..router import Decision

__all__ = [
    "ROUTER_MODELS",
    "APIError",
    "ChatRequest",
    "FeedbackRequest",
    "Message",
    "RouteRequest",
    "decision_headers",
    "message_dicts",
    "over_limit",
    "parse_body",
    "read_body",
    "sse_event",
]

ROUTER_MODELS = ("router", "auto")
"""Model names that let the trained router choose."""


# -- request bodies --------------------------------------------------------------------------------------------
class Message(BaseModel):
    """One OpenAI chat message (extra fields such as ``name`` or ``tool_calls`` pass through)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``; extra fields are provider parameters (temperature, max_tokens, ...)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False


class RouteRequest(BaseModel):
    """``POST /v1/route``: a conversation (``messages``) or ``input``, a string or a list of strings/conversations;
    ``explain`` adds each decision's explanation (:meth:`router_ml.router.Router.explain`)."""

    model_config = ConfigDict(extra="forbid")
    messages: list[Message] | None = None
    input: str | list[str | list[Message]] | None = None
    explain: StrictBool = False


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a label, score and/or comment for a logged request id."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1)
    label: str | None = None
    score: float | Literal["up", "down"] | None = None
    comment: str | None = None


_Body = TypeVar("_Body", bound=BaseModel)


# -- errors ----------------------------------------------------------------------------------------------------
class APIError(Exception):
    """An error answered as OpenAI-style JSON: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
        param: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        """An error with HTTP ``status``, OpenAI ``type_``/``code``/``param`` and extra response ``headers``."""
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON response carrying this error."""
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def over_limit(count: int, what: str, limit: int, param: str | None = None) -> APIError:
    """The 400 error for ``count`` ``what`` (messages, inputs) over the configured ``limit``."""
    return APIError(400, f"{count} {what} is over the limit of {limit}", param=param)


# -- parsing ---------------------------------------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The raw request body; a 413 error once it is (or declares to be) over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body of {declared} bytes is over the {limit}-byte limit", code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, f"request body is over the {limit}-byte limit", code="body_too_large")
    return bytes(body)


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    """The first validation error as a message, and where it is (the OpenAI ``param``)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or None
    return f"{where + ': ' if where else ''}{first['msg']}", where


async def parse_body(request: Request, model: type[_Body], limit: int) -> _Body:
    """The request body validated as ``model``; a 400 error for anything but a valid JSON object."""
    body = await read_body(request, limit)
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


def message_dicts(items: list[Message]) -> list[dict[str, Any]]:
    """Messages as plain dicts for the dispatcher (unset fields left out)."""
    return [m.model_dump(exclude_none=True) for m in items]


# -- responses -------------------------------------------------------------------------------------------------
def decision_headers(request_id: str, decision: Decision | None, model: str | None, version: str) -> dict[str, str]:
    """The ``x-router-*`` headers: request id, router version, and the model and decision when there are ones."""
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


def sse_event(data: str) -> bytes:
    """One server-sent event carrying ``data``."""
    return f"data: {data}\n\n".encode()
