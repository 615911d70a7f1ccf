"""A local OpenAI-compatible stub LLM server on 127.0.0.1, for tests, the demo and the load script.

The requested ``model`` name picks the behaviour (the part after the last "/" and before any "@"):

- ``ok-*``          a normal chat completion that echoes the last user message
- ``fail-*``        HTTP 500
- ``ratelimit-*``   HTTP 429 with Retry-After
- ``slow-*``        sleeps ``STUB_SLOW_SECONDS`` (default 5 s), then answers
- ``malformed-*``   HTTP 200 with a body that is not a chat completion
- ``flaky-*``       fails (500) for a fraction of requests given by ``@0.2`` in the name, e.g. ``flaky-a@0.2``
- ``broken-*``      streams two chunks, then drops the connection
- anything else     answers normally

``answer(model, text)``, given to :class:`StubLLMServer`, replaces the echo of every successful answer (plain or
streamed, in every wire format): it gets the model as recorded in :attr:`StubLLMServer.requests` and the last
message's text, and returns the reply text.

A test can also take any model down and bring it back: a model named in :attr:`StubLLMServer.down` (as recorded
in :attr:`StubLLMServer.requests`) answers HTTP 500 until removed.

Besides OpenAI's ``/v1/chat/completions`` it answers Anthropic's ``/v1/messages`` and Gemini's
``/models/{model}:generateContent``, so litellm's own provider code paths can be exercised (point the
provider's ``api_base`` at :attr:`StubLLMServer.root_url`).

``stream: true`` is answered with server-sent events in OpenAI's chunk format. Only loopback is ever bound.

Every request is recorded: its model in :attr:`StubLLMServer.requests`, and its JSON body, wire format and system
messages in :attr:`StubLLMServer.received` (:class:`Received`), so tests and the demo can see exactly what a
provider was sent.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from ..route_table import RouteTable

__all__ = ["Received", "StubLLMServer", "stub_route_table"]


def _texts(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


@dataclass(frozen=True)
class Received:
    """One request the stub answered.

    Attributes:
        model (str): the model as counted in :attr:`StubLLMServer.requests` (``anthropic/...``, ``gemini/...``, or
            the name an OpenAI-format request gave).
        wire (str): the wire format: ``openai``, ``anthropic`` or ``gemini``.
        body (dict): the JSON body, as sent.
    """

    model: str
    wire: Literal["openai", "anthropic", "gemini"]
    body: dict[str, Any]

    @property
    def system(self) -> list[str]:
        """The system messages' texts in the order the provider reads them, whatever the wire format."""
        if self.wire == "openai":
            return [_texts(m.get("content")) for m in self.body.get("messages", []) if m.get("role") == "system"]
        if self.wire == "anthropic":
            system = self.body.get("system")
            return [system] if isinstance(system, str) else [_texts([block]) for block in system or []]
        parts = (self.body.get("system_instruction") or self.body.get("systemInstruction") or {}).get("parts", [])
        return [str(p.get("text", "")) for p in parts]

    @property
    def roles(self) -> list[str]:
        """The roles of the conversation's messages, in order (OpenAI wire format; system messages included)."""
        return [str(m.get("role")) for m in self.body.get("messages", [])]


def _completion(model: str, text: str, reply: str | None = None) -> dict[str, Any]:
    """A chat completion answering ``text`` with ``reply`` (the echo by default; the chaos endpoint uses it too)."""
    reply = f"stub answer to: {text[:80]}" if reply is None else reply
    prompt_tokens = max(1, len(text) // 4)
    return {
        "id": f"chatcmpl-stub-{random.getrandbits(48):x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 12, "total_tokens": prompt_tokens + 12},
    }


class StubLLMServer:
    """Runs the stub in a background thread; use as a context manager. ``base_url`` ends in ``/v1``.

    ``answer(model, last_user_text)``, when given, writes each reply's text instead of the echo.
    """

    def __init__(
        self, slow_seconds: float = 5.0, seed: int = 0, answer: Callable[[str, str], str] | None = None
    ) -> None:
        self.slow_seconds = slow_seconds
        self.answer = answer
        self.random = random.Random(seed)
        self.requests: list[str] = []
        self.received: list[Received] = []
        self.down: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL (ends in ``/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """Server root, for providers that append their own path (Anthropic, Gemini)."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StubLLMServer:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("stub LLM server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1beta/models/{model}:generateContent", self._gemini)
        app.router.add_post("/models/{model}:generateContent", self._gemini)  # litellm's path under a custom api_base
        app.router.add_post("/v1beta/models/{model}:streamGenerateContent", self._gemini_stream)
        app.router.add_post("/models/{model}:streamGenerateContent", self._gemini_stream)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def _record(self, model: str, wire: Literal["openai", "anthropic", "gemini"], body: dict[str, Any]) -> bool:
        """Record a request; whether its model is down (see :attr:`down`)."""
        with self._lock:
            self.requests.append(model)
            self.received.append(Received(model, wire, body))
            return model in self.down

    @staticmethod
    def _down() -> web.Response:
        return web.json_response({"error": {"message": "stub model is down", "type": "server_error"}}, status=500)

    def _reply(self, model: str, text: str, limit: int = 80) -> str:
        """The text of an answer to ``text``: :attr:`answer`'s, else the echo (``limit`` characters of it)."""
        return self.answer(model, text) if self.answer is not None else f"stub answer to: {text[:limit]}"

    def _pieces(self, model: str, text: str) -> list[str]:
        """A streamed answer's text deltas, one a word (whitespace kept with the word that follows it)."""
        if self.answer is None:
            return [(" " if i else "") + w for i, w in enumerate(f"stub answer to: {text[:40]}".split())]
        return re.findall(r"\s*\S+", self._reply(model, text)) or [""]

    def sent_to(self, model: str) -> list[Received]:
        """The requests ``model`` received (named as in :attr:`requests`), oldest first."""
        with self._lock:
            return [r for r in self.received if r.model == model]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        if self._record(model, "openai", body):
            return self._down()
        name = model.rsplit("/", 1)[-1]
        kind, _, arg = name.partition("@")
        messages = body.get("messages") or [{"content": ""}]
        content = messages[-1].get("content", "")
        text = str(content) if self.answer is None else _texts(content)
        if kind.startswith("fail"):
            return web.json_response({"error": {"message": "stub internal error", "type": "server_error"}}, status=500)
        if kind.startswith("ratelimit"):
            return web.json_response(
                {"error": {"message": "stub rate limit", "type": "rate_limit_error"}},
                status=429,
                headers={"Retry-After": "1"},
            )
        if kind.startswith("flaky"):
            with self._lock:
                fail = self.random.random() < float(arg or 0.2)
            if fail:
                return web.json_response(
                    {"error": {"message": "stub flaky failure", "type": "server_error"}}, status=500
                )
        if kind.startswith("slow"):
            await asyncio.sleep(self.slow_seconds)
        if kind.startswith("malformed"):
            return web.Response(status=200, text="<html>this is not json</html>", content_type="application/json")
        if body.get("stream"):
            return await self._stream(request, model, text, broken=kind.startswith("broken"))
        return web.json_response(_completion(model, text, self._reply(model, text)))

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        if self._record(f"anthropic/{model}", "anthropic", body):
            return self._down()
        content = body.get("messages", [{}])[-1].get("content", "")
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        if body.get("stream"):
            return await self._anthropic_stream(request, model, text)
        return web.json_response(
            {
                "id": f"msg_stub_{random.getrandbits(48):x}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": self._reply(f"anthropic/{model}", text)}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": max(1, len(text) // 4), "output_tokens": 12},
            }
        )

    async def _gemini_request(self, request: web.Request) -> tuple[str, str, bool]:
        """The model, the last turn's text, and whether the model is down, of a Gemini request (recorded)."""
        body = await request.json()
        model = request.match_info["model"]
        down = self._record(f"gemini/{model}", "gemini", body)
        parts = (body.get("contents") or [{}])[-1].get("parts", [])
        return model, " ".join(p.get("text", "") for p in parts), down

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        model, text, down = await self._gemini_request(request)
        if down:
            return self._down()
        return web.json_response(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": self._reply(f"gemini/{model}", text)}]},
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": max(1, len(text) // 4),
                    "candidatesTokenCount": 12,
                    "totalTokenCount": 0,
                },
                "modelVersion": model,
            }
        )

    @staticmethod
    async def _sse(request: web.Request, events: list[tuple[str | None, dict[str, Any]]]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event, data in events:
            head = f"event: {event}\n" if event else ""
            await response.write(f"{head}data: {json.dumps(data)}\n\n".encode())
        await response.write_eof()
        return response

    async def _anthropic_stream(self, request: web.Request, model: str, text: str) -> web.StreamResponse:
        """Anthropic's Messages streaming events, one text delta per word."""
        words = self._pieces(f"anthropic/{model}", text)
        usage = {"input_tokens": max(1, len(text) // 4), "output_tokens": 1}
        start = {"id": f"msg_stub_{random.getrandbits(48):x}", "type": "message", "role": "assistant",
                 "model": model, "content": [], "stop_reason": None, "usage": usage}  # fmt: skip
        events: list[tuple[str | None, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
        ]  # fmt: skip
        for word in words:
            delta = {"type": "text_delta", "text": word}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                               "usage": {"output_tokens": len(words)}}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        return await self._sse(request, events)

    async def _gemini_stream(self, request: web.Request) -> web.StreamResponse:
        """Gemini's ``streamGenerateContent?alt=sse``: one candidate chunk per word, usage on the last."""
        model, text, down = await self._gemini_request(request)
        if down:
            return self._down()
        words = self._pieces(f"gemini/{model}", text)
        events: list[tuple[str | None, dict[str, Any]]] = []
        for i, word in enumerate(words):
            chunk: dict[str, Any] = {
                "candidates": [{"content": {"role": "model", "parts": [{"text": word}]}}],
                "modelVersion": model,
            }
            if i == len(words) - 1:
                chunk["candidates"][0]["finishReason"] = "STOP"
                chunk["usageMetadata"] = {"promptTokenCount": max(1, len(text) // 4),
                                          "candidatesTokenCount": len(words), "totalTokenCount": 0}  # fmt: skip
            events.append((None, chunk))
        return await self._sse(request, events)

    async def _stream(self, request: web.Request, model: str, text: str, broken: bool = False) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = self._pieces(model, text)
        for i, word in enumerate(words):
            chunk = {
                "id": "chatcmpl-stub-stream",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if broken and i == 1:
                assert request.transport is not None
                request.transport.abort()  # the provider goes away mid-stream
                return response
        final = {
            "id": "chatcmpl-stub-stream",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": max(1, len(text) // 4), "completion_tokens": len(words), "total_tokens": 0},
        }
        await response.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response


def stub_route_table(table: RouteTable, stub: StubLLMServer, key_env: str = "ROUTER_ML_STUB_KEY") -> RouteTable:
    """``table`` with every model served by ``stub`` (each provider's own wire format), for demos and load tests.

    The API key is read from ``key_env`` (set it to anything): no request leaves 127.0.0.1.
    """
    data = table.to_dict()
    for model in table.all_models:
        entry = data["models"].setdefault(model, {})
        entry["api_base"] = stub.base_url if model.split("/", 1)[0] == "openai" else stub.root_url
        entry["api_key_env"] = key_env
    return RouteTable.from_dict(data, source="stub route table")
