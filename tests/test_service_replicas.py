"""Several workers behind one port, writing one outcome log: the load script against a real `router-ml serve`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "load_test.py"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.slow
def test_two_workers_lose_no_request(backend: str, small_artifact: Path, request: pytest.FixtureRequest) -> None:
    db = ["--db", request.getfixturevalue("pg_url")] if backend == "postgresql" else []
    command = [sys.executable, str(SCRIPT), "--model", str(small_artifact), "--workers", "2", "--requests", "40"]
    result = subprocess.run(
        [*command, "--concurrency", "8", "--seconds", "60", *db], capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "sent 40, errors 0, outcome records 40, returned ids missing from the log 0" in result.stdout
    assert "| /v1/route | 2 | 20 | 0 |" in result.stdout and "| /v1/chat/completions | 2 | 20 | 0 |" in result.stdout
    assert "no request lost: yes" in result.stdout
