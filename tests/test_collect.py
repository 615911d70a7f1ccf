"""``router-ml collect`` against the loopback stub through the real dispatcher and litellm: judge and reference
scoring, resuming after a cut-off write or a killed run, failures, the concurrency limit and bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from router_ml.cli import cli
from router_ml.exceptions import ConfigError, DataError
from router_ml.online.collect import collect, collected_pairs
from router_ml.online.dispatch import Dispatcher
from router_ml.online.judge import JudgeError, grade_reference, judge_prompt, normalise, parse_judge_score
from router_ml.route_table import RouteTable
from router_ml.success import load_outcomes
from router_ml.testing.stub import StubLLMServer

KEY_ENV = "COLLECT_STUB_KEY"
SLOW = 0.4  # seconds a slow-* model takes
IN_PRICE, OUT_PRICE, COMPLETION_TOKENS = 100.0, 200.0, 12  # the stub's usage: len(prompt) // 4 and 12 tokens
# prompt: (reference, the good model's reply); the bad model always says "I think it is 41."
PROMPTS = {
    "What is 6 times 7?": ("42", "6 times 7 is 42."),
    "What is the capital of France?": ("Paris", "PARIS!"),
    "Add 1,200 and 34.": ("#### 1,234", "1200 + 34 = 1,234"),
}
MODELS = ["ok-good", "ok-bad", "ok-garbled", "ok-judge", "fail-x", "ok-down", "slow-a", "slow-b"]


def _answer(model: str, text: str) -> str:
    """The stub's replies: answers by model, and the judge's grades (none for a garbled answer)."""
    if text.startswith("You are grading"):
        answer = text.split("[Answer]\n", 1)[1].split("\n\n[Task]", 1)[0]
        if "garbled" in answer:
            return "I cannot grade this."
        return "Wrong.\nSCORE: 1" if answer.startswith("I think") else "Correct and clear.\n**Score:** 10/10"
    if model.endswith("bad"):
        return "I think it is 41."
    if model.endswith("garbled"):
        return "garbled output"
    return PROMPTS.get(text, ("", "ok"))[1]


@pytest.fixture(scope="module")
def stub(monkeypatch_module: pytest.MonkeyPatch):
    monkeypatch_module.setenv(KEY_ENV, "test-key")
    with StubLLMServer(slow_seconds=SLOW, seed=3, answer=_answer) as server:
        yield server


@pytest.fixture(scope="module")
def table(stub: StubLLMServer) -> RouteTable:
    models = {
        f"openai/{m}": {"api_base": stub.base_url, "api_key_env": KEY_ENV, "timeout": 5.0,
                        "input_price": IN_PRICE, "output_price": OUT_PRICE}
        for m in MODELS
    }  # fmt: skip
    return RouteTable.from_dict({"routes": {"any": {"model": "openai/ok-good"}}, "models": models}, "<collect test>")


@pytest.fixture(scope="module")
def routes_file(table: RouteTable, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return table.save(tmp_path_factory.mktemp("routes") / "routes.toml")


def _prompts(folder: Path, name: str = "prompts.jsonl") -> Path:
    path = folder / name
    rows = [{"text": t, "answer": ref, "source": f"quiz:arith:{i}"} for i, (t, (ref, _)) in enumerate(PROMPTS.items())]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _pairs(path: Path) -> list[tuple[str, str]]:
    return [(r["text"], r["model"]) for r in _rows(path)]


def _call_cost(text: str) -> float:
    return (max(1, len(text) // 4) * IN_PRICE + COMPLETION_TOKENS * OUT_PRICE) / 1e6


def test_judge_scores_end_to_end_through_the_cli(stub, routes_file, tmp_path):
    prompts, out = _prompts(tmp_path), tmp_path / "answers.jsonl"
    before = len(stub.requests)
    args = ["collect", str(prompts), "--models", "openai/ok-good,openai/ok-bad", "--judge", "openai/ok-judge",
            "--routes", str(routes_file), "--out", str(out), "--concurrency", "2"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "6 rows written" in result.output and "0 calls failed" in result.output
    assert "cost $" in result.output  # the progress bar's postfix
    assert len(stub.requests) - before == 12  # 6 answers and 6 judgings
    rows = _rows(out)
    assert sorted(_pairs(out)) == sorted((t, f"openai/{m}") for t in PROMPTS for m in ("ok-good", "ok-bad"))
    for row in rows:
        assert row["score"] == (1.0 if row["model"] == "openai/ok-good" else 0.0)
        assert row["cost"] == pytest.approx(_call_cost(row["text"]))
        assert row["judge"] == "openai/ok-judge" and row["source"].startswith("quiz:arith:") and "error" not in row
    judged = [r.body["messages"][-1]["content"] for r in stub.sent_to("ok-judge")[-6:]]
    assert judge_prompt("What is 6 times 7?", "6 times 7 is 42.") in judged  # the question and the answer
    total = sum(r["cost"] for r in rows) + sum(_call_cost(p) for p in judged)
    assert f"cost: ${total:.4f}" in result.output
    outcomes = load_outcomes(out, group_column="source")
    assert outcomes.models == ["openai/ok-bad", "openai/ok-good"] and len(outcomes) == 3
    assert outcomes.scores.tolist() == [[0.0, 1.0]] * 3 and outcomes.groups == ["quiz:arith"] * 3
    assert outcomes.costs is not None and (outcomes.costs > 0).all()


def test_a_judge_reply_without_a_score_is_an_error_not_a_guess(stub, table, tmp_path):
    prompts, out = _prompts(tmp_path), tmp_path / "answers.jsonl"
    models = ["openai/ok-good", "openai/ok-garbled"]
    summary = collect(prompts, models, out, routes=table, judge="openai/ok-judge", progress=False)
    assert (summary.written, summary.unscored, summary.failed, summary.remaining) == (3, 3, 0, 3)
    assert {m for _, m in _pairs(out)} == {"openai/ok-good"}
    errors = _rows(summary.errors)
    assert summary.errors == tmp_path / "answers.errors.jsonl" and len(errors) == 3
    assert all("SCORE: N" in e["error"] and "I cannot grade this" in e["error"] for e in errors)
    assert "3 answers unscored by the judge" in summary.format() and "run the same command again" in summary.format()
    before = len(stub.requests)
    again = collect(prompts, models, out, routes=table, judge="openai/ok-judge", progress=False)
    assert (again.skipped, again.unscored) == (3, 3) and len(stub.requests) - before == 6  # asked again, 3 x 2


def test_reference_column_grades_by_exact_match(stub, table, tmp_path):
    prompts = tmp_path / "quiz.csv"
    lines = ["question,answer"] + [f'"{t}","{ref}"' for t, (ref, _) in PROMPTS.items()]
    prompts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "graded.jsonl"
    summary = collect(prompts, ["openai/ok-good", "openai/ok-bad"], out, routes=table, reference_column="answer",
                      text_column="question", progress=False)  # fmt: skip
    assert (summary.written, summary.skipped, summary.failed, summary.judge_cost) == (6, 0, 0, 0.0)
    scores = {(r["text"], r["model"]): r["score"] for r in _rows(out)}
    assert scores == {(t, f"openai/{m}"): float(m == "ok-good") for t in PROMPTS for m in ("ok-good", "ok-bad")}
    assert all("source" not in r and "judge" not in r for r in _rows(out))  # no source column: none carried
    assert summary.cost == pytest.approx(sum(r["cost"] for r in _rows(out)))
    assert load_outcomes(out).scores.sum() == 3


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("So she has 18 dollars left.", "#### 18", 1.0),
        ("18 dollars, after 3 days", "18", 0.0),  # the last number counts
        ("The total is $1,234.00", "1234", 1.0),
        ("It is -7.", "-7", 1.0),
        ("No number here", "5", 0.0),
        ("  Paris. ", "paris", 1.0),
        ("The capital is Paris", "Paris", 0.0),  # exact match, not containment
        ("New-York!", "new york", 1.0),
        ("", "", 0.0),
    ],
)
def test_reference_grading(answer, reference, expected):
    assert grade_reference(answer, reference) == expected


@pytest.mark.parametrize(
    ("reply", "score"),
    [("SCORE: 10", 1.0), ("Fine.\nSCORE: 1", 0.0), ("score = 4", 1 / 3), ("**Score:** 7/10", 2 / 3),
     ("SCORE: 2 at first, then SCORE: 8", 7 / 9)],
)  # fmt: skip
def test_judge_scores_are_normalised_from_one_to_ten(reply, score):
    assert parse_judge_score(reply) == pytest.approx(score)


@pytest.mark.parametrize(
    "reply", ["I cannot grade this.", "SCORE: 0", "SCORE: -3", "SCORE: 11", "SCORE: 4/5", "", "9/10"]
)
def test_a_judge_reply_without_a_valid_score_raises(reply):
    with pytest.raises(JudgeError, match="judge"):
        parse_judge_score(reply)


def test_normalise():
    assert normalise("  Hello,\tWORLD!! ") == "hello world"


def test_resume_after_a_cut_off_write_sends_only_the_missing_pairs(stub, table, tmp_path):
    prompts, out = _prompts(tmp_path), tmp_path / "answers.jsonl"
    models = ["openai/ok-good", "openai/ok-bad"]
    first = collect(prompts, models, out, routes=table, reference_column="answer", progress=False)
    assert first.written == 6
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed in the middle of the third row
    kept = {(json.loads(line)["text"], json.loads(line)["model"]) for line in lines[:2]}
    before = len(stub.requests)
    second = collect(prompts, models, out, routes=table, reference_column="answer", progress=False)
    assert (second.skipped, second.written, second.truncated) == (2, 4, True)
    assert "dropped a cut-off last line" in second.format()
    sent = {(r.body["messages"][-1]["content"], f"openai/{r.model}") for r in stub.received[before:]}
    assert len(stub.requests) - before == 4 and sent == {(t, m) for t in PROMPTS for m in models} - kept
    pairs = _pairs(out)
    assert len(pairs) == len(set(pairs)) == 6
    third = collect(prompts, models, out, routes=table, reference_column="answer", progress=False)
    assert (third.skipped, third.written, third.truncated) == (6, 0, False) and len(_pairs(out)) == 6


def test_a_whole_last_row_without_its_newline_is_kept(tmp_path):
    out = tmp_path / "answers.jsonl"
    out.write_text('{"text": "a", "model": "m", "score": 1}\n{"text": "b", "model": "m", "score": 0}')
    assert collected_pairs(out) == ({("a", "m"), ("b", "m")}, False)
    assert out.read_text().endswith("}\n") and len(load_outcomes(out)) == 2


def test_a_killed_run_resumes_without_duplicates(stub, routes_file, tmp_path):
    prompts, out = _prompts(tmp_path), tmp_path / "answers.jsonl"
    args = [sys.executable, "-m", "router_ml", "collect", str(prompts), "--models", "openai/slow-a,openai/slow-b",
            "--reference-column", "answer", "--routes", str(routes_file), "--out", str(out),
            "--concurrency", "1"]  # fmt: skip
    process = subprocess.Popen(args, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while (not out.exists() or out.read_bytes().count(b"\n") < 2) and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it was killed"
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait(10)
    done, _ = collected_pairs(out)
    assert 2 <= len(done) < 6
    before = len(stub.requests)
    summary = collect(prompts, ["openai/slow-a", "openai/slow-b"], out, routes=routes_file,
                      reference_column="answer", progress=False)  # fmt: skip
    assert summary.skipped == len(done) and summary.written == 6 - len(done)
    assert len(stub.requests) - before == 6 - len(done)  # only the missing pairs are sent
    pairs = _pairs(out)
    assert len(pairs) == len(set(pairs)) == 6


def test_failed_calls_are_zero_rows_unless_skipped(stub, table, routes_file, tmp_path):
    prompts, out = _prompts(tmp_path), tmp_path / "answers.jsonl"
    summary = collect(prompts, ["openai/ok-good", "openai/fail-x"], out, routes=table, reference_column="answer",
                      progress=False, deadline=5.0)  # fmt: skip
    assert (summary.written, summary.failed, summary.failures_written) == (6, 3, 3)
    failed = [r for r in _rows(out) if r["model"] == "openai/fail-x"]
    assert len(failed) == 3 and all(r["score"] == 0.0 and "every model failed" in r["error"] for r in failed)
    assert all("cost" not in r for r in failed)  # a failed call's price is unknown, not 0
    assert load_outcomes(out).scores.tolist() == [[0.0, 1.0]] * 3
    assert "3 calls failed" in summary.format()

    skipped_out = tmp_path / "skipped.jsonl"
    stub.down.add("ok-down")
    try:
        args = ["collect", str(prompts), "--models", "openai/ok-good,openai/ok-down", "--reference-column", "answer",
                "--routes", str(routes_file), "--out", str(skipped_out), "--skip-failures"]  # fmt: skip
        result = CliRunner().invoke(cli, args)
    finally:
        stub.down.discard("ok-down")
    assert result.exit_code == 0, result.output
    assert "3 rows written" in result.output and "3 calls failed" in result.output
    assert {m for _, m in _pairs(skipped_out)} == {"openai/ok-good"}
    assert len(_rows(tmp_path / "skipped.errors.jsonl")) == 3
    before = len(stub.requests)
    again = collect(prompts, ["openai/ok-good", "openai/ok-down"], skipped_out, routes=table,
                    reference_column="answer", skip_failures=True, progress=False)  # fmt: skip
    assert (again.skipped, again.written, again.failed) == (3, 3, 0)
    assert stub.requests[before:] == ["ok-down"] * 3  # only the failed pairs are retried
    assert len(set(_pairs(skipped_out))) == 6


def test_the_concurrency_limit_is_respected(stub, table, tmp_path, monkeypatch):
    prompts, out = _prompts(tmp_path), tmp_path / "answers.jsonl"
    original, state = Dispatcher.acomplete, {"now": 0, "peak": 0}

    async def counted(self: Dispatcher, *args: Any, **kwargs: Any) -> Any:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        try:
            return await original(self, *args, **kwargs)
        finally:
            state["now"] -= 1

    monkeypatch.setattr(Dispatcher, "acomplete", counted)
    started = time.perf_counter()
    summary = collect(prompts, ["openai/slow-a", "openai/slow-b"], out, routes=table, reference_column="answer",
                      concurrency=4, progress=False)  # fmt: skip
    elapsed = time.perf_counter() - started
    assert summary.written == 6 and state["peak"] == 4  # 6 slow calls, never more than 4 at once
    assert elapsed >= 2 * SLOW  # two waves at least
    state["peak"] = 0
    one = collect(prompts, ["openai/slow-a"], tmp_path / "one.jsonl", routes=table, reference_column="answer",
                  concurrency=1, progress=False)  # fmt: skip
    assert one.written == 3 and state["peak"] == 1


@pytest.mark.parametrize(
    ("name", "content", "where", "what"),
    [
        (
            "p.jsonl",
            '{"text": "a", "answer": 1}\n{"text": "b", "answer": 2}\n{"prompt": "c", "answer": 3}\n',
            "p.jsonl:3",
            "non-empty string in 'text'",
        ),
        ("p.jsonl", '{"text": "a", "answer": 1}\n[1, 2]\n', "p.jsonl:2", "expected a JSON object"),
        ("p.csv", "prompt,answer\nhi,1\n", "p.csv:1", "missing ['text']"),
        ("p.csv", "text,answer\nhi,1\nthere,\n", "p.csv:3", "no reference answer in 'answer'"),
        ("p.jsonl", '{"text": "a", "answer": "1", "source": {"x": 1}}\n', "p.jsonl:1", "'source' must be a string"),
        ("p.txt", "hello\n", "p.txt", "unsupported file type"),
    ],
)
def test_bad_prompts_name_the_file_and_line(stub, routes_file, tmp_path, name, content, where, what):
    (tmp_path / name).write_text(content, encoding="utf-8")
    before = len(stub.requests)
    args = ["collect", str(tmp_path / name), "--models", "openai/ok-good", "--reference-column", "answer",
            "--routes", str(routes_file), "--out", str(tmp_path / "out.jsonl")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert f"{tmp_path / where}" in result.output and what in result.output
    assert len(stub.requests) == before and not (tmp_path / "out.jsonl").exists()


def test_a_corrupt_outcomes_file_names_its_line(stub, table, tmp_path):
    prompts, out = _prompts(tmp_path), tmp_path / "answers.jsonl"
    out.write_text('{"text": "a", "model": "m", "score": 1}\nnot json\n{"text": "b", "model": "m", "score": 0}\n')
    with pytest.raises(DataError, match=rf"{out}:2: expected an outcome row .* fix or remove the line"):
        collect(prompts, ["openai/ok-good"], out, routes=table, reference_column="answer", progress=False)


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"judge": "openai/ok-judge", "reference_column": "answer"}, "got both"),
        ({}, "got neither"),
        ({"judge": "openai/nope"}, "no model ['openai/nope']"),
        ({"reference_column": "answer", "out": "answers.csv"}, "must be .jsonl"),
        ({"reference_column": "answer", "models": [" ", ""]}, "no models to collect"),
        ({"reference_column": "answer", "concurrency": 0}, "at least 1"),
        ({"reference_column": "answer", "engine": "spark"}, "engine must be one of local, ray"),
        ({"reference_column": "answer", "address": "ray://head:10001"}, "is for the ray engine; add --engine ray"),
        ({"reference_column": "answer", "engine": "ray", "workers": 0}, "workers must be at least 1"),
    ],
)
def test_bad_options_are_refused_before_any_call(stub, table, tmp_path, kwargs, what):
    options = {"models": ["openai/ok-good"], "out": "answers.jsonl", **kwargs}
    before = len(stub.requests)
    with pytest.raises(ConfigError, match=re.escape(what)):
        collect(_prompts(tmp_path), options.pop("models"), tmp_path / options.pop("out"), routes=table, **options)
    assert len(stub.requests) == before
