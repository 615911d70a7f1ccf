"""Route and model instructions and default parameters: loading and validation of the route table, and what the
provider receives through the real HTTP path (the service, litellm, the loopback stub that records each body)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_ml.exceptions import ConfigError
from router_ml.route_table import RouteTable, load_routes
from router_ml.route_table_options import instructions_hash
from router_ml.testing.demo import run_dispatch_demo
from router_ml.testing.stub import StubLLMServer
from tests.service_helpers import ServiceThread, chat, logged, start_service

SEED_AGENTS = Path(__file__).resolve().parents[1] / "examples" / "seed_agents.toml"
ROUTE = '[routes.code]\nmodel = "a/b"\n'


# -- the route table -----------------------------------------------------------------------------------------------
def test_instructions_and_params_load_resolve_and_round_trip(tmp_path):
    path = tmp_path / "routes.toml"
    path.write_text(
        ROUTE + 'fallbacks = ["c/d", "e/f"]\ninstructions = "Route says."\n'
        'params = { temperature = 0.2, max_tokens = 300, stop = ["END"] }\n'
        '[models."c/d"]\ninstructions = "Model says."\nparams = { temperature = 0.7, seed = 7 }\n'
        '[models."e/f"]\nparams = { top_p = 0.5 }\n',
        encoding="utf-8",
    )
    table = load_routes(path)
    assert table["code"].instructions == "Route says."
    # the primary and a fallback without its own instructions get the route's; one with its own gets those
    assert table.instructions_for("a/b", "code") == table.instructions_for("e/f", "code") == "Route says."
    assert table.instructions_for("c/d", "code") == "Model says."
    assert table.instructions_for("a/b", None) is None  # a forced model gets only its own
    assert table.instructions_for("c/d", None) == "Model says."
    # params merge key by key: the model's over the route's
    assert table.params_for("a/b", "code") == {"temperature": 0.2, "max_tokens": 300, "stop": ["END"]}
    assert table.params_for("c/d", "code") == {"temperature": 0.7, "max_tokens": 300, "stop": ["END"], "seed": 7}
    assert table.params_for("e/f", None) == {"top_p": 0.5}
    again = load_routes(table.save(tmp_path / "saved.toml"))
    assert again.to_dict() == table.to_dict()
    assert again.models["c/d"].instructions == "Model says." and again["code"].params["stop"] == ["END"]


def test_a_table_without_instructions_saves_as_before():
    data = load_routes().to_dict()
    assert all("instructions" not in r and "params" not in r for r in data["routes"].values())
    assert all("instructions" not in m and "params" not in m for m in data["models"].values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ROUTE + 'instruction = "typo"', r"has unknown keys \['instruction'\]; allowed: .*instructions"),
        (ROUTE + "instructions = 3", r"\[routes.code\] instructions must be a string .*found int 3"),
        (ROUTE + 'instructions = "  "', r"\[routes.code\] instructions is empty"),
        (ROUTE + 'params = "hot"', r"\[routes.code\] params must be a table of provider parameters, found str"),
        (ROUTE + "params = { temprature = 1 }", r"\[routes.code\] params has unknown keys \['temprature'\]; expected"),
        (ROUTE + "params = { temperature = 2.5 }", r"params.temperature must be a number from 0 to 2, found 2.5"),
        (ROUTE + "params = { temperature = true }", r"params.temperature must be a number from 0 to 2, found True"),
        (ROUTE + "params = { max_tokens = 0 }", r"params.max_tokens must be a positive integer, found 0"),
        (ROUTE + "params = { max_tokens = 1.5 }", r"params.max_tokens must be a positive integer, found 1.5"),
        (ROUTE + 'params = { stop = ["a", ""] }', r"params.stop must be a non-empty string or a list of 1 to 4"),
        (ROUTE + "params = { seed = 1.5 }", r"params.seed must be an integer"),
        (ROUTE + "params = { top_p = -0.1 }", r"params.top_p must be a number from 0 to 1"),
        (ROUTE + '[models."c/d"]\ninstructons = "x"', r'\[models."c/d"\] has unknown keys \[\'instructons\'\]'),
        (ROUTE + '[models."c/d"]\ninstructions = ""', r'\[models."c/d"\] instructions is empty'),
        (ROUTE + '[models."c/d"]\nparams = { tools = [] }', r'\[models."c/d"\] params has unknown keys \[\'tools\'\]'),
        (ROUTE + '[models."c/d"]\nparams = { frequency_penalty = 3 }', r"frequency_penalty must be a number from -2"),
    ],
)
def test_bad_instructions_and_params_are_explained(tmp_path, text, message):
    path = tmp_path / "routes.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_routes(path)
    assert str(path) in str(info.value)  # the file, then the table, what was expected and found, and the fix
    assert "remove" in str(info.value) or "write" in str(info.value)


def test_instructions_hash_is_a_stable_sha256_prefix():
    assert instructions_hash(None) is None
    assert instructions_hash("You are a creative writer. Be weird.") == "a0e8238c96958e57"
    assert instructions_hash("a") != instructions_hash("b")


def test_seed_agents_example_loads_with_the_bundled_labels():
    table = load_routes(SEED_AGENTS)
    table.check_labels(["code", "creative", "reasoning", "simple"])
    assert table.labels == ["code", "creative", "reasoning", "simple"]
    assert table["code"].model.startswith("anthropic/claude")
    assert table["code"].instructions == "You are an expert engineer. Write bugs? You are fired."
    assert table["creative"].model.startswith("gemini/gemini")
    assert table["creative"].instructions == "You are a creative writer. Be weird."
    assert table["reasoning"].model.startswith("openai/gpt")
    assert "mini" in table["simple"].model
    assert RouteTable.from_dict(table.to_dict()).to_dict() == table.to_dict()


# -- through the service, litellm and the stub provider -------------------------------------------------------------
CODE_PROMPT = "Write a Python function that reverses a linked list."
ROUTE_SAYS = "You write code. These are the code route's instructions."
OWN_SAYS = "These are the fallback model's own instructions."
WEIRD = "You are a creative writer. Be weird."


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLMServer]:
    with StubLLMServer(seed=7) as server:
        yield server


@pytest.fixture(scope="module")
def service(stub, small_artifact, tmp_path_factory, monkeypatch_module) -> Iterator[tuple[ServiceThread, Path]]:
    monkeypatch_module.setenv("INSTRUCTIONS_STUB_KEY", "stub-key")
    routes = {
        "code": {
            "model": "openai/ok-code", "fallbacks": ["openai/ok-code-own", "openai/ok-code-plain"],
            "instructions": ROUTE_SAYS, "params": {"temperature": 0.2, "max_tokens": 300},
        },
        "creative": {"model": "openai/ok-creative", "instructions": WEIRD},
        "reasoning": {"model": "openai/ok-reasoning"},
        "simple": {"model": "openai/ok-simple"},
    }  # fmt: skip
    endpoint = {"api_base": stub.base_url, "api_key_env": "INSTRUCTIONS_STUB_KEY", "timeout": 10.0}
    models = {m: dict(endpoint) for r in routes.values() for m in [r["model"], *r.get("fallbacks", [])]}
    models["openai/ok-code-own"] |= {"instructions": OWN_SAYS, "params": {"seed": 7, "max_tokens": 100}}
    table = RouteTable.from_dict({"default_route": "reasoning", "routes": routes, "models": models})
    tmp = tmp_path_factory.mktemp("instructions")
    with start_service(small_artifact, table, tmp) as server:
        yield server, tmp


@pytest.fixture
def http(service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service[0].url, timeout=30) as client:
        yield client


def test_route_instructions_come_first_and_the_callers_values_win(http, stub, service):
    messages = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": CODE_PROMPT}]
    response = chat(http, messages, temperature=0.9)
    assert response.headers["x-router-model"] == "openai/ok-code"
    sent = stub.sent_to("ok-code")[-1]
    assert sent.roles == ["system", "system", "user"]
    assert sent.system == [ROUTE_SAYS, "Answer in French."]  # the route's first, the caller's kept after it
    assert sent.body["temperature"] == 0.9  # the caller's value beats the route's 0.2
    assert sent.body["max_tokens"] == 300  # the route's default where the caller sent none
    assert logged(service[1], response.headers["x-router-request-id"]).instructions_hash == (
        instructions_hash(ROUTE_SAYS)
    )


def test_the_model_called_gets_its_own_instructions_or_the_routes(http, stub, service):
    stub.down.add("ok-code")
    try:
        own = chat(http, [{"role": "user", "content": CODE_PROMPT}])
        stub.down.add("ok-code-own")
        plain = chat(http, [{"role": "user", "content": CODE_PROMPT}])
    finally:
        stub.down.difference_update({"ok-code", "ok-code-own"})
    assert own.headers["x-router-model"] == "openai/ok-code-own"
    sent = stub.sent_to("ok-code-own")[-1]
    assert sent.system == [OWN_SAYS]  # its own instructions replace the route's
    assert (sent.body["temperature"], sent.body["seed"], sent.body["max_tokens"]) == (0.2, 7, 100)
    assert logged(service[1], own.headers["x-router-request-id"]).instructions_hash == instructions_hash(OWN_SAYS)
    assert plain.headers["x-router-model"] == "openai/ok-code-plain"
    assert stub.sent_to("ok-code-plain")[-1].system == [ROUTE_SAYS]  # a fallback without its own: the route's


def test_a_forced_model_gets_only_its_own(http, stub, service):
    forced = chat(http, [{"role": "user", "content": CODE_PROMPT}], model="openai/ok-code")
    sent = stub.sent_to("ok-code")[-1]
    assert sent.roles == ["user"] and "temperature" not in sent.body and "max_tokens" not in sent.body
    assert logged(service[1], forced.headers["x-router-request-id"]).instructions_hash is None
    chat(http, [{"role": "user", "content": CODE_PROMPT}], model="openai/ok-code-own")
    assert stub.sent_to("ok-code-own")[-1].system == [OWN_SAYS]


def test_streams_carry_the_instructions_too(http, stub):
    prompt = [{"role": "user", "content": "Write a short poem about the first snow falling on a quiet city."}]
    response = chat(http, prompt, stream=True)
    assert response.headers["x-router-model"] == "openai/ok-creative"
    assert "data: [DONE]" in response.text
    sent = stub.sent_to("ok-creative")[-1]
    assert sent.body["stream"] is True and sent.system == [WEIRD] and sent.roles == ["system", "user"]


def test_the_seed_agents_demo_shows_which_instructions_reached_which_model(small_artifact, tmp_path):
    """The demo sends the seed example through litellm's Anthropic, Gemini and OpenAI paths to the stub."""
    lines: list[str] = []
    run_dispatch_demo(small_artifact, tmp_path / "demo.db", echo=lines.append)
    text = "\n".join(lines)
    claude = next(i for i, line in enumerate(lines) if line.startswith("[code") and "anthropic/claude" in line)
    assert "'You are an expert engineer. Write bugs? You are fired.'" in lines[claude + 2]
    gemini = next(i for i, line in enumerate(lines) if line.startswith("[creative") and "gemini/gemini" in line)
    assert "'You are a creative writer. Be weird.'" in lines[gemini + 2]
    gpt = next(i for i, line in enumerate(lines) if line.startswith("[reasoning") and "openai/gpt-5" in line)
    assert lines[gpt + 2].endswith("(none)")
    assert "stays on anthropic/claude-sonnet-4-5 (pin held: True)" in text
    assert "anthropic/claude-sonnet-4-5" in text and "gemini/gemini-2.5-pro" in text  # both wire formats reached
