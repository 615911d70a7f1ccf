"""The OpenAI-compatible service, driven over real HTTP on 127.0.0.1 by the official openai client and raw httpx.

Upstream providers are the loopback stub server; the outcome log is a real SQLite file.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from router_ml.online.store import OutcomeStore
from router_ml.route_table import load_routes
from router_ml.serving.app import create_app
from router_ml.serving.settings import ServiceConfig
from router_ml.testing.stub import StubLLMServer, stub_route_table
from tests.service_helpers import ServiceThread, logged

API_KEY = "test-key-123"
ADMIN_KEY = "admin-key-456"


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLMServer]:
    with StubLLMServer(seed=3) as server:
        yield server


@pytest.fixture(scope="module")
def routes_file(stub, tmp_path_factory, monkeypatch_module) -> Path:
    """The bundled route table served by the stub, except that the reasoning route's primary always fails."""
    monkeypatch_module.setenv("ROUTER_ML_STUB_KEY", "stub-key")
    data = stub_route_table(load_routes(), stub).to_dict()
    data["routes"]["reasoning"]["model"] = "openai/fail-reasoning"
    data["routes"]["reasoning"]["fallbacks"] = ["openai/ok-reasoning-backup"]
    for model in ("openai/fail-reasoning", "openai/ok-reasoning-backup"):
        data["models"][model] = {"api_base": stub.base_url, "api_key_env": "ROUTER_ML_STUB_KEY", "timeout": 10.0}
    from router_ml.route_table import RouteTable

    return RouteTable.from_dict(data).save(tmp_path_factory.mktemp("routes") / "routes.toml")


@pytest.fixture(scope="module")
def models_dir(small_artifact, tmp_path_factory) -> Path:
    """A models folder with router-v001 and a CURRENT pointer, like `router-ml retrain` writes."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(small_artifact, root / "router-v001")
    (root / "CURRENT").write_text("router-v001\n")
    return root


@pytest.fixture(scope="module")
def service(models_dir, routes_file, tmp_path_factory) -> Iterator[tuple[ServiceThread, ServiceConfig]]:
    config = ServiceConfig(
        model=str(models_dir),
        routes=str(routes_file),
        db=str(tmp_path_factory.mktemp("db") / "outcomes.db"),
        api_keys=[API_KEY],
        admin_key=ADMIN_KEY,
        max_body_bytes=20_000,
        max_messages=8,
        timeout=10.0,
        deadline=20.0,
    )
    with ServiceThread(create_app(config)) as server:
        yield server, config


@pytest.fixture
def client(service) -> openai.OpenAI:
    server, _ = service
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)


@pytest.fixture
def http(service) -> Iterator[httpx.Client]:
    server, _ = service
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as c:
        yield c


def _store(service) -> OutcomeStore:
    return OutcomeStore(service[1].db)


def test_openai_client_routes_and_gets_decision_headers(client, service) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="router", messages=[{"role": "user", "content": "Write a Python function that reverses a linked list."}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content and completion.object == "chat.completion"
    route, model = raw.headers["x-router-route"], raw.headers["x-router-model"]
    request_id = raw.headers["x-router-request-id"]
    assert route in ("code", "creative", "reasoning", "simple") and 0 < float(raw.headers["x-router-confidence"]) <= 1
    assert model == completion.model or completion.model.endswith(model.split("/", 1)[1])
    row = logged(Path(service[1].db).parent, request_id)
    assert row.label == route and row.model == model and row.status == "ok"


def test_openai_client_streams(client, service) -> None:
    stream = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Write a haiku about autumn rain."}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert len(text) > 5
    with client.chat.completions.with_streaming_response.create(
        model="router", messages=[{"role": "user", "content": "Write a limerick about a cat."}], stream=True
    ) as response:
        request_id = response.headers["x-router-request-id"]
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    for model in ("anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-pro", "openai/gpt-5-mini"):  # each wire format
        chunks = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
        assert "stub answer" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    row = logged(Path(service[1].db).parent, request_id)
    assert row.stream and row.status == "ok"


def test_concrete_model_passes_through_and_unknown_model_is_404(client, routes_file) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="openai/gpt-5-mini", messages=[{"role": "user", "content": "hello"}]
    )
    assert raw.headers["x-router-model"] == "openai/gpt-5-mini" and "x-router-route" not in raw.headers
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-2", messages=[{"role": "user", "content": "hello"}])
    assert err.value.body["code"] == "model_not_found" and "gpt-2" in err.value.body["message"]


def test_route_endpoint_single_messages_and_batch(http) -> None:
    one = http.post("/v1/route", json={"input": "Compose a sonnet about the sea."}).json()
    assert one["object"] == "route" and set(one["probabilities"]) == {"code", "creative", "reasoning", "simple"}
    assert one["model"] and isinstance(one["abstained"], bool) and one["request_id"]
    convo = http.post("/v1/route", json={"messages": [{"role": "user", "content": "Fix this SQL: SELEC * FORM t"}]})
    assert convo.status_code == 200 and convo.json()["label"]
    prompts = ["Sort a list in Rust", "A poem about dawn", "What is 2+2?", [{"role": "user", "content": "hi"}]]
    batch = http.post("/v1/route", json={"input": prompts}).json()
    assert batch["object"] == "list" and len(batch["data"]) == 4
    singles = [
        http.post("/v1/route", json={"input": p} if isinstance(p, str) else {"messages": p}).json() for p in prompts
    ]
    assert [d["label"] for d in batch["data"]] == [s["label"] for s in singles]


def test_feedback_and_models(http, service) -> None:
    request_id = http.post("/v1/route", json={"input": "Summarize this paragraph in one line."}).json()["request_id"]
    ok = http.post("/v1/feedback", json={"request_id": request_id, "label": "simple", "score": "up", "comment": "good"})
    assert ok.status_code == 200 and ok.json()["recorded"] is True
    with _store(service) as store:
        assert store.feedback(request_id)[0].label == "simple"
    missing = http.post("/v1/feedback", json={"request_id": "nope", "label": "simple"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_request_id"
    ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert ids[:2] == ["router", "auto"] and "anthropic/claude-sonnet-4-5" in ids


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"model": "router"}).encode(), 400, "messages"),
        (json.dumps({"model": "router", "messages": []}).encode(), 400, "messages"),
        (json.dumps({"model": "router", "messages": [{"role": "wizard", "content": "x"}]}).encode(), 400, "role"),
        (json.dumps({"model": "router", "messages": [{"role": "assistant", "content": "x"}]}).encode(), 400, "user"),
        (json.dumps({"model": "router", "messages": [{"role": "user", "content": "x"}] * 9}).encode(), 400, "limit"),
        (
            json.dumps({"model": "router", "messages": [{"role": "user", "content": "x" * 30_000}]}).encode(),
            413,
            "limit",
        ),
        (
            json.dumps({"model": "router", "messages": [{"role": "user", "content": "x"}], "bogus": 1}).encode(),
            400,
            "bogus",
        ),
    ],
)
def test_malformed_chat_requests_get_openai_errors(http, body, status, needle) -> None:
    response = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert needle in error["message"] and error["type"] and "Traceback" not in response.text


def test_route_endpoint_errors(http) -> None:
    assert http.post("/v1/route", json={}).status_code == 400
    both = http.post("/v1/route", json={"input": "x", "messages": [{"role": "user", "content": "x"}]})
    assert both.status_code == 400 and "exactly one" in both.json()["error"]["message"]
    assert http.post("/v1/route", json={"input": []}).status_code == 400
    blank = http.post("/v1/route", json={"input": "   "})
    assert blank.status_code == 400 and "empty" in blank.json()["error"]["message"]
    assert http.get("/v1/nothing-here").json()["error"]["code"] == "not_found"


def test_authentication(service) -> None:
    server, _ = service
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}):
        response = httpx.post(f"{server.url}/v1/route", json={"input": "hi"}, headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # probes need no key
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"
    user_on_admin = httpx.post(f"{server.url}/admin/reload", headers={"Authorization": f"Bearer {API_KEY}"})
    assert user_on_admin.status_code == 401


def test_metrics_count_requests_routes_fallbacks_and_cost(http, client, service) -> None:
    before = http.get("/metrics").text
    reasoning = 0
    for prompt in [
        "Prove that the square root of 2 is irrational.",
        "Write a poem about tea.",
        "Sort a dict in Python",
    ]:
        raw = client.chat.completions.with_raw_response.create(
            model="router", messages=[{"role": "user", "content": prompt}]
        )
        reasoning += raw.headers["x-router-route"] == "reasoning"
    text = http.get("/metrics").text

    def value(metrics: str, name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(name))

    assert value(text, 'router_ml_requests_total{code="200",endpoint="/v1/chat/completions"}') >= 3
    assert value(text, "router_ml_route_decisions_total") - value(before, "router_ml_route_decisions_total") == 3
    assert value(text, "router_ml_fallbacks_total") - value(before, "router_ml_fallbacks_total") == reasoning
    assert value(text, "router_ml_cost_usd_total") > value(before, "router_ml_cost_usd_total")
    assert value(text, "router_ml_routing_seconds_count") > 0 and value(text, "router_ml_provider_seconds_count") > 0
    assert value(text, "router_ml_decision_cache_total") >= 3 and value(text, "router_ml_batch_size_count") >= 3


def test_hot_reload_swaps_the_router_without_dropping_requests(service, models_dir, client, small_artifact) -> None:
    server, _ = service
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    old = httpx.get(f"{server.url}/readyz").json()["router_version"]
    unchanged = httpx.post(f"{server.url}/admin/reload", headers=admin).json()
    assert unchanged == {"reloaded": False, "router_version": old}
    # promote a new version the way retrain does: a new folder and an atomic CURRENT
    new_dir = models_dir / "router-v002"
    shutil.copytree(small_artifact, new_dir)
    manifest = json.loads((new_dir / "manifest.json").read_text())
    manifest["router_id"] = "promoted0000beef"
    (new_dir / "manifest.json").write_text(json.dumps(manifest))
    (models_dir / "CURRENT.tmp").write_text("router-v002\n")
    (models_dir / "CURRENT.tmp").replace(models_dir / "CURRENT")

    results: list[str] = []

    def traffic() -> None:
        for _ in range(6):
            raw = client.chat.completions.with_raw_response.create(
                model="router", messages=[{"role": "user", "content": "Write a haiku about snow."}]
            )
            results.append(raw.headers["x-router-version"])

    worker = threading.Thread(target=traffic)
    worker.start()
    reloaded = httpx.post(f"{server.url}/admin/reload", headers=admin).json()
    worker.join()
    assert reloaded == {"reloaded": True, "router_version": "promoted0000beef", "previous_version": old}
    assert len(results) == 6 and set(results) <= {old, "promoted0000beef"}
    assert httpx.get(f"{server.url}/readyz").json()["router_version"] == "promoted0000beef"
    # a broken promotion is refused and the service keeps the router it has
    (models_dir / "CURRENT").write_text("router-v999\n")
    broken = httpx.post(f"{server.url}/admin/reload", headers=admin)
    assert broken.status_code == 409 and "still serving" in broken.json()["error"]["message"]
    assert httpx.get(f"{server.url}/readyz").json()["router_version"] == "promoted0000beef"
    (models_dir / "CURRENT").write_text("router-v002\n")
