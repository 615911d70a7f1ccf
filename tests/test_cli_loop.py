"""The online-loop commands end to end: dispatch → outcomes → feedback → export → retrain, plus drift."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from router_ml.cli import cli
from router_ml.data import load_bundled, load_file
from router_ml.route_table import load_routes
from router_ml.testing.stub import StubLLMServer

from .conftest import PER_LABEL


@pytest.fixture(scope="module")
def stub():
    with StubLLMServer() as server:
        yield server


@pytest.fixture
def routes_file(stub, tmp_path, monkeypatch):
    """The bundled route table with every model served by the loopback stub (OpenAI, Anthropic, Gemini formats)."""
    monkeypatch.setenv("STUB_KEY", "k")
    table = load_routes()
    lines = [f'default_route = "{table.default_route}"']
    for label, route in table.routes.items():
        lines += [f"[routes.{label}]", f'model = "{route.model}"', f"fallbacks = {json.dumps(list(route.fallbacks))}",
                  f"input_price = {route.input_price}", f"output_price = {route.output_price}"]  # fmt: skip
    for model in table.all_models:
        base = stub.base_url if model.startswith("openai/") else stub.root_url
        lines += [f'[models."{model}"]', f'api_base = "{base}"', 'api_key_env = "STUB_KEY"']
    path = tmp_path / "routes.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_dispatch_feedback_export_retrain(small_artifact, routes_file, stub, tmp_path, small_jsonl):
    runner = CliRunner()
    db = str(tmp_path / "o.db")
    base = ["--model", str(small_artifact), "--routes", str(routes_file), "--db", db]
    prompts = {
        "code": "Write a Go function that reverses a slice of ints.",
        "creative": "Write a limerick about a forgetful robot.",
        "reasoning": "Why do calendars need leap years at all?",
    }
    ids = {}
    for label, prompt in prompts.items():
        result = runner.invoke(cli, ["dispatch", prompt, *base])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("stub answer to:")
        ids[label] = result.stderr.split("request ")[1].split(":")[0]
        assert f"route {label}" in result.stderr
    assert {"anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-pro", "gpt-5"} <= set(stub.requests)

    summary = runner.invoke(cli, ["outcomes", "summary", "--db", db, "--json"])
    data = json.loads(summary.stdout)
    assert data["requests"] == 3 and data["status"] == {"ok": 3} and data["cost_usd"] > 0
    listing = runner.invoke(cli, ["outcomes", "list", "--db", db]).stdout
    assert all(request_id in listing for request_id in ids.values())

    assert runner.invoke(cli, ["feedback", ids["reasoning"], "--label", "simple", "--db", db]).exit_code == 0
    assert runner.invoke(cli, ["feedback", ids["code"], "--score", "up", "--db", db]).exit_code == 0
    bad = runner.invoke(cli, ["feedback", "no-such-id", "--score", "1", "--db", db])
    assert bad.exit_code == 2 and "unknown request id 'no-such-id'" in bad.output
    shown = json.loads(runner.invoke(cli, ["outcomes", "show", ids["reasoning"], "--db", db]).stdout)
    assert shown["feedback"][0]["label"] == "simple"

    out = tmp_path / "feedback.jsonl"
    result = runner.invoke(cli, ["outcomes", "export", str(out), "--db", db])
    assert "wrote 2 prompts" in result.stdout and "1 corrected, 1 confirmed" in result.stdout
    exported = load_file(out)
    assert dict(zip(exported.texts, exported.labels, strict=True)) == {
        prompts["reasoning"]: "simple", prompts["code"]: "code",
    }  # fmt: skip

    heldout = load_bundled("heldout").subset(range(0, 400, 4))
    eval_file = tmp_path / "heldout.jsonl"
    rows = zip(heldout.texts, heldout.labels, strict=True)
    eval_file.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    report = tmp_path / "retrain.json"
    result = runner.invoke(cli, [
        "retrain", "--champion", str(small_artifact), "--feedback", str(out), "--base", str(small_jsonl),
        "--eval", str(eval_file), "--dry-run", "--report", str(report),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads(report.read_text())
    assert saved["dry_run"] and not saved["promoted"]
    assert saved["training"]["feedback"] == 2 and saved["training"]["base"] == 4 * PER_LABEL
    assert saved["evaluation"]["size"] == 100
    assert "champion" in result.stdout and "challenger" in result.stdout

    drift = runner.invoke(cli, ["drift", "--model", str(small_artifact), "--db", db, "--train-data", str(small_jsonl),
                                "--reference", str(small_jsonl)])  # fmt: skip
    assert drift.exit_code == 0, drift.output
    assert json.loads(drift.stdout)["recent_requests"] == 3


def test_dispatch_decision_only_and_errors(small_artifact, routes_file, tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "o.db")
    result = runner.invoke(cli, ["dispatch", "Sort these: 3, 1, 2", "--model", str(small_artifact), "--routes",
                                 str(routes_file), "--db", db, "--decision-only"])  # fmt: skip
    assert result.exit_code == 0 and "model -" in result.stderr
    result = runner.invoke(cli, ["dispatch", "hi", "--routes", str(routes_file), "--db", db, "--force-route", "legal"])
    assert result.exit_code == 2 and "no route for label 'legal'" in result.output
    result = runner.invoke(cli, ["dispatch", "hi", "--routes", str(routes_file), "--db", db])
    assert result.exit_code == 2 and "has no router" in result.output
