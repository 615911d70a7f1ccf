"""``collect --engine ray`` (issue 25) on a local Ray runtime started here, against the loopback stub: the same rows as
the local engine, resuming past done pairs, the concurrency limit per worker, and a missing Ray.

A Ray run starts its own actors, and each imports the dispatcher and litellm (about 15 s on this busy 2-core
machine), so one Ray run checks the rows, the resume and the limit together.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from router_ml.cli import cli
from router_ml.exceptions import ConfigError
from router_ml.online.collect import collect
from router_ml.route_table import RouteTable
from router_ml.testing.stub import StubLLMServer

from .test_collect import KEY_ENV, PROMPTS, _answer, _prompts, _rows

JUDGE = "openai/ok-judge"
MODELS = ["openai/ok-good", "openai/ok-bad", "openai/ok-garbled", "openai/fail-x"]  # scored 1, 0, unscored, failed
HOLD_SECONDS = 1.0


class GatedStub(StubLLMServer):
    """The stub; while ``hold`` is set, each request waits until ``hold`` requests are in flight (or
    ``HOLD_SECONDS`` pass), then a little longer, so that the requests an engine lets out at once overlap here;
    ``peak`` is the most that were in flight together."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold, self.now, self.peak = 0, 0, 0

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if not self.hold:
            return await super()._chat(request)
        self.now += 1  # the stub's one event loop: no lock needed
        self.peak = max(self.peak, self.now)
        try:
            deadline = time.monotonic() + HOLD_SECONDS
            while self.now < self.hold and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # a request over the limit would arrive, and count, meanwhile
            return await super()._chat(request)
        finally:
            self.now -= 1


@pytest.fixture(scope="module")
def stub(monkeypatch_module: pytest.MonkeyPatch):
    monkeypatch_module.setenv(KEY_ENV, "test-key")  # before Ray starts: its workers inherit the environment
    with GatedStub(seed=4, answer=_answer) as server:
        yield server


@pytest.fixture(scope="module")
def routes_file(stub: GatedStub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = {
        m: {"api_base": stub.base_url, "api_key_env": KEY_ENV, "timeout": 5.0, "input_price": 100.0,
            "output_price": 200.0}
        for m in [*MODELS, JUDGE]
    }  # fmt: skip
    table = RouteTable.from_dict({"routes": {"any": {"model": "openai/ok-good"}}, "models": models}, "<ray test>")
    return table.save(tmp_path_factory.mktemp("routes") / "routes.toml")


@pytest.fixture(scope="module")
def ray_runtime(stub: GatedStub):
    ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _scored(path: Path) -> list[tuple[str, str, float, bool]]:
    """The rows of an outcomes file as (text, model, score, failed), sorted: the engines' orders differ."""
    return sorted((r["text"], r["model"], r["score"], "error" in r) for r in _rows(path))


def _answered(stub: StubLLMServer, since: int) -> list[tuple[str, str]]:
    """The (prompt, model) of each answer call (not judging) the stub received since request ``since``."""
    calls = [(r.body["messages"][-1]["content"], f"openai/{r.model}") for r in stub.received[since:]]
    return sorted(c for c in calls if c[1] != JUDGE)


def test_ray_resumes_and_writes_the_local_engines_rows_with_the_limit_per_worker(
    ray_runtime, stub, routes_file, tmp_path
):
    prompts, out = _prompts(tmp_path), tmp_path / "ray.jsonl"
    local = collect(prompts, MODELS, tmp_path / "local.jsonl", routes=routes_file, judge=JUDGE, deadline=5.0,
                    progress=False)  # fmt: skip
    assert (local.written, local.failed, local.unscored, local.engine, local.workers) == (9, 3, 3, "local", 1)
    first = next(iter(PROMPTS))
    done = [r for r in _rows(tmp_path / "local.jsonl") if r["text"] == first]  # 3 rows; ok-garbled's unscored
    out.write_text("".join(json.dumps(r) + "\n" for r in done)[:-1])  # the last row whole, its newline lost
    before = len(stub.received)
    stub.hold = 4  # 2 workers x --concurrency 2
    try:
        args = ["collect", str(prompts), "--models", ",".join(MODELS), "--judge", JUDGE, "--routes",
                str(routes_file), "--out", str(out), "--deadline", "5", "--engine", "ray", "--workers", "2",
                "--concurrency", "2"]  # fmt: skip
        result = CliRunner().invoke(cli, args)
    finally:
        stub.hold = 0
    assert result.exit_code == 0, result.output
    assert "6 rows written" in result.output and "3 pairs skipped as already done" in result.output
    assert "2 calls failed, 3 answers unscored" in result.output and "on the ray engine by 2 workers" in result.output
    assert _scored(out) == _scored(tmp_path / "local.jsonl")  # the same rows, in another order
    sent = set(_answered(stub, before))
    assert sent == {(t, m) for t in PROMPTS for m in MODELS} - {(r["text"], r["model"]) for r in done}
    assert stub.peak == 4  # two workers answered at once, each 2 pairs at most of the 9 pending
    assert len(_rows(tmp_path / "ray.errors.jsonl")) == 3  # the unscored answers (ok-garbled's), as locally
    sent_before = len(stub.received)  # a rerun with nothing pending starts no Ray actor and sends nothing
    again = collect(prompts, MODELS[:2], out, routes=routes_file, judge=JUDGE, engine="ray", progress=False)
    assert (again.skipped, again.written, again.workers) == (6, 0, 0) and len(stub.received) == sent_before


def test_a_missing_ray_is_one_line_naming_the_extra(stub, routes_file, tmp_path, monkeypatch):
    prompts, out = _prompts(tmp_path), tmp_path / "answers.jsonl"
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    before = len(stub.requests)
    with pytest.raises(ConfigError) as error:
        collect(prompts, MODELS, out, routes=routes_file, judge=JUDGE, engine="ray", progress=False)
    assert "pip install 'router-ml[ray]'" in str(error.value) and "\n" not in str(error.value)
    args = ["collect", str(prompts), "--models", MODELS[0], "--reference-column", "answer", "--routes",
            str(routes_file), "--out", str(out), "--engine", "ray"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0 and "router-ml[ray]" in result.output
    assert len(stub.requests) == before and not out.exists()


def test_importing_collect_loads_no_ray():
    code = "import router_ml.online.collect, router_ml.cli.collect, sys; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
