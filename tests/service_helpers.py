"""The service on 127.0.0.1 for tests that drive it over HTTP with a small trained router and a route table of
loopback stub models (tests/test_sticky.py, tests/test_instructions.py)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from router_ml.exceptions import StoreError
from router_ml.online.outcome import Outcome
from router_ml.online.store import OutcomeStore
from router_ml.route_table import RouteTable
from router_ml.serving.app import create_app
from router_ml.serving.settings import ServiceConfig
from tests.test_service import _Server


def start_service(small_artifact: Path, table: RouteTable, tmp: Path, session_ttl: float = 1800.0) -> _Server:
    """The service for ``small_artifact`` and ``table`` (saved in ``tmp``, with its outcome log), not yet entered."""
    config = ServiceConfig(
        model=str(small_artifact), routes=str(table.save(tmp / "routes.toml")), db=str(tmp / "outcomes.db"),
        timeout=10.0, deadline=20.0, session_ttl=session_ttl,
    )  # fmt: skip
    return _Server(create_app(config))


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
