"""Circuit breakers: each model's health, learned by one worker from its own calls.

A breaker is driven by the *rate* of failures over a sliding window of recent calls, not by a count: under 10 %
random faults a healthy provider keeps serving, while a provider that is down (most calls failing) is taken out
after ``min_calls`` calls. The states:

- **closed**: calls go through; once the window holds at least ``min_calls`` calls and the failure rate reaches
  ``failure_rate``, the breaker opens;
- **open**: calls are skipped (the dispatcher moves on to the next model at once, without waiting for a timeout)
  for ``open_seconds``;
- **half-open**: up to ``probes`` calls go through at a time; ``probes`` successes close the breaker (with an empty
  window), one failure opens it again.

Only what the provider's health explains counts: transient failures (timeouts, 5xx, dropped connections,
malformed or empty answers, rate limits). A caller's own error (an invalid request, a prompt over the context
window) releases the call without counting. Breakers hold no shared state: each worker, and each replica, learns
a provider's health from its own traffic. They are thread-safe.

Written here rather than taken from a library: the Python circuit breakers on PyPI (pybreaker, circuitbreaker,
aiobreaker, purgatory) count consecutive failures, which is exactly what turns 10 % random faults into outages.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..exceptions import ConfigError

__all__ = ["BreakerPolicy", "BreakerState", "Breakers", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]
Result = Literal["success", "failure", "neutral"]


@dataclass(frozen=True)
class BreakerPolicy:
    """When a model's breaker opens, and how it recovers.

    Args:
        window_seconds (float): how far back the failure rate looks. Default 30.
        min_calls (int): calls the window must hold before the rate can open the breaker. Default 10.
        failure_rate (float): share of failed calls in the window that opens the breaker. Default 0.5.
        open_seconds (float): how long an open breaker skips the model before it lets probes through. Default 5.
        probes (int): calls let through at a time when half-open; that many successes close it. Default 2.
    """

    window_seconds: float = 30.0
    min_calls: int = 10
    failure_rate: float = 0.5
    open_seconds: float = 5.0
    probes: int = 2

    def __post_init__(self) -> None:
        if self.window_seconds <= 0 or self.open_seconds <= 0:
            raise ConfigError(f"breaker window and open time must be positive, got {self}")
        if self.min_calls < 1 or self.probes < 1:
            raise ConfigError(f"breaker min_calls and probes must be at least 1, got {self}")
        if not 0.0 < self.failure_rate <= 1.0:
            raise ConfigError(f"breaker failure_rate must be in (0, 1], got {self.failure_rate}")


class CircuitBreaker:
    """One model's breaker (see the module docstring). Every call that :meth:`allow` let through must end in
    exactly one :meth:`record`."""

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: deque[tuple[float, bool]] = deque()
        self._state: BreakerState = "closed"
        self._opened_at = 0.0
        self._probing = 0
        self._probe_successes = 0

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose time is up reads as half-open)."""
        with self._lock:
            self._advance(self._clock())
            return self._state

    def _advance(self, now: float) -> None:
        if self._state == "open" and now - self._opened_at >= self.policy.open_seconds:
            self._state, self._probing, self._probe_successes = "half_open", 0, 0

    def _open(self, now: float) -> None:
        self._state, self._opened_at, self._probing = "open", now, 0
        self._calls.clear()

    def allow(self) -> bool:
        """Whether a call may go to the model now (a half-open breaker counts it as a probe)."""
        with self._lock:
            self._advance(self._clock())
            if self._state == "closed":
                return True
            if self._state == "half_open" and self._probing < self.policy.probes:
                self._probing += 1
                return True
            return False

    def force(self) -> None:
        """Let one call through whatever the state (when every model of a request is open, the dispatcher
        still makes one real attempt); it counts as a probe."""
        with self._lock:
            self._advance(self._clock())
            if self._state != "closed":
                self._state = "half_open"
                self._probing += 1

    def reopens_in(self) -> float:
        """Seconds until the breaker lets probes through (0 when it does now)."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            if self._state != "open":
                return 0.0
            return max(0.0, self._opened_at + self.policy.open_seconds - now)

    def record(self, result: Result) -> None:
        """The end of a call :meth:`allow` (or :meth:`force`) let through."""
        with self._lock:
            now = self._clock()
            if self._state == "half_open":
                self._probing = max(0, self._probing - 1)
                if result == "failure":
                    self._open(now)
                elif result == "success":
                    self._probe_successes += 1
                    if self._probe_successes >= self.policy.probes:
                        self._state = "closed"
                        self._calls.clear()
                return
            if self._state == "open" or result == "neutral":
                return  # a call from before the breaker opened, or one that says nothing of the provider
            self._calls.append((now, result == "success"))
            while self._calls and now - self._calls[0][0] > self.policy.window_seconds:
                self._calls.popleft()
            failures = sum(not ok for _, ok in self._calls)
            if len(self._calls) >= self.policy.min_calls and failures >= self.policy.failure_rate * len(self._calls):
                self._open(now)


class Breakers:
    """The breakers of one worker, one per model, made on first use."""

    def __init__(self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def __getitem__(self, model: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(model)
            if breaker is None:
                breaker = self._breakers[model] = CircuitBreaker(self.policy, self._clock)
            return breaker

    def states(self) -> dict[str, BreakerState]:
        """Each model's breaker state."""
        with self._lock:
            breakers = dict(self._breakers)
        return {model: breaker.state for model, breaker in breakers.items()}
