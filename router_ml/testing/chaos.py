"""A hostile OpenAI-compatible endpoint on 127.0.0.1 for the chaos benchmark (``make chaos``).

Every ``POST /v1/chat/completions`` call fails independently at random with probability ``fault_rate``; the fault
is drawn uniformly from ``kinds``:

- ``500``, ``502``, ``503``  an OpenAI-style JSON error with that status
- ``429``                    a rate-limit error, with ``Retry-After: <retry_after>`` unless that is ``None``
- ``stall``                  answers normally, but only after ``stall_seconds``
- ``drop``                   closes the socket without any response
- ``malformed``              HTTP 200 with a truncated JSON body; a stream call gets that too, or (half the time)
                             SSE: a valid first chunk without content, an event that is not JSON, ``[DONE]``
- ``cut``                    sends part of the answer, then drops the connection (not in the default mix)

The provider of a model is the requested name up to its first ``-`` (``provA-code`` → ``provA``). A provider in
``down`` fails every call with ``down_mode`` (a status code, ``drop``, ``stall``, or ``refuse``: its models get
their own port, bound but not listening, so connections are refused) until ``recover_after`` seconds after the
last ``POST /reset``, if set, then answers normally. Healthy calls are normal chat completions, plain or SSE
(``choices[0].delta.content`` chunks, a final ``finish_reason: "stop"`` chunk with ``usage``, then ``[DONE]``).

``GET /stats`` returns the calls received per model and kind, and each call's time (seconds since the reset);
``POST /reset`` clears them and restarts the clock. It runs as its own process
(``python -m router_ml.testing.chaos --config JSON``, or :class:`ChaosEndpoint`) and prints one JSON line with its
ports when ready. Only loopback is ever bound; the process exits by itself after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .stub import _completion

__all__ = ["DEFAULT_KINDS", "DOWN_MODES", "FAULT_KINDS", "ChaosEndpoint", "FaultConfig", "provider_of"]

FAULT_KINDS = ("500", "502", "503", "429", "stall", "drop", "malformed", "cut")
DEFAULT_KINDS = ("500", "429", "stall", "drop", "malformed")
DOWN_MODES = ("503", "500", "502", "429", "drop", "stall", "refuse")


def provider_of(model: str) -> str:
    """The provider of a model name: the part after any ``x/`` prefix and before the first ``-``."""
    return model.rsplit("/", 1)[-1].split("-", 1)[0]


@dataclass
class FaultConfig:
    """What the endpoint does to calls (see the module docstring).

    Attributes:
        fault_rate (float): probability that a call to a healthy provider fails. Default 0.
        kinds (tuple[str, ...]): the faults drawn from, uniformly (:data:`FAULT_KINDS`).
        retry_after (float | None): the ``Retry-After`` header of 429s, in seconds; ``None`` sends none.
        stall_seconds (float): how long a ``stall`` waits before answering. Default 3.
        down (tuple[str, ...]): providers that fail every call.
        down_mode (str): how a down provider fails (:data:`DOWN_MODES`). Default ``"503"``.
        recover_after (float | None): seconds after the reset when the down providers become healthy.
        seed (int): seed of the fault draws.
    """

    fault_rate: float = 0.0
    kinds: tuple[str, ...] = DEFAULT_KINDS
    retry_after: float | None = 1.0
    stall_seconds: float = 3.0
    down: tuple[str, ...] = ()
    down_mode: str = "503"
    recover_after: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.kinds, self.down = tuple(self.kinds), tuple(self.down)
        bad = set(self.kinds) - set(FAULT_KINDS)
        if bad or not self.kinds:
            raise ValueError(f"unknown fault kinds {sorted(bad)}; choose from {FAULT_KINDS}")
        if self.down_mode not in DOWN_MODES:
            raise ValueError(f"down_mode must be one of {DOWN_MODES}, got {self.down_mode!r}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {self.fault_rate}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FaultConfig:
        return cls(**json.loads(text))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    kind = "rate_limit_error" if status == 429 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind}}, status=status, headers=headers)


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-chaos-stream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


@dataclass
class _Server:
    """The endpoint's state and handlers (one event loop, in the endpoint process)."""

    config: FaultConfig
    random: random.Random = field(init=False)
    t0: float = field(default_factory=time.monotonic)
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    log: dict[str, list[tuple[float, str, bool]]] = field(default_factory=lambda: defaultdict(list))
    refused: dict[str, socket.socket] = field(default_factory=dict)
    runner: web.AppRunner | None = None
    recovery: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.random = random.Random(self.config.seed)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/reset", self.reset)
        return app

    def is_down(self, provider: str) -> bool:
        c = self.config
        recovered = c.recover_after is not None and time.monotonic() - self.t0 >= c.recover_after
        return provider in c.down and not recovered

    def draw(self, model: str) -> str:
        """What this call gets: ``ok``, a fault kind, or the down mode."""
        if self.is_down(provider_of(model)):
            return self.config.down_mode
        if self.random.random() < self.config.fault_rate:
            return self.random.choice(self.config.kinds)
        return "ok"

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not JSON")
        model = str(body.get("model", "")).rsplit("/", 1)[-1]
        stream = bool(body.get("stream"))
        kind = self.draw(model)
        self.counts[model][kind] += 1
        self.log[model].append((round(time.monotonic() - self.t0, 4), kind, stream))
        messages = body.get("messages") or [{"content": ""}]
        text = str(messages[-1].get("content", ""))
        try:
            return await self.respond(request, kind, model, text, stream)
        except ConnectionResetError:  # the caller gave up first (e.g. during a stall)
            return web.Response(status=499)

    async def respond(self, request: web.Request, kind: str, model: str, text: str, stream: bool) -> web.StreamResponse:
        """Answer one call as ``kind`` says."""
        if kind.isdigit():
            retry = self.config.retry_after
            headers = {"Retry-After": f"{retry:g}"} if kind == "429" and retry is not None else None
            return _error(int(kind), f"chaos: injected HTTP {kind}", headers)
        if kind == "stall":
            await asyncio.sleep(self.config.stall_seconds)
        if kind == "drop":
            assert request.transport is not None
            request.transport.abort()  # no status line, no body
            return web.Response()
        if kind == "malformed":
            if stream and self.random.random() < 0.5:  # a well-formed first chunk, then an event that is not JSON
                role = f"data: {json.dumps(_chunk(model, {'role': 'assistant', 'content': ''}))}\n\n".encode()
                return await self.sse(request, [role, b'data: {"id": "chatcmpl-chaos", "choices": [{"delta": {"co\n\n'])
            body = '{"id": "chatcmpl-chaos", "object": "chat.completion", "choices": [{"message": {"rol'
            return web.Response(status=200, text=body, content_type="application/json")  # streamed or not
        if stream:
            return await self.stream(request, model, text, cut=kind == "cut")
        if kind == "cut":
            response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "400"})
            await response.prepare(request)
            await response.write(json.dumps(_completion(model, text)).encode()[:60])
            assert request.transport is not None
            request.transport.abort()
            return response
        return web.json_response(_completion(model, text))

    @staticmethod
    async def sse(request: web.Request, events: list[bytes], cut: bool = False) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        if cut:
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def stream(self, request: web.Request, model: str, text: str, cut: bool = False) -> web.StreamResponse:
        """A healthy (or, with ``cut``, a broken) SSE answer."""
        words = f"chaos answer to: {text[:40]}".split()
        chunks = [_chunk(model, {"role": "assistant", "content": ""})]
        chunks += [_chunk(model, {"content": (" " if i else "") + w}) for i, w in enumerate(words)]
        if cut:
            chunks = chunks[:2]
        else:
            final = _chunk(model, {}, "stop")
            prompt_tokens = max(1, len(text) // 4)
            final["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                              "total_tokens": prompt_tokens + len(words)}  # fmt: skip
            chunks.append(final)
        return await self.sse(request, [f"data: {json.dumps(c)}\n\n".encode() for c in chunks], cut=cut)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "elapsed": time.monotonic() - self.t0,
                "config": dataclasses.asdict(self.config),
                "calls": {model: dict(kinds) for model, kinds in self.counts.items()},
                "log": self.log,
            }
        )

    async def reset(self, request: web.Request) -> web.Response:
        self.counts.clear()
        self.log.clear()
        self.t0 = time.monotonic()
        if self.refused and self.config.recover_after is not None and self.recovery is None:
            self.recovery = asyncio.create_task(self.recover(self.config.recover_after))
        return web.json_response({"reset": True})

    async def recover(self, after: float) -> None:
        """Start listening on the refused providers' ports once they recover."""
        await asyncio.sleep(after)
        assert self.runner is not None
        for sock in self.refused.values():
            await web.SockSite(self.runner, sock, backlog=2048).start()


async def _serve(config: FaultConfig, max_seconds: float) -> None:
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # callers that hang up are expected here
    server = _Server(config)
    server.runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await server.runner.setup()
    site = web.TCPSite(server.runner, "127.0.0.1", 0, backlog=2048)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    if config.down_mode == "refuse":
        for provider in config.down:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
            server.refused[provider] = sock
    ports = {p: s.getsockname()[1] for p, s in server.refused.items()}
    print(json.dumps({"port": port, "provider_ports": ports}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    await server.runner.cleanup()


class ChaosEndpoint:
    """The hostile endpoint in a child process; use as a context manager.

    Args:
        config (FaultConfig): the fault mix.
        max_seconds (float): the child exits by itself after this long. Default 3600.
    """

    def __init__(self, config: FaultConfig, max_seconds: float = 3600.0) -> None:
        self.config = config
        self.max_seconds = max_seconds
        self.port = 0
        self.provider_ports: dict[str, int] = {}
        self._process: subprocess.Popen[str] | None = None

    def base_url(self, provider: str) -> str:
        """The OpenAI base URL (ends in ``/v1``) of ``provider``'s models."""
        return f"http://127.0.0.1:{self.provider_ports.get(provider, self.port)}/v1"

    def __enter__(self) -> ChaosEndpoint:
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "router_ml.testing.chaos", "--config", self.config.to_json(),
                   "--max-seconds", str(self.max_seconds)]  # fmt: skip
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        ready, _, _ = select.select([self._process.stdout], [], [], 60)
        line = self._process.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line:
            self.__exit__()
            raise RuntimeError("the chaos endpoint did not start within 60 s")
        info = json.loads(line)
        self.port, self.provider_ports = info["port"], info["provider_ports"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        self._process = None

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        """Clear the counters and start the clock (and the recovery timer)."""
        self._call("POST", "/reset")

    def stats(self) -> dict[str, Any]:
        """``{"elapsed", "config", "calls": {model: {kind: n}}, "log": {model: [[t, kind, stream], ...]}}``."""
        return self._call("GET", "/stats")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the hostile loopback endpoint until SIGTERM.")
    parser.add_argument("--config", default="{}", help="FaultConfig as JSON")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="exit by itself after this long")
    args = parser.parse_args()
    asyncio.run(_serve(FaultConfig.from_json(args.config), args.max_seconds))


if __name__ == "__main__":
    main()
