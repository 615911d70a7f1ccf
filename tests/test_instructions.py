"""Route and model instructions and default parameters: loading and validation of the route table, and what the
provider receives through the real HTTP path (the service, litellm, the loopback stub that records each body)."""

from __future__ import annotations

from pathlib import Path

import pytest

from router_ml.exceptions import ConfigError
from router_ml.route_options import instructions_hash
from router_ml.routes import RouteTable, load_routes

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
        (ROUTE + 'instruction = "typo"', r"\[routes.code\] has unknown keys \['instruction'\]; allowed: .*instructions"),
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
