"""The outcome log on a real PostgreSQL server, with several replicas writing at once.

tests/test_outcomes.py runs every store behaviour on both back-ends; this file adds what only a shared server has:
migrations racing between stores and processes, a dropped connection, rights, clear errors, URLs in the CLI.
The server comes from $ROUTER_ML_TEST_PG_URL (``eval "$(bash scripts/ci_postgres.sh)"`` starts one); without
it these tests are skipped, and they fail when $CI is set.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from click.testing import CliRunner

from router_ml.cli import cli
from router_ml.exceptions import StoreError
from router_ml.online.db import Database, resolve_target
from router_ml.online.outcome import Outcome
from router_ml.online.schema import MIGRATIONS as REGISTERED
from router_ml.online.store import OutcomeStore
from tests.test_outcomes import MIGRATIONS, make

REPLICA = """
import sys, time
from router_ml.online.db import Database, resolve_target
from router_ml.online.outcome import Outcome
from router_ml.online.schema import MIGRATIONS as REGISTERED
from router_ml.online.store import OutcomeStore
url, replica, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()  # all replicas open the store at once: their migrations race
with OutcomeStore(url) as store:
    for i in range(n):
        now = time.time()
        store.record(Outcome(request_id=f"{replica}-{i}", started_at=now, finished_at=now, label="code"))
        if i % 50 == 49:
            store.flush()  # several transactions per replica, interleaved with the others'
    print(",".join(store.migrations()), flush=True)
"""


def query(url: str, sql: str, *args: object) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, args or None)
        return cursor.fetchall() if cursor.description else []


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc.rsplit('@', 1)[-1]}"))


def test_tables_and_migrations_on_the_server(pg_schema):
    url = pg_schema()
    with OutcomeStore(url) as store:
        assert store.path is None and store.location == url
        exact = make(1)
        exact.started_at = 1_750_000_000.123456  # DOUBLE PRECISION keeps microseconds (PostgreSQL's REAL would not)
        store.record(exact)
        store.add_feedback("req-1", score="up")
        assert store.get("req-1").started_at == 1_750_000_000.123456
    assert [r[0] for r in query(url, "SELECT name FROM _migrations ORDER BY name")] == MIGRATIONS
    columns = "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema()"
    types = dict(query(url, f"{columns} AND table_name = 'feedback'"))
    assert types["id"] == "bigint" and types["score"] == "double precision"


def test_exploration_columns_are_added_to_a_live_log(pg_schema):
    """A log at m004 with rows gains propensity (double precision), explored and score_failures (with defaults)."""
    url = pg_schema()
    db = Database(resolve_target(url))
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, migrate in REGISTERED[: MIGRATIONS.index("m005_exploration")]:
        migrate(db)
        db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
    db.close()
    old_row = (
        "INSERT INTO outcomes (request_id, started_at, finished_at, status, probabilities, abstained, attempts, "
        "routing_ms, provider_ms, stream) VALUES ('old', 1, 2, 'ok', '{}', 0, '[]', 0, 0, 0)"
    )
    query(url, old_row)
    with OutcomeStore(url) as store:
        new = make(1)
        new.propensity, new.explored, new.score_failures = 1 / 3, True, False  # 1/3 needs all 8 bytes
        store.record(new)
        old, back = store.get("old"), store.get("req-1")
    assert (old.propensity, old.explored, old.score_failures) == (None, False, True)
    assert (back.propensity, back.explored, back.score_failures) == (1 / 3, True, False)
    found = query(
        url,
        "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'outcomes' "
        "AND column_name IN ('propensity', 'explored', 'score_failures') ORDER BY column_name",
    )
    assert found == [
        ("explored", "integer", "NO", "0"),
        ("propensity", "double precision", "YES", None),
        ("score_failures", "integer", "NO", "1"),
    ]


def test_stores_opened_together_migrate_once(pg_schema):
    url = pg_schema()
    start, stores, errors = threading.Barrier(8), [], []

    def open_store() -> None:
        start.wait()
        try:
            stores.append(OutcomeStore(url))
        except Exception as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and len(stores) == 8
        assert all(s.migrations() == MIGRATIONS for s in stores)
    finally:
        for s in stores:
            s.close()
    assert query(url, "SELECT COUNT(*) FROM _migrations") == [(len(MIGRATIONS),)]


def test_replicas_in_separate_processes_lose_nothing(pg_schema):
    url, replicas, n = pg_schema(), 4, 250
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, url, f"replica{k}", str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(replicas)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr and p.stderr.read()
        for p in procs:  # release them together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == ",".join(MIGRATIONS)
    ids = {r[0] for r in query(url, "SELECT request_id FROM outcomes")}
    assert ids == {f"replica{k}-{i}" for k in range(replicas) for i in range(n)}
    assert query(url, "SELECT COUNT(*) FROM outcomes") == [(replicas * n,)]
    assert query(url, "SELECT COUNT(*) FROM _migrations") == [(len(MIGRATIONS),)]


def test_the_store_reconnects_after_the_server_drops_it(pg_schema):
    url = pg_schema()
    name = url.rsplit("application_name=", 1)[1]
    with OutcomeStore(url) as store:
        for i in range(10):
            store.record(make(i))
        store.flush()
        ours = "FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()"
        dropped = query(url, f"SELECT pg_terminate_backend(pid) {ours}", name)
        assert dropped == [(True,), (True,)]  # the reader's and the writer's connections
        for i in range(10, 20):
            store.record(make(i))
        assert store.count() == 20  # the writer retried on a new connection; the reader reconnected too
        assert len(query(url, f"SELECT pid {ours}", name)) == 2


def test_connection_errors_name_the_url_without_its_password():
    with pytest.raises(StoreError) as info:
        OutcomeStore("postgresql://router:hunter2@127.0.0.1:1/log")
    message = str(info.value)
    assert message.startswith("cannot connect to the outcome store at postgresql://router:***@127.0.0.1:1/log: ")
    assert "Check that PostgreSQL is running" in message and "hunter2" not in message


def test_missing_database_and_missing_rights_are_explained(pg_schema):
    url = pg_schema()
    base = url.split("?")[0]
    with pytest.raises(StoreError, match=r'database "no_such_db_[0-9a-f]+" does not exist\. Check that'):
        OutcomeStore(f"{base.rsplit('/', 1)[0]}/no_such_db_{uuid.uuid4().hex[:8]}")
    role = f"router_ml_reader_{uuid.uuid4().hex[:8]}"
    schema = url.rsplit("application_name=", 1)[1]
    query(url, f"CREATE ROLE {role} LOGIN")  # may connect and see the schema, may not create tables in it
    query(url, f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    try:
        with pytest.raises(StoreError, match=r"cannot create the outcome tables .*permission denied.*GRANT CREATE"):
            OutcomeStore(as_user(url, role))
    finally:
        query(url, f"DROP OWNED BY {role}")
        query(url, f"DROP ROLE {role}")


def test_cli_takes_a_postgres_url(pg_schema, monkeypatch):
    url = pg_schema()
    with OutcomeStore(url) as store:
        for i in range(3):
            store.record(make(i))
    runner = CliRunner()
    summary = runner.invoke(cli, ["outcomes", "summary", "--db", url, "--json"])
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout)["requests"] == 3
    assert runner.invoke(cli, ["feedback", "req-1", "--label", "simple", "--db", url]).exit_code == 0
    monkeypatch.setenv("ROUTER_ML_DB", url)  # the environment variable takes a URL too
    shown = json.loads(runner.invoke(cli, ["outcomes", "show", "req-1"]).stdout)
    assert shown["feedback"][0]["label"] == "simple"
    bad = runner.invoke(cli, ["outcomes", "list", "--db", "postgresql://router:hunter2@127.0.0.1:1/log"])
    assert bad.exit_code != 0 and "router:***@127.0.0.1:1/log" in bad.output and "hunter2" not in bad.output


def test_replicas_see_each_others_outcomes(pg_schema):
    url = pg_schema()
    with OutcomeStore(url) as a, OutcomeStore(url, prompt_storage="hash") as b:
        a.record(make(1))
        now = time.time()
        b.record(Outcome(request_id="req-2", started_at=now, finished_at=now, prompt_text="private"))
        a.flush()
        b.flush()
        assert {r.request_id for r in a.outcomes()} == {"req-1", "req-2"}
        b.add_feedback("req-1", label="simple")
        assert a.feedback("req-1")[0].label == "simple"
        assert a.get("req-2").prompt_text is None and a.get("req-2").prompt_hash
