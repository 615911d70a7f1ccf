"""Circuit breakers and the attempt plan, on a controlled clock: no provider needed."""

from __future__ import annotations

import random
import time

import pytest

from router_ml.exceptions import ConfigError
from router_ml.online.attempts import AttemptPlan, Call, Wait
from router_ml.online.breaker import BreakerPolicy, Breakers, CircuitBreaker
from router_ml.online.llm import EmptyResponseError, LLMClient
from router_ml.online.outcome import Outcome
from router_ml.route_table import RouteTable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(breaker: CircuitBreaker, results: str) -> None:
    """Let one call through per letter and record it: s(uccess), f(ailure), n(eutral)."""
    names = {"s": "success", "f": "failure", "n": "neutral"}
    for letter in results:
        assert breaker.allow()
        breaker.record(names[letter])  # type: ignore[arg-type]


def test_random_faults_below_the_rate_keep_it_closed():
    rng = random.Random(0)
    calls = "".join("f" if rng.random() < 0.25 else "s" for _ in range(1000))
    assert "fff" in calls  # consecutive failures, which trip a count-based breaker
    breaker = CircuitBreaker(BreakerPolicy(min_calls=20, failure_rate=0.5), Clock())
    run(breaker, calls)
    assert breaker.state == "closed"


def test_it_needs_min_calls_then_opens_on_the_rate_and_recovers_through_probes():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(min_calls=4, failure_rate=0.5, open_seconds=5, probes=2), clock)
    run(breaker, "fff")
    assert breaker.state == "closed"  # three failures are not yet min_calls
    run(breaker, "f")
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.reopens_in() == pytest.approx(5.0)
    clock.now += 5.0
    assert breaker.state == "half_open"
    assert breaker.allow() and breaker.allow() and not breaker.allow()  # two probes at a time
    breaker.record("success")
    breaker.record("success")
    assert breaker.state == "closed"
    run(breaker, "fff")  # the window started afresh
    assert breaker.state == "closed"


def test_a_failed_probe_opens_it_again_and_caller_errors_do_not_count():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(min_calls=2, failure_rate=1.0, open_seconds=5), clock)
    run(breaker, "nnnnf")  # neutral results (a caller's own error) do not count
    assert breaker.state == "closed"
    run(breaker, "f")
    assert breaker.state == "open"
    clock.now += 5.0
    assert breaker.allow()
    breaker.record("failure")
    assert breaker.state == "open" and breaker.reopens_in() == pytest.approx(5.0)


def test_the_window_forgets_old_calls():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(window_seconds=10, min_calls=3, failure_rate=0.5), clock)
    run(breaker, "ff")
    clock.now += 11
    run(breaker, "sf")
    assert breaker.state == "closed"  # the two old failures left the window: 1 of 2 calls, below min_calls


def test_force_lets_one_call_through_an_open_breaker():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(min_calls=1, open_seconds=60), clock)
    run(breaker, "f")
    assert not breaker.allow()
    breaker.force()
    breaker.record("success")
    assert breaker.state in ("half_open", "closed")


def test_policy_is_validated():
    with pytest.raises(ConfigError, match="failure_rate"):
        BreakerPolicy(failure_rate=0)
    with pytest.raises(ConfigError, match="min_calls"):
        BreakerPolicy(min_calls=0)


@pytest.fixture(scope="module")
def llm() -> LLMClient:
    table = RouteTable.from_dict(
        {
            "default_route": "a",
            "routes": {"a": {"model": "openai/m1", "fallbacks": ["openai/m2", "openai/m3"]}},
            "models": {m: {"timeout": 2.0} for m in ("openai/m1", "openai/m2", "openai/m3")},
        }
    )
    return LLMClient(table, default_timeout=2.0)


def plan(llm: LLMClient, breakers: Breakers, deadline: float = 8.0, retries: int = 1) -> AttemptPlan:
    outcome = Outcome("r", time.time())
    chain = ["openai/m1", "openai/m2", "openai/m3"]
    messages = [{"role": "user", "content": "hi"}]
    return AttemptPlan(
        chain, messages, outcome, llm, breakers, deadline_at=time.perf_counter() + deadline, retries=retries
    )


def test_plan_walks_the_chain_then_retries_after_a_jittered_back_off(llm):
    p = plan(llm, Breakers())
    steps = p.steps()
    seen = []
    for step in steps:
        seen.append(step)
        if isinstance(step, Call):
            p.failed(step, TimeoutError("stall"), time.perf_counter())
    calls = [s.model for s in seen if isinstance(s, Call)]
    waits = [s for s in seen if isinstance(s, Wait)]
    assert calls == ["openai/m1", "openai/m2", "openai/m3"] * 2 and len(waits) == 1
    assert 0.1 <= waits[0].seconds <= 0.3
    assert all(s.timeout <= 2.0 for s in seen if isinstance(s, Call))
    assert [a.error for a in p.outcome.attempts] == ["Timeout"] * 6 and not p.deadline_hit


def test_plan_timeouts_shrink_to_the_deadline_and_it_stops_there(llm):
    p = plan(llm, Breakers(), deadline=0.3)
    first = next(p.steps())
    assert isinstance(first, Call) and first.timeout <= 0.3


def test_caller_errors_are_not_retried_and_retry_after_is_honoured_only_if_it_fits(llm):
    class BadRequestError(Exception):
        pass

    class RateLimitError(Exception):
        def __init__(self, seconds: str) -> None:
            super().__init__("slow down")
            self.litellm_response_headers = {"retry-after": seconds}

    p = plan(llm, Breakers())
    steps = p.steps()
    m1 = next(steps)
    p.failed(m1, BadRequestError("invalid"), time.perf_counter())
    m2 = next(steps)
    p.failed(m2, RateLimitError("60"), time.perf_counter())  # far beyond the 8 s deadline
    m3 = next(steps)
    p.failed(m3, EmptyResponseError("nothing"), time.perf_counter())
    rest = list(steps)
    assert [s.model for s in rest if isinstance(s, Call)] == ["openai/m3"]  # m1 caller error, m2 waits too long
    assert [a.error for a in p.outcome.attempts] == ["BadRequestError", "RateLimitError", "EmptyResponseError"]


def test_plan_skips_open_breakers_and_still_tries_one(llm):
    breakers = Breakers(BreakerPolicy(min_calls=1, open_seconds=60))
    for model in ("openai/m1", "openai/m2", "openai/m3"):
        run(breakers[model], "f")
    breakers["openai/m2"]._opened_at -= 30  # m2 is the closest to half-open
    p = plan(llm, breakers, retries=0)
    steps = list(p.steps())
    assert [s.model for s in steps if isinstance(s, Call)] == ["openai/m2"]
    assert [(a.model, a.error) for a in p.outcome.attempts] == [
        ("openai/m1", "BreakerOpen"),
        ("openai/m2", "BreakerOpen"),
        ("openai/m3", "BreakerOpen"),
    ]
