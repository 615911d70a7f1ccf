"""The service on 127.0.0.1 for tests that drive it over HTTP with a small trained router and a route table of
loopback stub models (tests/test_service.py, tests/test_sticky.py, tests/test_instructions.py)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from router_ml.exceptions import StoreError
from router_ml.online.outcome import Outcome
from router_ml.online.store import OutcomeStore
from router_ml.route_table import RouteTable
from router_ml.serving.app import create_app
from router_ml.serving.settings import ServiceConfig


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceThread:
    """uvicorn serving an app in a background thread, on a free loopback port."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServiceThread:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_service(small_artifact: Path, table: RouteTable, tmp: Path, session_ttl: float = 1800.0) -> ServiceThread:
    """The service for ``small_artifact`` and ``table`` (saved in ``tmp``, with its outcome log), not yet entered."""
    config = ServiceConfig(
        model=str(small_artifact), routes=str(table.save(tmp / "routes.toml")), db=str(tmp / "outcomes.db"),
        timeout=10.0, deadline=20.0, session_ttl=session_ttl,
    )  # fmt: skip
    return ServiceThread(create_app(config))


def logged(tmp: Path, request_id: str) -> Outcome:
    """The service's outcome row for ``request_id`` (its writer commits just after the response)."""
    with OutcomeStore(tmp / "outcomes.db") as store:
        for _ in range(50):
            try:
                return store.get(request_id)
            except StoreError:
                time.sleep(0.1)
        return store.get(request_id)


def chat(http: httpx.Client, messages: list, session: str | None = None, **body: object) -> httpx.Response:
    """A chat completion (model ``router`` unless ``body`` names one) that must succeed."""
    headers = {"x-router-session": session} if session is not None else {}
    response = http.post(
        "/v1/chat/completions", json={"model": "router", "messages": messages, **body}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response
