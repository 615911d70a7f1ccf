"""The outcome log's behaviour, on SQLite and (with $ROUTER_ML_TEST_PG_URL) PostgreSQL: see the store_db fixture."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time

import pytest

from router_ml.data import load_file
from router_ml.exceptions import ConfigError, DataError, StoreError
from router_ml.online.db import Database, mask_url, resolve_target
from router_ml.online.outcome import Attempt, Feedback, Outcome
from router_ml.online.schema import m001_outcomes, m002_feedback
from router_ml.online.store import OutcomeStore

MIGRATIONS = [
    "m001_outcomes",
    "m002_feedback",
    "m003_instructions_and_sticky",
    "m004_session_pins",
    "m005_exploration",
]


def make(i: int, label: str = "code", status: str = "ok", text: str | None = None) -> Outcome:
    now = time.time()
    return Outcome(
        request_id=f"req-{i}", started_at=now, finished_at=now + 0.2, status=status, label=label, predicted=label,
        confidence=0.9, probabilities={label: 0.9, "simple": 0.1}, model=f"openai/{label}",
        attempts=[Attempt(f"openai/{label}", "ok", latency_ms=150.0)], routing_ms=5.0, provider_ms=150.0,
        prompt_tokens=10, completion_tokens=20, cost_usd=0.001, prompt_text=text or f"prompt number {i}",
    )  # fmt: skip


def test_schema_is_migrated_once(store_db):
    with OutcomeStore(store_db()) as store:
        assert store.migrations() == MIGRATIONS
        store.record(make(1))
    with OutcomeStore(store_db()) as store:  # reopening applies nothing twice and keeps the rows
        assert store.migrations() == MIGRATIONS
        assert store.count() == 1


def test_a_store_made_before_instructions_and_sessions_is_migrated_in_place(store_db):
    """A log written by the previous version (two migrations, a row) gains the new columns and the pins table."""
    db = Database(resolve_target(store_db()))
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for migrate in (m001_outcomes, m002_feedback):
        migrate(db)
        db.execute("INSERT INTO _migrations VALUES (?, ?)", (migrate.__name__, time.time()))
    old = (
        "INSERT INTO outcomes (request_id, started_at, finished_at, status, probabilities, abstained, attempts, "
        "routing_ms, provider_ms, stream) VALUES ('old-1', 1.0, 2.0, 'ok', '{}', 0, '[]', 0.0, 0.0, 0)"
    )
    db.execute(old)
    db.close()
    with OutcomeStore(store_db()) as store:
        assert store.migrations() == MIGRATIONS
        before = store.get("old-1")
        assert before.instructions_hash is None and before.sticky is False
        new = make(2)
        new.instructions_hash, new.sticky = "a0e8238c96958e57", True
        store.record(new)
        after = store.get("req-2")
        assert after.instructions_hash == "a0e8238c96958e57" and after.sticky is True


def test_sqlite_file_is_in_wal_mode(tmp_path):
    with OutcomeStore(tmp_path / "o.db"):
        pass
    db = sqlite3.connect(tmp_path / "o.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_location_from_environment(store_db, monkeypatch):
    monkeypatch.setenv("ROUTER_ML_DB", str(store_db()))
    with OutcomeStore() as store:
        store.record(make(1))
    with OutcomeStore(store_db()) as store:
        assert store.get("req-1").label == "code"


def test_sqlite_urls_and_unknown_schemes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with OutcomeStore("sqlite:///relative.db") as store:  # SQLAlchemy's spelling: 3 slashes, then a relative path
        store.record(make(1))
    with OutcomeStore(f"sqlite:///{tmp_path}/absolute.db") as store:  # 4 slashes: an absolute path
        store.record(make(2))
    assert (tmp_path / "relative.db").is_file() and (tmp_path / "absolute.db").is_file()
    assert resolve_target("postgres://u@h/db").kind == resolve_target("postgresql://u@h/db").kind == "postgresql"
    with pytest.raises(ConfigError, match=r"cannot use 'mysql://u:\*\*\*@h/db' .* expected a file path, sqlite:///"):
        OutcomeStore("mysql://u:secret@h/db")
    with pytest.raises(ConfigError, match="cannot use 'sqlite://'"):
        OutcomeStore("sqlite://")  # in-memory: each connection would see its own empty database


def test_passwords_are_masked():
    assert mask_url("postgresql://router:p@ss:w0rd@db:5432/log") == "postgresql://router:***@db:5432/log"
    assert mask_url("postgresql://db/log?user=r&password=s3cret&sslmode=require") == (
        "postgresql://db/log?user=r&password=***&sslmode=require"
    )
    assert mask_url("postgresql://router@db/log") == "postgresql://router@db/log"


def test_a_request_id_is_logged_once(store_db):
    with OutcomeStore(store_db()) as store:
        store.record(make(1, label="code"))
        store.record(make(1, label="simple"))  # a replayed id neither fails the batch nor overwrites the first
        store.record(make(2))
        assert store.count() == 2
        assert store.get("req-1").label == "code"


def test_a_refused_row_costs_only_itself(tmp_path):
    with OutcomeStore(tmp_path / "o.db") as store:
        db = sqlite3.connect(tmp_path / "o.db")
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON outcomes WHEN NEW.status = 'boom' "
                   "BEGIN SELECT RAISE(ABORT, 'no'); END")  # fmt: skip
        db.close()
        for i, status in enumerate(["ok", "boom", "ok"]):
            store.record(make(i, status=status))
        with pytest.raises(StoreError, match=r"could not write to the outcome store .*o\.db: 1 outcome \(no\)"):
            store.flush()
        store.record(make(3))  # the writer carries on
        store.flush()
        assert sorted(r.request_id for r in store.outcomes()) == ["req-0", "req-2", "req-3"]


def test_nul_characters_in_text(store_db):
    with OutcomeStore(store_db()) as store:
        store.record(make(1, text="before\x00after"))
        stored = store.get("req-1").prompt_text
    assert stored in ("before\x00after", "before\ufffdafter")  # PostgreSQL text cannot hold NUL: U+FFFD instead


def test_concurrent_writers_lose_nothing(store_db):
    with OutcomeStore(store_db()) as store:
        threads = [
            threading.Thread(target=lambda k=k: [store.record(make(k * 1000 + i)) for i in range(250)])
            for k in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.count() == 2000
    with OutcomeStore(store_db()) as again:
        assert again.count() == 2000


@pytest.mark.parametrize("mode", ["full", "hash", "none"])
def test_prompt_storage_modes(store_db, mode):
    with OutcomeStore(store_db(), prompt_storage=mode) as store:
        store.record(make(1, text="secret customer prompt"))
        row = store.get("req-1")
    expected_hash = hashlib.sha256(b"secret customer prompt").hexdigest()
    assert row.prompt_text == ("secret customer prompt" if mode == "full" else None)
    assert row.prompt_hash == (None if mode == "none" else expected_hash)


def test_feedback_and_unknown_ids(store_db):
    with OutcomeStore(store_db()) as store:
        store.record(make(1))
        store.add_feedback("req-1", label="simple", score="down", comment="should have been cheap")
        assert store.feedback("req-1") == [
            Feedback("req-1", pytest.approx(time.time(), abs=5), "simple", 0.0, "should have been cheap")
        ]
        with pytest.raises(StoreError, match="unknown request id 'nope'"):
            store.add_feedback("nope", score=1)
        with pytest.raises(DataError, match=r"score must be in \[0, 1\]"):
            store.add_feedback("req-1", score=3)
        with pytest.raises(DataError, match="at least one of label, score or comment"):
            store.add_feedback("req-1")
    with pytest.raises(ConfigError, match="prompt_storage must be one of"):
        OutcomeStore(store_db("x"), prompt_storage="some")  # type: ignore[arg-type]


def test_summary_counts(store_db):
    with OutcomeStore(store_db()) as store:
        for i in range(6):
            store.record(make(i, label="code" if i < 4 else "simple"))
        failed = make(9, status="error")
        failed.model, failed.attempts = None, [Attempt("openai/code", "error", "Timeout", "slow")]
        store.record(failed)
        fell_back = make(10)
        fell_back.attempts = [Attempt("openai/a", "error", "RateLimitError", "429"), Attempt("openai/code", "ok")]
        store.record(fell_back)
        s = store.summary()
    assert s["requests"] == 8
    assert s["route_share"] == {"code": pytest.approx(6 / 8, abs=1e-3), "simple": pytest.approx(2 / 8, abs=1e-3)}
    assert s["error_rate"] == pytest.approx(1 / 8, abs=1e-3)
    assert s["fallback_rate"] == pytest.approx(1 / 8, abs=1e-3)
    assert s["cost_usd"] == pytest.approx(0.008)
    assert s["latency_ms_p50"] == pytest.approx(200, abs=5)


def test_export_in_the_trainers_format(store_db, tmp_path):
    with OutcomeStore(store_db()) as store:
        for i in range(5):
            store.record(make(i))
        store.add_feedback("req-0", label="simple")  # corrected
        store.add_feedback("req-1", score=1.0)  # confirms "code"
        store.add_feedback("req-2", score=0.2)  # a low score with no correction: no label
        store.add_feedback("req-3", label="creative")
        store.add_feedback("req-3", label="reasoning")  # the latest correction wins
        out = tmp_path / "feedback.jsonl"
        counts = store.export(out)
        assert counts == {"corrected": 2, "confirmed": 1, "no_text": 0, "unlabelled": 1}
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert {r["text"]: r["label"] for r in rows} == {
            "prompt number 0": "simple", "prompt number 1": "code", "prompt number 3": "reasoning",
        }  # fmt: skip
        assert load_file(out).counts() == {"code": 1, "reasoning": 1, "simple": 1}
        assert store.export(out, include=["corrected"])["confirmed"] == 0
    with OutcomeStore(store_db("h"), prompt_storage="hash") as hashed:
        hashed.record(make(1))
        hashed.add_feedback("req-1", label="simple")
        assert hashed.export(tmp_path / "h.jsonl")["no_text"] == 1
