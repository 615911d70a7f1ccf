"""Prometheus metrics of the routing service.

``router_ml_exploration_share`` is computed at each scrape from two counters, ``router_ml_explored`` over
``router_ml_policy_routed`` (requests whose first model the policy chose: see
:attr:`router_ml.online.outcome.Outcome.policy_routed`), so it is the share since the service started, over all
workers.
With several uvicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` (``router-ml serve --workers N`` does it) and every
worker writes its samples there; ``/metrics`` then aggregates all workers, whichever one answers the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from ..online.outcome import Outcome
from ..router import Decision

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The service's counters and histograms, in their own registry (so tests can build several apps)."""

    def __init__(self) -> None:
        """Every metric, registered in a fresh registry."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "router_ml_requests", "HTTP requests by endpoint and status code.", ["endpoint", "code"], registry=r
        )
        self.request_seconds = Histogram(
            "router_ml_request_seconds", "Request latency by endpoint.", ["endpoint"], buckets=_LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.routing_seconds = Histogram(
            "router_ml_routing_seconds", "Time to decide a route.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.provider_seconds = Histogram(
            "router_ml_provider_seconds", "Provider call latency by model.", ["model"], buckets=_LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.decisions = Counter("router_ml_route_decisions", "Routing decisions by route.", ["route"], registry=r)
        self.abstentions = Counter("router_ml_abstentions", "Decisions below the confidence threshold.", registry=r)
        self.cache = Counter("router_ml_decision_cache", "Decision-cache lookups by result.", ["result"], registry=r)
        self.batch_size = Histogram(
            "router_ml_batch_size", "Prompts embedded together by the micro-batcher.", buckets=_BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.fallbacks = Counter(
            "router_ml_fallbacks", "Requests answered by a fallback model, by route.", ["route"], registry=r
        )
        self.policy_routed = Counter(
            "router_ml_policy_routed", "Requests whose first model the routing policy chose, by route.", ["route"],
            registry=r,
        )  # fmt: skip
        self.explored = Counter(
            "router_ml_explored", "Requests sent to an exploratory first model, by route.", ["route"], registry=r
        )
        self.errors = Counter("router_ml_errors", "Failed requests by kind.", ["kind"], registry=r)
        self.cost = Counter("router_ml_cost_usd", "Estimated provider cost in USD by model.", ["model"], registry=r)
        self.reloads = Counter("router_ml_reloads", "Router artifact reloads by result.", ["result"], registry=r)

    def decision(self, decision: Decision) -> None:
        """Count one routing decision."""
        self.routing_seconds.observe(decision.latency_ms / 1000)
        self.decisions.labels(decision.label).inc()
        self.cache.labels("hit" if decision.cached else "miss").inc()
        if decision.abstained:
            self.abstentions.inc()

    def outcome(self, outcome: Outcome) -> None:
        """Count what happened at the providers for one request."""
        if outcome.model is not None:
            self.provider_seconds.labels(outcome.model).observe(outcome.provider_ms / 1000)
            if outcome.cost_usd:
                self.cost.labels(outcome.model).inc(outcome.cost_usd)
        if outcome.fell_back:
            self.fallbacks.labels(outcome.label or "forced").inc()
        if outcome.policy_routed:
            self.policy_routed.labels(outcome.label or "-").inc()
            if outcome.explored:
                self.explored.labels(outcome.label or "-").inc()
        if outcome.called and not outcome.answered:
            self.errors.labels(outcome.status).inc()

    def render(self) -> bytes:
        """The exposition text, aggregated over all workers in multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(_WithExplorationShare(registry))
        return generate_latest(_WithExplorationShare(self.registry))


class _WithExplorationShare:
    """A registry's metrics, and the exploration share computed from its two counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        """Every metric of the registry, then ``router_ml_exploration_share``."""
        totals = {"router_ml_policy_routed": 0.0, "router_ml_explored": 0.0}
        for metric in self.registry.collect():
            if metric.name in totals:
                totals[metric.name] = sum(s.value for s in metric.samples if s.name.endswith("_total"))
            yield metric
        share = totals["router_ml_explored"] / max(1.0, totals["router_ml_policy_routed"])
        yield GaugeMetricFamily(
            "router_ml_exploration_share", "Explored requests over policy-routed ones, since the start.", share
        )
