"""Summaries of the outcome log: what ``router-ml outcomes summary`` prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from .outcome import Outcome

__all__ = ["summarize"]


def _rate(count: int, total: int) -> float:
    return round(count / max(1, total), 4)


def _percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if len(values) else 0.0


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Requests, route share, answered / error / fallback rates (fallbacks by cause), attempts per request, cost,
    the exploration share, and routing and end-to-end latency percentiles of ``outcomes``.

    Rates are over the requests that called a model (not decision-only ones). A fallback is
    :attr:`Outcome.fell_back`, the definition the service's ``/metrics`` counts too. The exploration share is
    ``explored`` (:attr:`Outcome.explored`) over ``policy_routed`` requests (:attr:`Outcome.policy_routed`).
    """
    n = len(outcomes)
    if n == 0:
        return {"requests": 0}
    called = [o for o in outcomes if o.called]
    fell_back = [o for o in called if o.fell_back]
    causes = Counter(cause for o in fell_back for cause in dict.fromkeys(o.fallback_causes))
    routes = Counter(o.label or "-" for o in outcomes)
    costs = [o.cost_usd for o in outcomes if o.cost_usd is not None]
    calls = [sum(a.status != "skipped" for a in o.attempts) for o in called]
    routed = [o for o in outcomes if o.policy_routed]
    explored = sum(o.explored for o in routed)
    return {
        "requests": n,
        "from": min(o.started_at for o in outcomes),
        "to": max(o.started_at for o in outcomes),
        "route_share": {k: round(v / n, 4) for k, v in sorted(routes.items())},
        "status": dict(sorted(Counter(o.status for o in outcomes).items())),
        "answered_rate": _rate(sum(o.answered for o in called), len(called)),
        "error_rate": _rate(sum(not o.answered for o in called), len(called)),
        "fallback_rate": _rate(len(fell_back), len(called)),
        "fallback_rate_by_cause": {k: _rate(v, len(called)) for k, v in sorted(causes.items())},
        "attempts_per_request": round(float(np.mean(calls)), 3) if calls else 0.0,
        "policy_routed": len(routed),
        "explored": explored,
        "exploration_share": _rate(explored, len(routed)),
        "abstention_rate": _rate(sum(o.abstained for o in outcomes), n),
        "cost_usd": round(sum(costs), 6),
        "routing_ms_p50": _percentile([o.routing_ms for o in outcomes], 50),
        "routing_ms_p95": _percentile([o.routing_ms for o in outcomes], 95),
        "latency_ms_p50": _percentile([(o.finished_at - o.started_at) * 1000 for o in called], 50),
        "latency_ms_p95": _percentile([(o.finished_at - o.started_at) * 1000 for o in called], 95),
    }
