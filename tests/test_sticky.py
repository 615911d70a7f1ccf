"""Session stickiness through the real HTTP path: the service on 127.0.0.1 with a small trained router, litellm,
and the loopback stub provider (which can take a model down); pins shared by replicas through the outcome store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_ml.exceptions import DataError
from router_ml.online.dispatch import Dispatcher
from router_ml.online.sessions import SessionPins
from router_ml.online.store import OutcomeStore
from router_ml.route_table import RouteTable
from router_ml.router import Router
from router_ml.testing.stub import StubLLMServer
from tests.service_helpers import ServiceThread, chat, logged, start_service

CODE = [{"role": "user", "content": "Write a Python function that reverses a linked list."}]
FOLLOW_UP = [
    *CODE,
    {"role": "assistant", "content": "def reverse(head): ..."},
    {"role": "user", "content": "Thanks! Now write a short poem about autumn leaves falling on a quiet lake."},
]


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLMServer]:
    with StubLLMServer(seed=5) as server:
        yield server


@pytest.fixture(scope="module")
def table(stub, monkeypatch_module) -> RouteTable:
    monkeypatch_module.setenv("STICKY_STUB_KEY", "stub-key")
    routes = {
        "code": {"model": "openai/ok-code", "fallbacks": ["openai/ok-code-backup"]},
        "creative": {"model": "openai/ok-creative"},
        "reasoning": {"model": "openai/ok-reasoning"},
        "simple": {"model": "openai/ok-simple"},
    }
    endpoint = {"api_base": stub.base_url, "api_key_env": "STICKY_STUB_KEY", "timeout": 10.0}
    models = {m: dict(endpoint) for r in routes.values() for m in [r["model"], *r.get("fallbacks", [])]}
    return RouteTable.from_dict({"default_route": "reasoning", "routes": routes, "models": models})


@pytest.fixture(scope="module")
def service(small_artifact, table, tmp_path_factory) -> Iterator[tuple[ServiceThread, Path]]:
    tmp = tmp_path_factory.mktemp("sticky")
    with start_service(small_artifact, table, tmp, 1800.0) as server:
        yield server, tmp


@pytest.fixture
def http(service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service[0].url, timeout=30) as client:
        yield client


def test_a_pin_holds_across_turns(http, service):
    assert http.post("/v1/route", json={"messages": FOLLOW_UP}).json()["label"] == "creative"  # on its own
    first = chat(http, CODE, session="conv-hold")
    assert first.headers["x-router-model"] == "openai/ok-code" and first.headers["x-router-sticky"] == "false"
    second = chat(http, FOLLOW_UP, session="conv-hold")
    assert second.headers["x-router-model"] == "openai/ok-code"  # stays on the pinned model
    assert second.headers["x-router-sticky"] == "true" and second.headers["x-router-route"] == "code"
    unpinned = chat(http, FOLLOW_UP)  # the same turn without a session is routed afresh
    assert unpinned.headers["x-router-model"] == "openai/ok-creative"
    assert unpinned.headers["x-router-sticky"] == "false"
    other = chat(http, FOLLOW_UP, session="conv-other")  # another session starts its own pin
    assert other.headers["x-router-model"] == "openai/ok-creative" and other.headers["x-router-sticky"] == "false"
    assert logged(service[1], second.headers["x-router-request-id"]).sticky is True
    assert logged(service[1], first.headers["x-router-request-id"]).sticky is False


def test_streams_say_whether_the_pin_held(http):
    chat(http, CODE, session="conv-stream")
    with http.stream(
        "POST", "/v1/chat/completions", json={"model": "router", "messages": FOLLOW_UP, "stream": True},
        headers={"x-router-session": "conv-stream"},
    ) as response:  # fmt: skip
        body = response.read().decode()
    assert response.status_code == 200 and body.rstrip().endswith("data: [DONE]")
    assert response.headers["x-router-sticky"] == "true" and response.headers["x-router-model"] == "openai/ok-code"
    fresh = chat(http, FOLLOW_UP, session="conv-stream-new", stream=True)
    assert fresh.headers["x-router-sticky"] == "false" and fresh.headers["x-router-model"] == "openai/ok-creative"


def test_a_forced_model_bypasses_the_pin_and_keeps_it(http):
    chat(http, CODE, session="conv-forced")
    forced = chat(http, FOLLOW_UP, session="conv-forced", model="openai/ok-simple")
    assert forced.headers["x-router-model"] == "openai/ok-simple" and forced.headers["x-router-sticky"] == "false"
    after = chat(http, FOLLOW_UP, session="conv-forced")  # the pin is still there, on its model
    assert after.headers["x-router-model"] == "openai/ok-code" and after.headers["x-router-sticky"] == "true"


def test_a_pinned_model_that_fails_falls_back_and_the_pin_stays(http, stub, service):
    chat(http, CODE, session="conv-down")
    stub.down.add("ok-code")
    try:
        during = chat(http, FOLLOW_UP, session="conv-down")
    finally:
        stub.down.discard("ok-code")
    assert during.headers["x-router-model"] == "openai/ok-code-backup"  # the code route's fallback
    assert during.headers["x-router-sticky"] == "false"
    row = logged(service[1], during.headers["x-router-request-id"])
    assert [(a.model, a.status) for a in row.attempts] == [("openai/ok-code", "error"), ("openai/ok-code-backup", "ok")]
    back = chat(http, FOLLOW_UP, session="conv-down")  # recovered: the conversation returns to its pinned model
    assert back.headers["x-router-model"] == "openai/ok-code" and back.headers["x-router-sticky"] == "true"


def test_a_bad_session_header_is_a_clear_400(http):
    response = http.post(
        "/v1/chat/completions", json={"model": "router", "messages": CODE}, headers={"x-router-session": "x" * 300}
    )
    assert response.status_code == 400
    assert "session id must be 1 to 256 printable characters" in response.json()["error"]["message"]


def test_a_pin_expires_after_its_ttl(small_artifact, table, tmp_path):
    with start_service(small_artifact, table, tmp_path, session_ttl=1.5) as server, httpx.Client(
        base_url=server.url, timeout=30
    ) as client:  # fmt: skip
        first = chat(client, CODE, session="conv-ttl")
        assert first.headers["x-router-model"] == "openai/ok-code"
        time.sleep(2.0)
        later = chat(client, FOLLOW_UP, session="conv-ttl")
    assert later.headers["x-router-model"] == "openai/ok-creative"  # routed afresh: the pin had expired
    assert later.headers["x-router-sticky"] == "false" and "x-router-confidence" in later.headers


# -- pins shared by replicas (every worker and replica on one outcome store) ----------------------------------------
def test_replicas_share_pins_through_the_store(store_db, small_artifact, embedder, table):
    """Two dispatchers, each with its own store connection and memory, as two replicas: the second continues the
    conversation the first pinned (run on SQLite, and on PostgreSQL when a server is available)."""
    router = Router.load(small_artifact, table, embedder=embedder)
    with OutcomeStore(store_db()) as store_a, OutcomeStore(store_db()) as store_b:
        a, b = Dispatcher(router, table, store_a), Dispatcher(router, table, store_b)
        first = a.complete(CODE, session="shared-conv")
        assert first.outcome.model == "openai/ok-code" and not first.outcome.sticky
        second = b.complete(FOLLOW_UP, session="shared-conv")
        assert second.outcome.model == "openai/ok-code" and second.outcome.sticky and second.decision is None
        alone = Dispatcher(router, table).complete(FOLLOW_UP, session="shared-conv")  # no store: its own memory
        assert alone.outcome.model == "openai/ok-creative" and not alone.outcome.sticky
        for dispatcher in (a, b):
            assert dispatcher.pins is not None
            dispatcher.pins.close()


def test_shared_pins_expire_and_sessions_are_stored_hashed(store_db):
    with OutcomeStore(store_db()):  # migrates the pins table
        pass
    with OutcomeStore(store_db()) as store:
        one, two = SessionPins(0.5, store.target), SessionPins(0.5, store.target)
        one.pin("user-42-conversation", "openai/ok-code", "code")
        seen = two.get("user-42-conversation")
        assert seen is not None and (seen.model, seen.label) == ("openai/ok-code", "code")
        keys = one._shared("SELECT session_key FROM session_pins", ())
        assert keys is not None and "user-42" not in str(keys[0]) and len(str(keys[0])) == 64
        time.sleep(0.7)
        assert one.get("user-42-conversation") is None and two.get("user-42-conversation") is None
        one.close()
        two.close()


def test_sessions_in_the_python_api(small_artifact, embedder, table):
    dispatcher = Dispatcher(Router.load(small_artifact, table, embedder=embedder), table, session_ttl=0)
    assert dispatcher.pins is None  # a TTL of 0 turns stickiness off
    dispatcher.complete(CODE, session="off")
    assert dispatcher.complete(FOLLOW_UP, session="off").outcome.model == "openai/ok-creative"
    with pytest.raises(DataError, match="session id must be"):
        dispatcher.complete(CODE, session="")
    with pytest.raises(Exception, match="session TTL must be a positive number"):
        SessionPins(-1)
