"""The chaos benchmark's scenarios and runner: ``router-ml serve`` in front of the hostile endpoint.

:func:`run_scenario` starts the endpoint (:mod:`router_ml.testing.chaos`) and the real service as subprocesses on
127.0.0.1, sends the load with the official ``openai`` client (:mod:`router_ml.testing.chaos_client`), stops the
service, reads its outcome log and returns a :class:`ChaosResult`. The route table has 4 routes, each a model and
2 fallbacks, over 3 providers; ``provA`` (the one taken down) serves the primary models of ``code`` and ``simple``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..route_table import RouteTable
from .chaos import ChaosEndpoint, FaultConfig, provider_of
from .chaos_client import CATEGORIES, NOT_SENT, RequestResult, ServiceProcess, drive, python_env, served_package

__all__ = [
    "CHAINS",
    "EXTRA_SCENARIOS",
    "SCENARIOS",
    "ChaosResult",
    "Scenario",
    "chaos_route_table",
    "run_scenario",
    "scenario",
    "small_router",
    "table_row",
]

KEY_ENV = "ROUTER_ML_CHAOS_KEY"
CHAINS: dict[str, tuple[str, str, str]] = {
    "code": ("provA-code", "provB-code-fb1", "provC-code-fb2"),
    "creative": ("provB-creative", "provC-creative-fb1", "provA-creative-fb2"),
    "reasoning": ("provC-reasoning", "provA-reasoning-fb1", "provB-reasoning-fb2"),
    "simple": ("provA-simple", "provB-simple-fb1", "provC-simple-fb2"),
}
DOWN_PROVIDER = "provA"
SERVICE_ENV = {KEY_ENV: "chaos-key", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # fmt: skip
SCENARIOS = ("faults10", "faults30", "provider_down", "provider_recovers")
EXTRA_SCENARIOS = ("healthy",)  # a control run without faults: what the load alone does


@dataclass
class Scenario:
    """One benchmark run: the fault mix and the load.

    Attributes:
        name (str): the scenario's name (one of :data:`SCENARIOS` for the presets).
        faults (FaultConfig): what the hostile endpoint does.
        requests (int): requests sent. concurrency (int): requests in flight at once.
        stream_share (float): share of the requests sent with ``stream=True``.
        timeout (float): ``router-ml serve --timeout``. deadline (float): ``--deadline``.
        min_seconds (float): spread the requests over at least this long (0: as fast as the service answers).
        client_timeout (float | None): the ``openai`` client's timeout; ``deadline + 12`` when ``None``.
        seed (int): seed of the prompt order, the streamed subset and the endpoint's fault draws.
        backend (str | None): ``router-ml serve --backend`` (its default, the fastest verified, when ``None``).
    """

    name: str
    faults: FaultConfig = field(default_factory=FaultConfig)
    requests: int = 1000
    concurrency: int = 64
    stream_share: float = 0.2
    timeout: float = 2.0
    deadline: float = 8.0
    min_seconds: float = 0.0
    client_timeout: float | None = None
    seed: int = 0
    backend: str | None = None


def scenario(name: str, *, recover_after: float = 20.0, down_mode: str = "503", **overrides: Any) -> Scenario:
    """A preset scenario (:data:`SCENARIOS`, or ``healthy``), with :class:`Scenario` fields in ``overrides``.

    ``provider_down`` takes ``provA`` down for the whole run; ``provider_recovers`` takes it down for the first
    ``recover_after`` seconds and spreads the requests over at least ``recover_after + 55`` seconds.
    """
    seed = overrides.get("seed", 0)
    presets: dict[str, dict[str, Any]] = {
        "healthy": {"faults": FaultConfig(seed=seed)},
        "faults10": {"faults": FaultConfig(fault_rate=0.10, seed=seed)},
        "faults30": {"faults": FaultConfig(fault_rate=0.30, seed=seed)},
        "provider_down": {"faults": FaultConfig(down=(DOWN_PROVIDER,), down_mode=down_mode, seed=seed)},
        "provider_recovers": {
            "faults": FaultConfig(down=(DOWN_PROVIDER,), down_mode=down_mode, recover_after=recover_after, seed=seed),
            "min_seconds": recover_after + 55.0,
        },
    }
    if name not in presets:
        raise ValueError(f"unknown scenario {name!r}; choose from {SCENARIOS + EXTRA_SCENARIOS}")
    return Scenario(name=name, **{**presets[name], **overrides})


def chaos_route_table(endpoint: ChaosEndpoint) -> RouteTable:
    """The 4-route, 12-model table of :data:`CHAINS`, every model served by ``endpoint``."""
    prices = {"code": (3.0, 15.0), "creative": (1.25, 10.0), "reasoning": (1.25, 10.0), "simple": (0.25, 2.0)}
    routes = {
        label: {"model": f"openai/{chain[0]}", "fallbacks": [f"openai/{m}" for m in chain[1:]],
                "input_price": prices[label][0], "output_price": prices[label][1], "max_input_tokens": 128000}
        for label, chain in CHAINS.items()
    }  # fmt: skip
    models = {
        f"openai/{m}": {"input_price": 1.0, "output_price": 5.0, "max_input_tokens": 128000,
                        "api_base": endpoint.base_url(provider_of(m)), "api_key_env": KEY_ENV}
        for chain in CHAINS.values() for m in chain
    }  # fmt: skip
    return RouteTable.from_dict({"default_route": "reasoning", "routes": routes, "models": models}, "chaos routes")


def small_router(cache: str | Path, *, pythonpath: str | None = None, per_label: int = 80) -> Path:
    """A small router artifact for the ``router_ml`` the service will run (``pythonpath``'s, else the installed one).

    It lives in ``cache/<key>``, the key a hash of ``per_label`` and that package's artifact code (so each artifact
    format gets its own), and is trained once (about a minute) by :mod:`router_ml.testing.chaos_train` run with that
    package, on ``per_label`` bundled training prompts of each label.
    """
    env = python_env({**os.environ, **SERVICE_ENV}, pythonpath)
    package = Path(served_package(env, Path(tempfile.gettempdir())))
    digest = hashlib.sha256(str(per_label).encode())
    for file in sorted([*package.glob("artifact*.py"), *package.glob("artifact/**/*.py")]):
        digest.update(file.read_bytes())
    path = Path(cache).resolve() / digest.hexdigest()[:12]
    if (path / "manifest.json").is_file():
        return path
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    script = str(Path(__file__).with_name("chaos_train.py"))
    command = [sys.executable, script, str(scratch), str(per_label)]
    subprocess.run(command, env=env, cwd=tempfile.gettempdir(), check=True, timeout=1800)
    scratch.rename(path)
    return path


@dataclass
class ChaosResult:
    """What one scenario measured (see :meth:`to_dict` for the JSON form).

    Latencies are in seconds, as the client saw them: ``p50``/``p95`` of answered requests, ``p95_all`` of every
    request sent; ``routing_ms`` is the outcome log's p50 and p95 routing time (the classifier's decision,
    micro-batching included). ``counts`` has the requests per category, ``details`` per category and detail.
    ``lost_rows`` is the larger of the client-seen request ids missing from the log (``missing_ids``) and the
    requests sent minus the rows; ``empty_logged_ok``/``failed_logged_ok`` count silently empty answers and other
    failures that the log calls ``ok``. ``upstream_calls``/``upstream_kinds`` are what the endpoint received;
    ``resumed_after`` gives, per model of a recovering provider, the seconds from its recovery to its next call.
    """

    scenario: Scenario
    seconds: float
    counts: dict[str, int]
    details: dict[str, int]
    rows: int
    missing_ids: int
    lost_rows: int
    log_statuses: dict[str, int]
    empty_logged_ok: int
    failed_logged_ok: int
    errors_id_in_header: int
    p50: float | None
    p95: float | None
    p95_all: float | None
    routing_ms: tuple[float | None, float | None]
    upstream_calls: int
    upstream_kinds: dict[str, int]
    route_p50: dict[str, float | None]
    down_routes: list[str]
    resumed_after: dict[str, float | None]
    service_tracebacks: int
    served_from: str
    calls_by_model: dict[str, int] = field(default_factory=dict)
    skipped_breaker_open: int = 0
    results: list[RequestResult] = field(default_factory=list, repr=False)

    @property
    def requests(self) -> int:
        return self.scenario.requests

    def rate(self, category: str) -> float:
        """Share of the requests in ``category`` (:data:`~router_ml.testing.chaos_client.CATEGORIES`)."""
        return self.counts.get(category, 0) / max(1, self.requests)

    @property
    def ok_not_answered(self) -> int:
        """Rows logged ``ok`` beyond the requests the client saw answered (e.g. answers after a client timeout)."""
        return max(0, self.log_statuses.get("ok", 0) - self.counts.get("answered", 0))

    @property
    def calls_per_request(self) -> float:
        return self.upstream_calls / max(1, self.requests)

    def down_vs_other_p50(self) -> tuple[float | None, float | None]:
        """p50 latency of answered requests on the down provider's routes, and on the others."""
        down = [r.latency for r in self.results if r.category == "answered" and r.route in self.down_routes]
        other = [r.latency for r in self.results if r.category == "answered" and r.route not in self.down_routes]
        return _pct(down, 0.5), _pct(other, 0.5)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("results")
        down, other = self.down_vs_other_p50()
        data["answered_rate"], data["clean_error_rate"] = self.rate("answered"), self.rate("clean_error")
        data["ok_not_answered"] = self.ok_not_answered
        data["calls_per_request"], data["down_route_p50"], data["other_route_p50"] = self.calls_per_request, down, other
        return data


def _pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def _workload(s: Scenario) -> tuple[list[str], list[bool]]:
    """``s.requests`` held-out prompts in a seeded order (repeats get a suffix), and which are streamed."""
    from ..data import load_bundled

    texts = list(load_bundled("heldout").texts)
    rng = random.Random(s.seed)
    rng.shuffle(texts)
    prompts = [texts[i % len(texts)] + (f" ({i // len(texts)})" if i >= len(texts) else "") for i in range(s.requests)]
    streamed = set(rng.sample(range(s.requests), round(s.requests * s.stream_share)))
    return prompts, [i in streamed for i in range(s.requests)]


def run_scenario(
    s: Scenario,
    model_dir: str | Path,
    *,
    pythonpath: str | None = None,
    workdir: str | Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> ChaosResult:
    """Run one scenario end to end and measure it.

    Args:
        s (Scenario): the scenario (see :func:`scenario` for the presets; e.g.
            ``scenario("faults10", requests=60, concurrency=8)`` runs in well under a minute).
        model_dir (str | Path): a router artifact with the labels code, creative, reasoning, simple
            (:func:`small_router` makes one).
        pythonpath (str | None): a source tree whose ``router_ml`` the service runs (put first on ``PYTHONPATH``);
            the installed one when ``None``.
        workdir (str | Path | None): where the route table, outcome log and service log go; a new temp dir if None.
        echo (Callable | None): called with progress lines.

    Returns:
        ChaosResult: categories, lost outcome rows, latencies, upstream calls, per-route and recovery timings.
    """
    say = echo or (lambda line: None)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"router-ml-chaos-{s.name}-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    prompts, streamed = _workload(s)
    load_limit = max(600.0, 3 * s.min_seconds)
    with ChaosEndpoint(s.faults, max_seconds=load_limit + 900) as endpoint:
        routes = chaos_route_table(endpoint).save(workdir / "routes.toml")
        args = ["--model", str(Path(model_dir).resolve()), "--routes", str(routes), "--timeout", f"{s.timeout:g}",
                "--deadline", f"{s.deadline:g}", "--log-level", "warning",
                *(["--backend", s.backend] if s.backend else [])]  # fmt: skip
        service = ServiceProcess(args, workdir, python_env({**os.environ, **SERVICE_ENV}, pythonpath))
        served_from = served_package(service.env, workdir)
        say(f"[{s.name}] starting router-ml serve (router_ml from {served_from}) in {workdir}")
        try:
            service.start()
            endpoint.reset()
            say(f"[{s.name}] sending {s.requests} requests, {s.concurrency} at a time, {s.stream_share:.0%} streamed")
            began = time.perf_counter()
            client_timeout = s.client_timeout or s.deadline + 12
            options = {"client_timeout": client_timeout, "min_seconds": s.min_seconds, "max_seconds": load_limit}
            results = drive(service.url, prompts, streamed, concurrency=s.concurrency, **options)
            seconds = time.perf_counter() - began
            stats = endpoint.stats()
        finally:
            service.stop()
    from ..online.store import OutcomeStore

    with OutcomeStore(service.db) as store:
        logged = {o.request_id: o for o in store.outcomes()}
    tracebacks = service.log_text().count("Traceback")
    return _summarize(s, results, logged, stats, seconds, tracebacks, served_from)


def _check_error_bodies(results: list[RequestResult], logged: dict[str, Any]) -> None:
    """Demote clean errors whose message does not name every model the outcome log says was tried."""
    for r in results:
        row = logged.get(r.request_id or "")
        if r.category != "clean_error" or row is None:
            continue
        unnamed = [a.model for a in row.attempts if a.model.rsplit("/", 1)[-1] not in r.message]
        if unnamed:
            r.category, r.detail = "other", f"{r.detail}: error message omits models tried"


def _resumed(s: Scenario, stats: dict[str, Any]) -> dict[str, float | None]:
    """Per model of a recovering provider: seconds from the recovery to its first call after it."""
    after = s.faults.recover_after
    if after is None:
        return {}
    out: dict[str, float | None] = {}
    for chain in CHAINS.values():
        for model in chain:
            if provider_of(model) in s.faults.down:
                times = [t for t, _, _ in stats["log"].get(model, []) if t >= after]
                out[model] = round(min(times) - after, 2) if times else None
    return out


def _summarize(
    s: Scenario,
    results: list[RequestResult],
    logged: dict[str, Any],
    stats: dict[str, Any],
    seconds: float,
    tracebacks: int,
    served_from: str,
) -> ChaosResult:
    _check_error_bodies(results, logged)
    for r in results:
        row = logged.get(r.request_id or "")
        r.route = r.route or (row.label if row is not None else None)
    sent = sum(1 for r in results if r.detail != NOT_SENT)
    missing = {r.request_id for r in results if r.request_id} - set(logged)
    status_of = {rid: o.status for rid, o in logged.items()}
    answered = [r.latency for r in results if r.category == "answered"]
    kinds: Counter[str] = Counter()
    for per_model in stats["calls"].values():
        kinds.update(per_model)
    answered_on = {
        label: [r.latency for r in results if r.category == "answered" and r.route == label] for label in CHAINS
    }
    return ChaosResult(
        scenario=s,
        seconds=round(seconds, 1),
        counts={c: sum(1 for r in results if r.category == c) for c in CATEGORIES},
        details=dict(Counter(f"{r.category}: {r.detail}" for r in results).most_common()),
        rows=len(logged),
        missing_ids=len(missing),
        lost_rows=max(len(missing), sent - len(logged)),
        log_statuses=dict(Counter(o.status for o in logged.values())),
        empty_logged_ok=sum(1 for r in results if r.category == "silent_empty" and status_of.get(r.request_id) == "ok"),
        failed_logged_ok=sum(1 for r in results if r.category == "other" and status_of.get(r.request_id) == "ok"),
        errors_id_in_header=sum(1 for r in results if r.status in (502, 504) and r.id_in_header),
        p50=_pct(answered, 0.5),
        p95=_pct(answered, 0.95),
        p95_all=_pct([r.latency for r in results if r.detail != NOT_SENT], 0.95),
        routing_ms=(
            _pct([o.routing_ms for o in logged.values()], 0.5),
            _pct([o.routing_ms for o in logged.values()], 0.95),
        ),
        upstream_calls=sum(kinds.values()),
        upstream_kinds=dict(kinds),
        route_p50={label: _pct(v, 0.5) for label, v in answered_on.items()},
        down_routes=[label for label, chain in CHAINS.items() if provider_of(chain[0]) in s.faults.down],
        resumed_after=_resumed(s, stats),
        service_tracebacks=tracebacks,
        served_from=served_from,
        calls_by_model={model: sum(per_model.values()) for model, per_model in stats["calls"].items()},
        skipped_breaker_open=sum(a.error == "BreakerOpen" for o in logged.values() for a in o.attempts),
        results=results,
    )


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


TABLE_HEAD = (
    "| scenario | N | answered | clean errors | silently empty (logged ok) | other failures | lost rows "
    "| p50 / p95 s | upstream calls/req | down-route vs other p50 s | provider back after s | time s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(r: ChaosResult) -> str:
    """One markdown row of :data:`TABLE_HEAD`."""
    down, other = r.down_vs_other_p50()
    primaries = [r.resumed_after.get(CHAINS[label][0]) for label in r.down_routes]
    back = "–" if not r.resumed_after else ", ".join("never" if v is None else f"{v:.1f}" for v in primaries)
    split = f"{_seconds(down)} vs {_seconds(other)}" if r.down_routes else "–"
    return (
        f"| {r.scenario.name} | {r.requests} | {r.rate('answered'):.1%} | {r.rate('clean_error'):.1%} "
        f"| {r.counts['silent_empty']} ({r.empty_logged_ok}) | {r.counts['other']} | {r.lost_rows} "
        f"| {_seconds(r.p50)} / {_seconds(r.p95)} | {r.calls_per_request:.2f} | {split} | {back} | {r.seconds:.0f} |"
    )
