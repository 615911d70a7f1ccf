"""Chaos benchmark: `router-ml serve` in front of an OpenAI-compatible endpoint that fails calls at random.

For each scenario it starts a hostile loopback endpoint (HTTP 500/429 with Retry-After, 3 s stalls, dropped
connections, malformed JSON; or one provider fully down, or down then recovering) and the real service
(`--timeout 2 --deadline 8`, 4 routes of a model and 2 fallbacks), sends N requests from the official `openai`
client, C at a time, a share of them streamed, and reports: answered rate, clean-error rate (HTTP 502/504 with
an OpenAI error body carrying the request id and the models tried), silently empty answers, outcome rows lost,
p50/p95 latency of answered requests, upstream calls per request, the down provider's routes' latency, and how
long after a provider recovers its traffic resumes.

    python scripts/chaos.py [--scenario faults10 faults30 provider_down provider_recovers] [--requests 1000]
                            [--concurrency 64] [--stream-share 0.2] [--model DIR] [--pythonpath DIR] [--json PATH]

Without --model a small router is trained once per artifact format (about a minute) into artifacts/chaos-router/,
by the `router_ml` the service runs. With --pythonpath the service runs the `router_ml` of that source tree (so a
baseline checkout can be measured with this harness). No traffic leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from router_ml.testing.chaos import DOWN_MODES, FAULT_KINDS
from router_ml.testing.chaos_run import (
    EXTRA_SCENARIOS,
    SCENARIOS,
    TABLE_HEAD,
    run_scenario,
    scenario,
    small_router,
    table_row,
)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS + EXTRA_SCENARIOS, default=list(SCENARIOS),
                        help="default: all but the no-fault control, healthy")  # fmt: skip
    parser.add_argument("--requests", type=int, default=1000, help="requests per scenario")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight at once")
    parser.add_argument("--stream-share", type=float, default=0.2, help="share of requests streamed")
    parser.add_argument("--timeout", type=float, default=2.0, help="router-ml serve --timeout")
    parser.add_argument("--deadline", type=float, default=8.0, help="router-ml serve --deadline")
    parser.add_argument("--client-timeout", type=float, help="openai client timeout (default: deadline + 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", choices=FAULT_KINDS, help="transient fault kinds (default: the mix)")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of 429s; negative: no header")
    parser.add_argument("--stall-seconds", type=float, default=3.0)
    parser.add_argument("--down-mode", choices=DOWN_MODES, default="503", help="how the down provider fails")
    parser.add_argument("--recover-after", type=float, default=20.0, help="provider_recovers: seconds down")
    parser.add_argument("--model", type=Path, help="router artifact (default: train a small one once)")
    parser.add_argument("--cache", type=Path, default=Path("artifacts/chaos-router"), help="where those go")
    parser.add_argument("--pythonpath", help="source tree whose router_ml the service runs")
    parser.add_argument("--backend", default="", help="router-ml serve --backend (default: the fastest verified)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    return parser.parse_args()


def main() -> None:
    args = _args()
    model = args.model or small_router(args.cache, pythonpath=args.pythonpath)
    print(f"chaos benchmark: {args.requests} requests per scenario, {args.concurrency} concurrent, "
          f"{args.stream_share:.0%} streamed, --timeout {args.timeout:g} --deadline {args.deadline:g}, "
          f"{os.cpu_count()} cores, router {model}", flush=True)  # fmt: skip
    results = []
    for name in args.scenario:
        s = scenario(
            name, recover_after=args.recover_after, down_mode=args.down_mode, requests=args.requests,
            concurrency=args.concurrency, stream_share=args.stream_share, timeout=args.timeout,
            deadline=args.deadline, seed=args.seed, client_timeout=args.client_timeout, backend=args.backend or None,
        )  # fmt: skip
        s.faults.retry_after = None if args.retry_after < 0 else args.retry_after
        s.faults.stall_seconds = args.stall_seconds
        if args.kinds:
            s.faults.kinds = tuple(args.kinds)
        began = time.perf_counter()
        result = run_scenario(s, model, pythonpath=args.pythonpath, echo=lambda line: print(line, flush=True))
        print(f"[{name}] done in {time.perf_counter() - began:.0f} s (load {result.seconds:.0f} s)")
        for detail, count in result.details.items():
            print(f"    {count:5d}  {detail}")
        print(f"    outcome log: {result.rows} rows {result.log_statuses}, {result.ok_not_answered} ok but not "
              f"answered; upstream calls {result.upstream_kinds}")  # fmt: skip
        routing = "/".join("–" if v is None else f"{v:.0f}" for v in result.routing_ms)
        print(f"    routing p50/p95 {routing} ms, p95 of all requests {result.p95_all or 0:.2f} s, "
              f"service log tracebacks {result.service_tracebacks}, attempts skipped (breaker open) "
              f"{result.skipped_breaker_open}")  # fmt: skip
        results.append(result)
    print(f"\n{TABLE_HEAD}")
    print("\n".join(table_row(r) for r in results))
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2))
        print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
