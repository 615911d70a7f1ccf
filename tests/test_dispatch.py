"""Dispatcher against a real OpenAI-compatible stub server on 127.0.0.1, through litellm's HTTP path."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from router_ml.exceptions import ConfigError, DataError, DispatchError, StoreError
from router_ml.online.breaker import BreakerPolicy
from router_ml.online.dispatch import Dispatcher
from router_ml.online.store import OutcomeStore
from router_ml.route_table import RouteTable
from router_ml.router import Router
from router_ml.testing.stub import StubLLMServer

MODEL_TIMEOUT = 1.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stub():
    with StubLLMServer(slow_seconds=4.0, seed=1) as server:
        yield server


@pytest.fixture(scope="module")
def table(stub, monkeypatch_module) -> RouteTable:
    monkeypatch_module.setenv("STUB_KEY", "test-key")
    refused = f"http://127.0.0.1:{_closed_port()}/v1"
    routes = {
        "code": {"model": "openai/ok-code", "input_price": 3.0, "output_price": 15.0},
        "creative": {"model": "openai/ok-creative", "input_price": 1.0, "output_price": 10.0},
        "reasoning": {"model": "openai/ok-reasoning", "input_price": 1.0, "output_price": 10.0},
        "simple": {"model": "openai/ok-simple", "input_price": 0.25, "output_price": 2.0},
        "t500": {"model": "openai/fail-500", "fallbacks": ["openai/ok-backup"]},
        "ttimeout": {"model": "openai/slow-timeout", "fallbacks": ["openai/ok-backup"]},
        "trefused": {"model": "openai/ok-refused", "fallbacks": ["openai/ok-backup"]},
        "tmalformed": {"model": "openai/malformed-a", "fallbacks": ["openai/ok-backup"]},
        "tratelimit": {"model": "openai/ratelimit-a", "fallbacks": ["openai/ok-backup"]},
        "tcooldown": {"model": "openai/fail-cooldown", "fallbacks": ["openai/ok-backup"]},
        "tdeadline": {"model": "openai/slow-d1", "fallbacks": ["openai/slow-d2", "openai/ok-late"]},
        "tallfail": {"model": "openai/fail-x", "fallbacks": ["openai/malformed-x"]},
        "tcontext": {"model": "openai/ok-small", "fallbacks": ["openai/ok-large"]},
        "tflaky": {"model": "openai/flaky-a@0.2", "fallbacks": ["openai/ok-load"]},
        "tbroken": {"model": "openai/broken-stream"},
    }
    models = {
        m: {"api_base": stub.base_url, "api_key_env": "STUB_KEY", "timeout": MODEL_TIMEOUT}
        for r in routes.values()
        for m in [r["model"], *r.get("fallbacks", [])]
    }
    models["openai/ok-refused"]["api_base"] = refused
    models["openai/slow-d1"]["timeout"] = models["openai/slow-d2"]["timeout"] = 10.0
    models["openai/ok-small"]["max_input_tokens"] = 40
    models["openai/flaky-a@0.2"]["timeout"] = models["openai/ok-load"]["timeout"] = 30.0  # 1,000 at once queue up
    return RouteTable.from_dict({"default_route": "reasoning", "routes": routes, "models": models})


@pytest.fixture(scope="module")
def router(small_artifact, embedder, table) -> Router:
    return Router.load(small_artifact, table, embedder=embedder)


@pytest.fixture
def store(tmp_path):
    with OutcomeStore(tmp_path / "outcomes.db") as s:
        yield s


@pytest.fixture
def dispatcher(router, table, store) -> Dispatcher:
    return Dispatcher(router, table, store, deadline=8.0)


def test_success_routes_calls_and_logs(dispatcher, store):
    result = dispatcher.complete("Write a Python function that reverses a linked list.", temperature=0.2)
    assert result.decision.label == "code"
    assert result.response.choices[0].message.content.startswith("stub answer to: Write a Python function")
    o = result.outcome
    assert o.model == "openai/ok-code" and o.status == "ok"
    assert [(a.model, a.status) for a in o.attempts] == [("openai/ok-code", "ok")]
    assert o.prompt_tokens > 0 and o.completion_tokens == 12
    assert o.cost_usd == pytest.approx((o.prompt_tokens * 3.0 + 12 * 15.0) / 1e6)
    row = store.get(result.request_id)
    assert row.label == "code" and row.model == "openai/ok-code" and row.status == "ok"
    assert row.router_version == dispatcher.router.version
    assert row.routing_ms > 0 and row.provider_ms > 0
    assert set(row.probabilities) == {"code", "creative", "reasoning", "simple"}


@pytest.mark.parametrize(
    ("route", "error"),
    [
        ("t500", "InternalServerError"),
        ("ttimeout", "Timeout"),
        ("trefused", "InternalServerError"),  # litellm surfaces a refused connection this way
        ("tmalformed", "InternalServerError"),
        ("tratelimit", "RateLimitError"),
    ],
)
def test_failures_fall_back_with_the_reason_kept(dispatcher, store, route, error):
    result = asyncio.run(dispatcher.acomplete("hello there", route=route))
    o = result.outcome
    assert o.model == "openai/ok-backup" and o.status == "ok" and o.forced == f"route:{route}"
    first, second = o.attempts
    assert first.status == "error" and first.error == error and first.reason
    assert second.model == "openai/ok-backup" and second.status == "ok"
    if route == "ttimeout":
        assert first.latency_ms < (MODEL_TIMEOUT + 1.5) * 1000
    assert store.get(result.request_id).attempts[0].error == error


def test_an_open_breaker_skips_a_failing_model(router, table, store, stub):
    policy = BreakerPolicy(min_calls=2, failure_rate=0.5, open_seconds=60)
    dispatcher = Dispatcher(router, table, store, deadline=8.0, breaker=policy)
    before = stub.requests.count("fail-cooldown")
    for _ in range(2):  # two failures in two calls: the breaker opens
        assert dispatcher.complete("hi", route="tcooldown").outcome.model == "openai/ok-backup"
    assert dispatcher.breakers["openai/fail-cooldown"].state == "open"
    started = time.perf_counter()
    result = dispatcher.complete("hi", route="tcooldown")
    assert stub.requests.count("fail-cooldown") - before == 2  # the third request never reached it
    skipped = result.outcome.attempts[0]
    assert skipped.status == "skipped" and skipped.error == "BreakerOpen" and "breaker open" in skipped.reason
    assert result.outcome.model == "openai/ok-backup" and result.outcome.fell_back
    assert result.outcome.fallback_causes == ["BreakerOpen"]
    assert time.perf_counter() - started < 1.0


def test_every_breaker_open_still_makes_one_real_attempt(router, table, store, stub):
    policy = BreakerPolicy(min_calls=1, failure_rate=0.5, open_seconds=60)
    dispatcher = Dispatcher(router, table, store, deadline=8.0, breaker=policy, retries=0)
    with pytest.raises(DispatchError):
        dispatcher.complete("hi", route="tallfail")  # both models fail once: both breakers open
    assert {dispatcher.breakers[m].state for m in ("openai/fail-x", "openai/malformed-x")} == {"open"}
    calls = len(stub.requests)
    with pytest.raises(DispatchError, match="every model failed") as info:
        dispatcher.complete("hi", route="tallfail")
    assert len(stub.requests) - calls == 1  # not refused without trying: one real call
    statuses = [a.status for a in info.value.outcome.attempts]
    assert statuses.count("error") == 1 and statuses.count("skipped") == 2


def test_deadline_holds(router, table, store):
    dispatcher = Dispatcher(router, table, store, deadline=1.5)
    started = time.perf_counter()
    with pytest.raises(DispatchError, match=r"1\.5s deadline passed") as info:
        asyncio.run(dispatcher.acomplete("hi", route="tdeadline"))
    assert time.perf_counter() - started < 2.5
    assert info.value.outcome.status == "deadline"
    assert store.get(info.value.outcome.request_id).status == "deadline"


def test_everything_failing_is_a_clear_logged_error(dispatcher, store):
    with pytest.raises(DispatchError, match="every model failed") as info:
        dispatcher.complete("hi", route="tallfail")
    message = str(info.value)
    assert "openai/fail-x: InternalServerError" in message and "openai/malformed-x: InternalServerError" in message
    row = store.get(info.value.outcome.request_id)
    assert row.status == "error" and row.model is None and len(row.attempts) == 4  # one retry pass after back-off
    assert [a.model for a in row.attempts] == ["openai/fail-x", "openai/malformed-x"] * 2


def test_context_window_skips_a_model_that_cannot_fit(dispatcher):
    short = dispatcher.complete("a short prompt", route="tcontext")
    assert short.outcome.model == "openai/ok-small"
    long = dispatcher.complete("please summarize this: " + "the quick brown fox jumps. " * 60, route="tcontext")
    skipped = long.outcome.attempts[0]
    assert skipped.status == "skipped" and skipped.error == "ContextWindowExceeded"
    assert "model accepts 40" in skipped.reason
    assert long.outcome.model == "openai/ok-large"


def test_forcing_and_decision_only(dispatcher, store, stub):
    calls = len(stub.requests)
    decided = dispatcher.complete("Write a haiku about snow.", decision_only=True)
    assert decided.decision.label == "creative" and decided.response is None
    assert len(stub.requests) == calls
    assert store.get(decided.request_id).status == "decision_only"
    forced = dispatcher.complete("Write a haiku about snow.", model="openai/ok-reasoning")
    assert forced.outcome.model == "openai/ok-reasoning" and forced.decision is None
    assert forced.outcome.forced == "model:openai/ok-reasoning"


def test_streaming_passes_through_and_logs_at_the_end(dispatcher, store):
    async def consume():
        result = await dispatcher.acomplete("Why is the sky blue?", stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in result.stream])
        return result, text

    result, text = asyncio.run(consume())
    assert text == "stub answer to: Why is the sky blue?"
    row = store.get(result.request_id)
    assert row.stream and row.status == "ok" and row.completion_tokens > 0

    sync = dispatcher.complete("Why is the sky blue?", stream=True)
    stream = sync.stream
    next(stream)
    stream.close()  # the client goes away after the first chunk
    assert store.get(sync.request_id).status == "stream_cancelled"


def test_a_stream_that_breaks_is_logged_as_such(dispatcher, store):
    async def consume():
        result = await dispatcher.acomplete("Tell me a story.", route="tbroken", stream=True)
        received = []
        with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises must reach the caller
            async for chunk in result.stream:
                received.append(chunk)
        return result, received

    result, received = asyncio.run(consume())
    assert len(received) >= 1
    row = store.get(result.request_id)
    assert row.status == "stream_error" and row.error and row.model == "openai/broken-stream"


@pytest.mark.slow
def test_nothing_lost_under_1000_concurrent_requests_with_faults(router, table, tmp_path, stub):
    prompts = [
        "Write a bash script that backs up my home folder.",
        "Write a poem about the sea at night.",
        "Why do leaves change colour in autumn?",
        "Translate into Spanish: 'the meeting is at noon'.",
    ]

    async def run(store):
        dispatcher = Dispatcher(router, table, store, deadline=60.0)
        calls = []
        for i in range(1000):
            if i % 10 == 0:
                calls.append(dispatcher.acomplete(prompts[i % 4], route="tallfail"))  # always fails: a clear error
            else:
                calls.append(dispatcher.acomplete(prompts[i % 4], route="tflaky"))  # ~20 % primary faults
        return await asyncio.gather(*calls, return_exceptions=True)

    with OutcomeStore(tmp_path / "load.db") as store:
        results = asyncio.run(run(store))
        answered = [r for r in results if not isinstance(r, BaseException)]
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(answered) == 900 and len(errors) == 100
        assert all(isinstance(e, DispatchError) and "every model failed" in str(e) for e in errors)
        rows = store.outcomes()
    assert len(rows) == 1000 and len({r.request_id for r in rows}) == 1000
    ok = [r for r in rows if r.status == "ok"]
    assert len(ok) == 900 and all(r.model and r.attempts[-1].status == "ok" for r in ok)
    fell_back = [r for r in ok if r.model == "openai/ok-load"]
    assert 100 < len(fell_back) < 280  # ~20 % of 900 primary calls failed and fell back
    assert all(r.attempts[0].error == "InternalServerError" for r in fell_back)
    failed = [r for r in rows if r.status == "error"]
    assert len(failed) == 100 and all(r.error and r.model is None for r in failed)


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"prompt": []}, DataError, "non-empty list"),
        ({"prompt": [{"role": "system", "content": "x"}]}, DataError, "no user turn"),
        ({"prompt": "hi", "route": "legal"}, ConfigError, "no route for label 'legal'"),
        ({"prompt": "hi", "model": "openai/unknown"}, ConfigError, "unknown model 'openai/unknown'"),
        ({"prompt": "hi", "colour": "red"}, DataError, r"unsupported parameters \['colour'\]"),
    ],
)
def test_bad_requests_are_explained(dispatcher, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        dispatcher.complete(**kwargs)


def test_unreadable_store_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open the outcome store"):
        OutcomeStore(blocker / "outcomes.db")


def test_dispatcher_without_router_needs_a_forced_route(table):
    with pytest.raises(ConfigError, match="has no router"):
        Dispatcher(None, table).complete("hi")
