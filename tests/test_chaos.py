"""The chaos benchmark at a small size: the real `router-ml serve` and the official openai client in front of a
hostile loopback endpoint (HTTP 500/502/503/429, stalls, dropped connections, malformed bodies, a provider down)."""

from __future__ import annotations

import pytest

from router_ml.online.breaker import BreakerPolicy
from router_ml.testing.chaos_run import DOWN_PROVIDER, run_scenario, scenario

pytestmark = pytest.mark.slow

SMALL = {"requests": 60, "concurrency": 8}


def _nothing_lost_nothing_silent(result) -> None:
    assert result.lost_rows == 0 and result.rows == result.requests
    assert result.counts.get("silent_empty", 0) == 0 and result.empty_logged_ok == 0
    assert result.failed_logged_ok == 0
    assert result.counts.get("answered", 0) + result.counts.get("clean_error", 0) == result.requests


@pytest.mark.parametrize(("name", "floor"), [("faults10", 0.95), ("faults30", 0.85)])
def test_random_faults_are_survived(small_artifact, tmp_path, name, floor):
    result = run_scenario(scenario(name, **SMALL, seed=3), small_artifact, workdir=tmp_path)
    _nothing_lost_nothing_silent(result)
    assert result.rate("answered") >= floor, result.counts
    assert sum(v for k, v in result.upstream_kinds.items() if k != "ok") > 0  # faults were really injected


def test_a_provider_down_is_skipped_once_its_breaker_opens(small_artifact, tmp_path):
    # enough requests that each of the down provider's primary models passes its breaker's min_calls
    result = run_scenario(scenario("provider_down", requests=160, concurrency=8), small_artifact, workdir=tmp_path)
    _nothing_lost_nothing_silent(result)
    assert result.rate("answered") >= 0.98, result.counts
    down_calls = sum(n for model, n in result.calls_by_model.items() if model.startswith(DOWN_PROVIDER))
    routed_down = sum(r.route in result.down_routes for r in result.results)
    policy = BreakerPolicy()
    assert routed_down > 3 * policy.min_calls  # enough traffic went its way for the breakers to matter
    assert down_calls < 0.8 * routed_down  # once open, its requests skipped it without a call
    assert result.skipped_breaker_open > 0


def test_a_recovered_provider_gets_its_traffic_back(small_artifact, tmp_path):
    policy = BreakerPolicy()
    s = scenario("provider_recovers", recover_after=6.0, min_seconds=6.0 + 4 * policy.open_seconds, **SMALL)
    result = run_scenario(s, small_artifact, workdir=tmp_path)
    _nothing_lost_nothing_silent(result)
    resumed = [seconds for seconds in result.resumed_after.values() if seconds is not None]
    assert resumed, result.resumed_after
    assert min(resumed) <= 2 * policy.open_seconds + 2.0  # within two half-open windows (and a little slack)
