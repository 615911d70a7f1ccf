"""Per-model outcome data: long and wide rows from JSONL/CSV files and records, merged per prompt; errors that
name file:line; the outcome log's scored answers exported as rows the loader reads back."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from router_ml.cli import cli
from router_ml.exceptions import DataError
from router_ml.online.outcome import Attempt, Outcome
from router_ml.online.store import OutcomeStore
from router_ml.success import Outcomes, from_records, group_key, load_outcomes

SHARED = Path("/work/shared/outcomes")
NAN = math.nan


def jsonl(path: Path, *rows: object) -> Path:
    """Write rows (dicts, or raw lines given as str) as a JSONL file."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def csv_file(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def matrix(outcomes: Outcomes) -> list[list[float | None]]:
    """The score matrix with NaN as None, for exact comparison."""
    return [[None if math.isnan(v) else v for v in row] for row in outcomes.scores.tolist()]


def test_long_jsonl_rows(tmp_path):
    path = jsonl(
        tmp_path / "long.jsonl",
        {"text": "What is 2+2?", "model": "strong", "score": 1, "cost": 0.002},
        {"text": "What is 2+2?", "model": "weak", "score": 0.0},
        {"text": "Name a prime.", "model": "weak", "score": True, "cost": 0.0005},
    )
    o = load_outcomes(path)
    assert o.texts == ["What is 2+2?", "Name a prime."] and o.models == ["strong", "weak"]
    assert matrix(o) == [[1.0, 0.0], [None, 1.0]]
    assert o.scores.dtype == np.float64 and o.costs is not None
    assert np.array_equal(o.costs, [[0.002, NAN], [NAN, 0.0005]], equal_nan=True)
    assert o.origins == [f"{path}:1", f"{path}:3"] and o.groups is None and o.repeated == 0
    assert len(o) == 2 and o.coverage == pytest.approx(0.75)


def test_long_csv_rows(tmp_path):
    path = csv_file(
        tmp_path / "long.csv",
        "text,model,score,cost",
        '"Sort this list, please",a,0.5,0.01',
        "Sort this list,b,true,",
        "Sort this list,a,FALSE,",
    )
    o = load_outcomes(path)
    assert o.texts == ["Sort this list, please", "Sort this list"] and o.models == ["a", "b"]
    assert matrix(o) == [[0.5, None], [0.0, 1.0]]
    assert np.array_equal(o.costs, [[0.01, NAN], [NAN, NAN]], equal_nan=True)
    assert o.origins == [f"{path}:2", f"{path}:3"]


def test_wide_jsonl_rows_without_costs(tmp_path):
    path = jsonl(
        tmp_path / "wide.jsonl",
        {"text": "q1", "source": "mmlu:anatomy:1", "scores": {"m2": 1.0, "m1": 0.0}},
        "",  # blank lines are skipped
        {"text": "q2", "source": "mmlu:anatomy:2", "scores": {"m1": 0.25}},
    )
    o = load_outcomes([path], group_column="source")
    assert o.models == ["m1", "m2"] and matrix(o) == [[0.0, 1.0], [0.25, None]]
    assert o.costs is None and o.groups == ["mmlu:anatomy", "mmlu:anatomy"]
    assert o.origins == [f"{path}:1", f"{path}:3"]


def test_wide_csv_rows_hold_scores_as_json(tmp_path):
    path = csv_file(
        tmp_path / "wide.csv",
        "text,scores,source",
        'q1,"{""m1"": 1, ""m2"": 0.5}",gsm8k:test:1',
        'q2,"{""m2"": false}",gsm8k:test:2',
    )
    o = load_outcomes(path, group_column="source")
    assert matrix(o) == [[1.0, 0.5], [None, 0.0]] and o.groups == ["gsm8k:test", "gsm8k:test"]


def test_files_and_shapes_are_merged_per_prompt(tmp_path):
    wide = jsonl(
        tmp_path / "a.jsonl", {"text": "shared", "scores": {"x": 1}}, {"text": "only wide", "scores": {"y": 0}}
    )
    mixed = csv_file(
        tmp_path / "b.csv",
        "text,model,score,scores",
        "shared,y,0.5,",  # long row in the second file, same prompt as the first file's first row
        'only csv,,,"{""x"": 0.75}"',  # a wide row in the same CSV file
    )
    o = load_outcomes([wide, str(mixed)])
    assert o.texts == ["shared", "only wide", "only csv"] and o.models == ["x", "y"]
    assert matrix(o) == [[1.0, 0.5], [None, 0.0], [0.75, None]]
    assert o.origins == [f"{wide}:1", f"{wide}:2", f"{mixed}:3"] and o.repeated == 0


def test_sparse_logs_one_model_per_prompt(tmp_path):
    rows = [{"text": f"prompt {i}", "model": ["a", "b", "c"][i % 3], "score": i % 2} for i in range(9)]
    o = load_outcomes(jsonl(tmp_path / "sparse.jsonl", *rows))
    assert o.scores.shape == (9, 3) and o.coverage == pytest.approx(1 / 3)
    assert o.observed("b").tolist() == [i % 3 == 1 for i in range(9)]
    assert (np.isfinite(o.scores).sum(axis=1) == 1).all()
    with pytest.raises(DataError, match=r"no outcomes for model 'd'; the models are \['a', 'b', 'c'\]"):
        o.observed("d")


def test_repeated_pairs_are_averaged_and_counted(tmp_path):
    path = jsonl(
        tmp_path / "rep.jsonl",
        {"text": "q", "model": "a", "score": 1, "cost": 0.004},
        {"text": "q", "model": "a", "score": 0},
        {"text": "q", "model": "a", "score": 0.5, "cost": 0.002},
        {"text": "q", "scores": {"b": 1}},
        {"text": "q", "scores": {"b": 0}},
        {"text": "r", "model": "a", "score": 1},
    )
    o = load_outcomes(path)
    assert o.repeated == 2  # (q, a) three times, (q, b) twice
    assert matrix(o) == [[0.5, 0.5], [1.0, None]]
    assert o.costs[0, 0] == pytest.approx(0.003)  # the mean over the rows that carry a cost


def test_subset_keeps_every_column(tmp_path):
    path = jsonl(
        tmp_path / "s.jsonl",
        *({"text": f"t{i}", "source": f"d:g{i % 2}:{i}", "scores": {"a": i / 4}} for i in range(4)),
    )
    o = load_outcomes(path, group_column="source")
    part = o.subset([3, 1])
    assert part.texts == ["t3", "t1"] and part.groups == ["d:g1", "d:g1"] and matrix(part) == [[0.75], [0.25]]
    assert part.origins == [f"{path}:4", f"{path}:2"] and part.models == ["a"]
    assert o.subset([]).coverage == 0.0


def test_outcomes_refuse_inconsistent_shapes():
    with pytest.raises(DataError, match=r"shape \(1, 2\)"):
        Outcomes(["q"], ["a", "b"], np.zeros((1, 1)), ["<x>:0"])


@pytest.mark.parametrize(
    ("name", "lines", "line", "message"),
    [
        ("a.jsonl", ['{"text": "q", "model": "a", "score": 1}', "{not json"], 2, "invalid JSON"),
        ("a.jsonl", ["[1, 2]"], 1, "expected a JSON object"),
        ("a.jsonl", ['{"text": "  ", "model": "a", "score": 1}'], 1, "text is empty"),
        ("a.jsonl", ['{"model": "a", "score": 1}'], 1, "no 'text' column"),
        ("a.jsonl", ['{"text": "q", "label": "code"}'], 1, "neither 'scores'"),
        ("a.jsonl", ['{"text": "q", "score": 1}'], 1, "'model' must name the model"),
        ("a.jsonl", ['{"text": "q", "model": "a"}'], 1, "no 'score' for model 'a'"),
        ("a.jsonl", ['{"text": "q", "model": "a", "score": 1.5}'], 1, r"'score' must be in \[0, 1\], found 1.5"),
        ("a.jsonl", ['{"text": "q", "model": "a", "score": "up"}'], 1, "'score' must be a number, found str"),
        ("a.jsonl", ['{"text": "q", "model": "a", "score": NaN}'], 1, "no 'score'"),
        ("a.jsonl", ['{"text": "q", "model": "a", "score": Infinity}'], 1, "give a finite number"),
        ("a.jsonl", ['{"text": "q", "model": "a", "score": 1, "cost": -1}'], 1, "non-negative number of USD"),
        ("a.jsonl", ['{"text": "q", "scores": {"a": 2}}'], 1, r"the score of 'a' must be in \[0, 1\]"),
        ("a.jsonl", ['{"text": "q", "scores": {"a": "1"}}'], 1, "the score of 'a' must be a number"),
        ("a.jsonl", ['{"text": "q", "scores": []}'], 1, "must be a non-empty object"),
        ("a.jsonl", ['{"text": "q", "scores": {"a": 1}, "model": "a"}'], 1, "split it into two rows"),
        ("a.csv", ["text,model,score", "q,a,0.5", "q,a,abc"], 3, "'score' must be a number, found 'abc'"),
        ("a.csv", ["text,model,score", "q,a,nan"], 2, "give a finite number"),
        ("a.csv", ["text,model,score", "q,a,1,extra"], 2, "more fields than the header"),
        ("a.csv", ["text,scores", 'q,"{bad"'], 2, "'scores' is not valid JSON"),
        ("a.csv", ["prompt,model,score", "q,a,1"], 1, "expected columns 'text' and either"),
        ("a.csv", ["text,model", "q,a"], 1, "expected columns 'text' and either"),
    ],
)
def test_errors_name_file_and_line(tmp_path, name, lines, line, message):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{re.escape(str(path))}:{line}: .*{message}"):
        load_outcomes(path)


def test_a_missing_group_names_its_row(tmp_path):
    path = jsonl(
        tmp_path / "g.jsonl", {"text": "q", "source": "a:b:1", "scores": {"m": 1}}, {"text": "r", "scores": {"m": 0}}
    )
    with pytest.raises(DataError, match=f"{re.escape(str(path))}:2: no 'source' value.*group_column='source'"):
        load_outcomes(path, group_column="source")
    assert load_outcomes(path).groups is None  # without group_column the column is not needed


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "no outcome rows"), ("\n\n", "no outcome rows")],
)
def test_empty_files_are_refused(tmp_path, content, message):
    for name in ("e.jsonl", "e.csv"):
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        expected = "the CSV file is empty" if name.endswith(".csv") else message
        with pytest.raises(DataError, match=f"{re.escape(str(path))}: {expected}"):
            load_outcomes([jsonl(tmp_path / "ok.jsonl", {"text": "q", "model": "a", "score": 1}), path])


def test_header_only_csv_and_bad_inputs(tmp_path):
    header_only = csv_file(tmp_path / "h.csv", "text,model,score")
    with pytest.raises(DataError, match=f"{re.escape(str(header_only))}: no outcome rows"):
        load_outcomes(header_only)
    with pytest.raises(DataError, match="no outcome files given"):
        load_outcomes([])
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'"):
        load_outcomes(tmp_path / "x.txt")
    with pytest.raises(DataError, match="cannot read"):
        load_outcomes(tmp_path / "missing.jsonl")


def test_from_records_validates_like_files():
    records = [
        {"text": "q", "model": "a", "score": np.float32(0.5), "source": "set:g:1"},
        {"text": "q", "scores": '{"b": 1}', "source": "set:g:2"},  # a JSON string, as a CSV frame would hold
        {"text": "r", "model": "b", "score": np.bool_(True), "cost": NAN, "source": "set:h:3"},  # NaN cost: none
    ]
    o = from_records(records, group_column="source")
    assert matrix(o) == [[0.5, 1.0], [None, 1.0]] and o.groups == ["set:g", "set:h"] and o.costs is None
    assert o.origins == ["<records>:0", "<records>:2"]
    with pytest.raises(DataError, match=r"<log>:1: 'score' must be in \[0, 1\], found -0.5"):
        from_records([records[0], {"text": "q", "model": "a", "score": -0.5}], origin="<log>")
    with pytest.raises(DataError, match="<records>:0: expected a mapping"):
        from_records([["q", "a", 1]])  # type: ignore[list-item]
    with pytest.raises(DataError, match="<records>: no outcome rows"):
        from_records([])
    custom = from_records(
        [{"prompt": "q", "llm": "a", "ok": 1}], text_column="prompt", model_column="llm", score_column="ok"
    )
    assert custom.models == ["a"] and matrix(custom) == [[1.0]]


@pytest.mark.parametrize(
    ("value", "group"),
    [
        ("mmlu:abstract_algebra:12", "mmlu:abstract_algebra"),
        ("dcrouter:train:2:417", "dcrouter:train:2"),
        ("gsm8k:test:548", "gsm8k:test"),
        ("online:abc123:req-1", "online:abc123"),
        ("mmlu:anatomy", "mmlu:anatomy"),
        ("customer-7", "customer-7"),
        (" a:b:c ", "a:b"),
    ],
)
def test_group_key(value, group):
    assert group_key(value) == group


@pytest.mark.parametrize(
    ("name", "shape", "groups", "repeated"),
    [
        # 8,804 lines, 26 prompts of which appear twice (same subject, same scores): merged into 8,778 rows
        ("routellm-mmlu.jsonl", (8778, 2), 40, 52),
        ("routellm-gsm8k.jsonl", (653, 2), 1, 0),
        ("dcrouter-train.jsonl", (5608, 9), 3, 0),
    ],
)
def test_the_public_outcome_sets_load_quickly(name, shape, groups, repeated):
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    started = time.perf_counter()
    o = load_outcomes(path, group_column="source")
    assert time.perf_counter() - started < 2.0
    assert o.scores.shape == shape and len(set(o.groups)) == groups and o.repeated == repeated
    assert o.coverage == 1.0 and o.costs is None and ((o.scores >= 0) & (o.scores <= 1)).all()
    if name.startswith("dcrouter"):
        assert sorted(set(o.groups)) == ["dcrouter:train:0", "dcrouter:train:1", "dcrouter:train:2"]


# -- the outcome log's scored answers ----------------------------------------------------------------------------
def logged(
    request_id: str, text: str | None, chain: list[str], status: str = "ok", cost: float | None = 0.001
) -> Outcome:
    """An outcome whose attempts fail along ``chain`` until its last model answers (when ``status`` is ok)."""
    now = time.time()
    attempts = [Attempt(m, "error", "RateLimitError", "429") for m in chain[:-1]]
    answered = status == "ok"
    attempts.append(Attempt(chain[-1], "ok" if answered else "error", None if answered else "APIError"))
    return Outcome(
        request_id=request_id, started_at=now, finished_at=now + 0.1, status=status, router_version="r1",
        label="code", predicted="code", attempts=attempts, model=chain[-1] if answered else None,
        cost_usd=cost if answered else None, prompt_text=text,
    )  # fmt: skip


def test_export_outcomes_round_trip(store_db, tmp_path):
    db = str(store_db())
    with OutcomeStore(db) as store:
        store.record(logged("plain", "Reverse a list in Go", ["openai/gpt-5"], cost=0.002))
        store.record(logged("fell-back", "Fix this SQL", ["openai/gpt-5", "anthropic/claude-sonnet-4-5"]))
        store.record(logged("failed", "Explain monads", ["openai/gpt-5", "gemini/gemini-2.5-pro"], status="error"))
        store.record(logged("hashed", None, ["openai/gpt-5"]))
        store.record(logged("label-only", "Write a haiku", ["openai/gpt-5"]))
        store.record(logged("no-cost", "Sum a column", ["openai/gpt-5-mini"], cost=None))
        store.record(logged("unscored", "Say hi", ["openai/gpt-5"]))
        store.add_feedback("plain", score="up")
        store.add_feedback("fell-back", score=0.25)
        store.add_feedback("fell-back", score="0.75")  # the latest score wins
        store.add_feedback("failed", score="down")
        store.add_feedback("hashed", score=1)
        store.add_feedback("label-only", label="creative")
        store.add_feedback("no-cost", score=0, comment="wrong total")
        assert store.get("fell-back").attempts[0].model == "openai/gpt-5"  # routed there first, answered elsewhere
    out = tmp_path / "scored.jsonl"
    result = CliRunner().invoke(cli, ["outcomes", "export", str(out), "--kind", "outcomes", "--db", db])
    assert result.exit_code == 0, result.output
    assert f"wrote 3 scored answers to {out}, and a 0 for each of 3 failed model calls" in result.output
    assert "1 requests (scored, or with a failed call) could not be exported" in result.output  # no prompt text
    assert "1 scored requests were left out: no model answered them in full" in result.output
    rows = {(r["source"], r["model"]): r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert rows["online:r1:fell-back", "anthropic/claude-sonnet-4-5"] == {
        "text": "Fix this SQL", "model": "anthropic/claude-sonnet-4-5", "score": 0.75, "cost": 0.001,
        "source": "online:r1:fell-back", "route": "code", "propensity": None, "explored": False, "fell_back": True,
        "automatic": False,
    }  # fmt: skip
    assert rows["online:r1:fell-back", "openai/gpt-5"]["automatic"] is True  # the failed first call: a 0
    assert "cost" not in rows["online:r1:no-cost", "openai/gpt-5-mini"]

    o = load_outcomes(out, group_column="source")
    assert sorted(o.texts) == ["Explain monads", "Fix this SQL", "Reverse a list in Go", "Sum a column"]
    assert o.models == ["anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-pro", "openai/gpt-5", "openai/gpt-5-mini"]
    by_text = dict(zip(o.texts, matrix(o), strict=True))
    assert by_text == {
        "Reverse a list in Go": [None, None, 1.0, None], "Fix this SQL": [0.75, None, 0.0, None],
        "Explain monads": [None, 0.0, 0.0, None], "Sum a column": [None, None, None, 0.0],
    }  # fmt: skip
    costs = dict(zip(o.texts, o.costs.tolist(), strict=True))
    assert costs["Reverse a list in Go"][2] == 0.002 and costs["Fix this SQL"][0] == 0.001
    assert np.isnan(costs["Fix this SQL"][2])  # an automatic 0 carries no cost
    assert o.groups == ["online:r1"] * 4


def test_export_kinds_keep_their_options_apart(store_db, tmp_path):
    db = str(store_db())
    with OutcomeStore(db) as store:
        store.record(logged("a", "Reverse a list in Go", ["openai/gpt-5"]))
        store.add_feedback("a", score=1)
    runner = CliRunner()
    labels = tmp_path / "labels.jsonl"
    result = runner.invoke(cli, ["outcomes", "export", str(labels), "--db", db])  # the default kind: labels
    assert result.exit_code == 0 and "1 confirmed" in result.output
    assert json.loads(labels.read_text(encoding="utf-8")) == {"text": "Reverse a list in Go", "label": "code"}
    mixed = runner.invoke(
        cli, ["outcomes", "export", str(tmp_path / "o.jsonl"), "--kind", "outcomes", "--min-score", "0.3", "--db", db]
    )
    assert mixed.exit_code == 2 and "--min-score applies to --kind labels only" in mixed.output
    assert not (tmp_path / "o.jsonl").exists()
