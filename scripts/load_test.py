"""Load test of the routing service on loopback: requests/s and p50/p95/p99 latency, with 1 and with 2 workers.

For each worker count it starts a stub LLM server and ``router-ml serve`` (a real subprocess, uvicorn workers)
on 127.0.0.1, sends a bounded number of requests (and stops early at the time bound) from concurrent clients to
``POST /v1/route`` and then to ``POST /v1/chat/completions`` (model "router", answered by the stub), stops the
service, and checks the outcome log: it must hold exactly one record per request sent, under the request ids
the service returned. Prompts are real ones from the bundled held-out split, each sent once (no cache hits).

    python scripts/load_test.py [--model artifacts/router] [--workers 1 2] [--requests 600] [--concurrency 32]
                                [--seconds 120] [--db postgresql://...] [--backend onnx-int8]

Without --db each run gets a fresh SQLite file; with a PostgreSQL URL every worker writes to that database
(a fresh schema per run). No traffic leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class Phase:
    """Latencies and returned request ids of one endpoint's load."""

    endpoint: str
    latencies: list[float] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return len(self.latencies) + len(self.errors)

    def row(self, workers: int) -> str:
        lat = sorted(self.latencies) or [float("nan")]

        def pct(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

        rps = len(self.latencies) / self.seconds if self.seconds else 0.0
        return (
            f"| {self.endpoint} | {workers} | {self.sent} | {len(self.errors)} | {rps:.0f} | "
            f"{statistics.median(lat) * 1000:.1f} | {pct(0.95):.1f} | {pct(0.99):.1f} |"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fresh_db(base: str | None, folder: Path) -> str:
    if not base:
        return str(folder / "outcomes.db")
    import psycopg

    schema = f"router_ml_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


async def _wait_ready(url: str, process: subprocess.Popen[bytes], limit: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + limit
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited with code {process.returncode} while starting")
            try:
                if (await client.get(f"{url}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError(f"the service was not ready within {limit:.0f}s")


async def _load(url: str, phase: Phase, bodies: list[dict], concurrency: int, seconds: float) -> None:
    import httpx

    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty() and time.perf_counter() < stop_at:
            body = queue.get_nowait()
            began = time.perf_counter()
            try:
                response = await client.post(f"{url}{phase.endpoint}", json=body, timeout=60)
            except httpx.HTTPError as exc:
                phase.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code != 200:
                phase.errors.append(f"{response.status_code}: {response.text[:200]}")
                if rid := response.headers.get("x-router-request-id"):
                    phase.request_ids.append(rid)
                continue
            phase.latencies.append(time.perf_counter() - began)
            phase.request_ids.append(response.headers.get("x-router-request-id") or response.json()["request_id"])

    async with httpx.AsyncClient(limits=limits) as client:
        began = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        phase.seconds = time.perf_counter() - began


def run(args: argparse.Namespace, workers: int, prompts: list[str]) -> tuple[list[Phase], int, int]:
    """One service start with ``workers`` workers; returns the phases, the records logged and the ids missing."""
    from router_ml.online.store import OutcomeStore
    from router_ml.route_table import load_routes
    from router_ml.testing.stub import StubLLMServer, stub_route_table

    folder = Path(tempfile.mkdtemp(prefix="router-ml-load-"))
    db = _fresh_db(args.db, folder)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ROUTER_ML_STUB_KEY": "stub-key", "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    with StubLLMServer(seed=7) as stub:
        routes = stub_route_table(load_routes(), stub).save(folder / "routes.toml")
        command = [
            sys.executable, "-m", "router_ml", "serve", "--model", str(args.model), "--routes", str(routes),
            "--port", str(port), "--workers", str(workers), "--db", db, "--log-level", "warning",
        ]  # fmt: skip
        if args.backend:
            command += ["--backend", args.backend]
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env)
        try:
            asyncio.run(_wait_ready(url, process))
            print(f"  {workers} worker(s) ready in {time.perf_counter() - started:.1f}s", flush=True)
            half = len(prompts) // 2
            route_phase, chat_phase = Phase("/v1/route"), Phase("/v1/chat/completions")
            asyncio.run(_load(url, route_phase, [{"input": p} for p in prompts[:half]], args.concurrency, args.seconds))
            chat_bodies = [{"model": "router", "messages": [{"role": "user", "content": p}]} for p in prompts[half:]]
            asyncio.run(_load(url, chat_phase, chat_bodies, args.concurrency, args.seconds))
        finally:
            process.send_signal(signal.SIGINT)  # graceful: workers finish requests and flush the outcome log
            process.wait(timeout=60)
    phases = [route_phase, chat_phase]
    with OutcomeStore(db) as store:
        logged = {row.request_id for row in store.outcomes()}
    returned = {rid for phase in phases for rid in phase.request_ids}
    return phases, len(logged), len(returned - logged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("artifacts/router"), help="router artifact")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    parser.add_argument("--requests", type=int, default=600, help="requests per run (half route, half chat)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=120.0, help="time bound per phase")
    parser.add_argument("--db", default=os.environ.get("ROUTER_ML_LOAD_DB"), help="PostgreSQL URL (default SQLite)")
    parser.add_argument("--backend", default=None, help="embedder backend for the service")
    args = parser.parse_args()

    from router_ml.data import load_bundled

    prompts = load_bundled("heldout").texts[: args.requests]
    print(f"router-ml load test: {len(prompts)} requests per run, {args.concurrency} concurrent clients, "
          f"{os.cpu_count()} cores, outcome log {'PostgreSQL' if args.db else 'SQLite'}, "
          f"backend {args.backend or 'the artifact default'}")  # fmt: skip
    rows, lost = [], 0
    for workers in args.workers:
        phases, logged, missing = run(args, workers, prompts)
        sent = sum(p.sent for p in phases)
        print(f"  sent {sent}, errors {sum(len(p.errors) for p in phases)}, outcome records {logged}, "
              f"returned ids missing from the log {missing}")  # fmt: skip
        for phase in phases:
            for error in phase.errors[:3]:
                print(f"    error on {phase.endpoint}: {error}")
        lost += missing + abs(logged - sent)
        rows += [p.row(workers) for p in phases]
    print("\n| endpoint | workers | requests | errors | req/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nno request lost: {'yes' if lost == 0 else f'NO ({lost} records missing or extra)'}")
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
