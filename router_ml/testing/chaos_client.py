"""The chaos benchmark's client side: ``router-ml serve`` as a subprocess (:class:`ServiceProcess`), and the
official ``openai`` client sending the load and classifying every answer (:func:`drive`).

Each request ends in one category:

- ``answered``      HTTP 200 with non-empty content (a stream must also end normally: a ``finish_reason``, no error)
- ``clean_error``   HTTP 502/504 with an OpenAI-style JSON error body that carries the request id (in the
                    ``x-router-request-id`` header or the message) and names the models tried (checked against
                    the outcome log afterwards)
- ``silent_empty``  HTTP 200 with empty content, or a stream that ends with no content and no error
- ``other``         anything else (another status, an error body without id, a broken stream, a client timeout)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

__all__ = ["CATEGORIES", "NOT_SENT", "RequestResult", "ServiceProcess", "drive", "python_env", "served_package"]

CATEGORIES = ("answered", "clean_error", "silent_empty", "other")
NOT_SENT = "not sent (time limit)"
_HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")


@dataclass
class RequestResult:
    """What the client saw for one request."""

    index: int
    stream: bool
    category: str = "other"
    detail: str = ""
    status: int | None = None
    latency: float = 0.0
    request_id: str | None = None
    id_in_header: bool = False
    route: str | None = None
    model: str | None = None
    message: str = ""
    sent_at: float = 0.0


def python_env(base: dict[str, str], pythonpath: str | None) -> dict[str, str]:
    """``base`` with ``pythonpath`` first on ``PYTHONPATH`` (when given)."""
    env = dict(base)
    if pythonpath:
        first = str(Path(pythonpath).resolve())
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [first, base.get("PYTHONPATH")]))
    return env


def served_package(env: dict[str, str], cwd: Path) -> str:
    """The folder of the ``router_ml`` package that ``python`` imports with ``env`` in ``cwd``."""
    probe = [sys.executable, "-c", "import router_ml, os; print(os.path.dirname(os.path.abspath(router_ml.__file__)))"]
    done = subprocess.run(probe, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"cannot import router_ml with this PYTHONPATH: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


class ServiceProcess:
    """``python -m router_ml serve ARGS --port P --db WORKDIR/outcomes.db`` as a subprocess on 127.0.0.1.

    It runs from ``workdir`` (so no source tree in the current directory shadows ``PYTHONPATH``) with ``env``
    (see :func:`python_env`); its output goes to ``workdir/service.log``.
    """

    def __init__(self, args: list[str], workdir: Path, env: dict[str, str]) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = workdir / "outcomes.db"
        self.log_path = workdir / "service.log"
        self.env = env
        self.workdir = workdir
        self.command = [sys.executable, "-m", "router_ml", "serve", *args, "--port", str(self.port),
                        "--db", str(self.db)]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, limit: float = 300.0) -> None:
        """Start it and wait until ``/readyz`` answers 200 (raises with the log's tail if it exits or times out)."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=self.workdir, stdout=log, stderr=log)
        stop_at = time.monotonic() + limit
        while time.monotonic() < stop_at:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the service was not ready within {limit:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGINT (graceful: the outcome log is flushed), then SIGKILL after 60 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]


def _error_result(result: RequestResult, status: int, headers: Any, text: str) -> None:
    """Classify an HTTP error answer (before the outcome-log check of the models named)."""
    result.status = status
    header_id = headers.get("x-router-request-id")
    try:
        error = json.loads(text)["error"]
        message = str(error.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        message = ""
    result.message = message
    found = _HEX_ID.search(message)
    result.request_id = header_id or (found.group(0) if found else None)
    result.id_in_header = bool(header_id)
    result.route = headers.get("x-router-route")
    if status not in (502, 504):
        result.category, result.detail = "other", f"HTTP {status}"
    elif not message:
        result.category, result.detail = "other", f"HTTP {status} without an OpenAI-style error body"
    elif result.request_id is None:
        result.category, result.detail = "other", f"HTTP {status} without a request id"
    else:
        result.category, result.detail = "clean_error", f"HTTP {status}"


def _headers(result: RequestResult, headers: Any) -> None:
    result.request_id = headers.get("x-router-request-id")
    result.id_in_header = bool(result.request_id)
    result.route = headers.get("x-router-route")
    result.model = headers.get("x-router-model")


async def _plain(client: openai.AsyncOpenAI, result: RequestResult, prompt: str) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="router", messages=[{"role": "user", "content": prompt}]
    )
    result.status = raw.status_code
    _headers(result, raw.headers)
    completion = raw.parse()
    content = completion.choices[0].message.content if completion.choices else None
    if content:
        result.category, result.detail = "answered", "plain"
    else:
        result.category, result.detail = "silent_empty", "HTTP 200, no content"


async def _stream(client: openai.AsyncOpenAI, result: RequestResult, prompt: str) -> None:
    stream = await client.chat.completions.create(
        model="router", messages=[{"role": "user", "content": prompt}], stream=True
    )
    result.status = stream.response.status_code
    _headers(result, stream.response.headers)
    parts: list[str] = []
    finished = False
    try:
        async for chunk in stream:
            for choice in chunk.choices or []:
                parts.append((choice.delta.content if choice.delta else None) or "")
                finished = finished or choice.finish_reason is not None
    except Exception as exc:  # an in-band error event, or the connection broke mid-stream
        where = "after content" if "".join(parts) else "before any content"
        result.category, result.detail = "other", f"stream error {where}: {type(exc).__name__}"
        result.message = str(exc)[:300]
        return
    if not "".join(parts):
        result.category, result.detail = "silent_empty", "HTTP 200 stream, no content, no error"
    elif not finished:
        result.category, result.detail = "other", "stream ended without finish_reason"
    else:
        result.category, result.detail = "answered", "stream"


async def _one(client: openai.AsyncOpenAI, result: RequestResult, prompt: str) -> None:
    began = time.perf_counter()
    try:
        await (_stream if result.stream else _plain)(client, result, prompt)
    except openai.APIStatusError as exc:
        _error_result(result, exc.status_code, exc.response.headers, exc.response.text)
    except openai.APITimeoutError:
        result.category, result.detail = "other", "client timeout"
    except openai.APIConnectionError as exc:
        result.category, result.detail = "other", f"connection error: {type(exc.__cause__).__name__}"
    except Exception as exc:  # an unparseable answer, or anything the client raises
        result.category, result.detail = "other", f"client error: {type(exc).__name__}"
        result.message = str(exc)[:300]
    result.latency = time.perf_counter() - began


async def _drive(
    url: str,
    prompts: list[str],
    streamed: list[bool],
    *,
    concurrency: int,
    client_timeout: float,
    min_seconds: float,
    max_seconds: float,
) -> list[RequestResult]:
    results = [RequestResult(i, s) for i, s in enumerate(streamed)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(prompts)):
        queue.put_nowait(i)
    began = time.perf_counter()
    interval = min_seconds / max(1, len(prompts))
    client = openai.AsyncOpenAI(
        base_url=f"{url}/v1",
        api_key="chaos",
        max_retries=0,
        timeout=client_timeout,
        http_client=openai.DefaultAsyncHttpxClient(
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        ),
    )

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            wait = began + i * interval - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            if time.perf_counter() - began > max_seconds:
                results[i].detail = NOT_SENT
                continue
            results[i].sent_at = time.perf_counter() - began
            await _one(client, results[i], prompts[i])

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    return results


def drive(
    url: str,
    prompts: list[str],
    streamed: list[bool],
    *,
    concurrency: int = 64,
    client_timeout: float = 20.0,
    min_seconds: float = 0.0,
    max_seconds: float = 900.0,
) -> list[RequestResult]:
    """Send ``prompts`` (``model="router"``; ``streamed[i]`` picks SSE) to the service at ``url``.

    Args:
        url (str): the service root, e.g. ``http://127.0.0.1:8000``.
        concurrency (int): requests in flight at once.
        client_timeout (float): the client's timeout per request (keep it above the service's deadline).
        min_seconds (float): pace the requests so that the i-th starts no earlier than ``i * min_seconds / n``.
        max_seconds (float): no request starts after this long (those left are ``other``, "not sent").

    Returns:
        list[RequestResult]: one per prompt, in order.
    """
    options = {"concurrency": concurrency, "client_timeout": client_timeout, "min_seconds": min_seconds}
    return asyncio.run(_drive(url, prompts, streamed, max_seconds=max_seconds, **options))
