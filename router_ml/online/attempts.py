"""The dispatcher's failure policy for one request, in one place: which model to call next, how long the call may
take, when to wait, when to give up.

:class:`AttemptPlan` is a plan without I/O. Its :meth:`~AttemptPlan.steps` yield :class:`Call` (call this model,
within this timeout) or :class:`Wait` (back off this long); the dispatcher's sync and async drivers make the call
and report back with :meth:`~AttemptPlan.succeeded`, :meth:`~AttemptPlan.failed` or
:meth:`~AttemptPlan.abandoned`. So the sync and async paths share every decision and cannot drift apart.

The policy:

- Models are tried in the route's chain order (primary, then fallbacks). A model whose context window cannot hold
  the prompt is skipped up front; so is a model whose circuit breaker is open ("skipped: breaker open").
- Never a failure without a real attempt: when every model of the chain has an open breaker, the one closest to
  half-open is called anyway.
- Each call's timeout is the smaller of the model's timeout and the time left before the deadline.
- After a pass over the chain in which every call failed, the models that failed transiently get one more pass
  (``retries``) after an exponential back-off with jitter, if the deadline leaves room.
- A 429 with ``Retry-After`` keeps that model out until then; it is retried only if that fits the deadline,
  otherwise the request moves on to the other models.
- A caller's error (invalid request, context window) or a configuration error (key, permission, unknown model)
  is not retried on that model, and does not count against the provider.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from .breaker import Breakers
from .llm import LLMClient
from .outcome import Attempt, Outcome

__all__ = ["MIN_ATTEMPT_SECONDS", "AttemptPlan", "Call", "Wait"]

logger = logging.getLogger(__name__)

MIN_ATTEMPT_SECONDS = 0.05
"""A call is not started with less time than this left before the deadline."""


@dataclass(frozen=True)
class Call:
    """Call ``model`` now; the call may take at most ``timeout`` seconds."""

    model: str
    timeout: float


@dataclass(frozen=True)
class Wait:
    """Back off for ``seconds`` before the next call."""

    seconds: float


class AttemptPlan:
    """The attempts of one request (see the module docstring); it appends each one to ``outcome.attempts``.

    Args:
        chain (list[str]): the route's models, primary first.
        messages (list[dict] | Callable): the conversation, for the context-window check; or ``model → messages``
            when models are sent different conversations (each model's instructions first).
        outcome (Outcome): the request's record.
        llm (LLMClient): timeouts, context limits and failure classification.
        breakers (Breakers): the worker's circuit breakers.
        deadline_at (float): ``time.perf_counter()`` value after which no call starts.
        retries (int): extra passes over the models that failed transiently. Default 1.
        backoff (float): seconds before the first extra pass (doubling, with ±50 % jitter). Default 0.2.
    """

    def __init__(
        self,
        chain: list[str],
        messages: list[dict[str, Any]] | Callable[[str], list[dict[str, Any]]],
        outcome: Outcome,
        llm: LLMClient,
        breakers: Breakers,
        *,
        deadline_at: float,
        retries: int = 1,
        backoff: float = 0.2,
    ) -> None:
        self.outcome, self.llm, self.breakers = outcome, llm, breakers
        self.deadline_at, self.retries, self.backoff = deadline_at, retries, backoff
        self.deadline_hit = False
        self._calls = 0
        self._not_before: dict[str, float] = {}
        sent = messages if callable(messages) else lambda _model: messages
        self._eligible = [model for model in chain if self._fits(model, sent(model))]

    def time_left(self) -> float:
        """Seconds until the deadline."""
        return self.deadline_at - time.perf_counter()

    def _fits(self, model: str, messages: list[dict[str, Any]]) -> bool:
        """Whether the prompt fits the model's context window; records a skipped attempt if not."""
        limit = self.llm.context_limit(model)
        if limit is None:
            return True
        tokens = self.llm.count_tokens(model, messages=messages)
        if tokens <= limit:
            return True
        reason = f"prompt has {tokens} tokens, model accepts {limit}"
        self.outcome.attempts.append(Attempt(model, "skipped", "ContextWindowExceeded", reason))
        return False

    def _call(self, model: str) -> Call | None:
        """The call to make now, or None (and ``deadline_hit``) when the deadline leaves no room."""
        left = self.time_left()
        if left < MIN_ATTEMPT_SECONDS:
            self.deadline_hit = True
            return None
        self._calls += 1
        return Call(model, min(self.llm.timeout(model), left))

    def steps(self) -> Iterator[Call | Wait]:
        """What to do next, until a call succeeds (the driver stops iterating) or nothing is left to try."""
        for extra in range(self.retries + 1):
            if extra:
                pause = self._pause(extra)
                if pause is None:
                    return
                yield Wait(pause)
            finished = yield from self._pass(first=not extra)
            if finished or not self._eligible:
                return

    def _pass(self, *, first: bool) -> Generator[Call, None, bool]:
        """One pass over the eligible models; returns True when the deadline has passed."""
        called = False
        for model in list(self._eligible):
            if model not in self._eligible or self._not_before.get(model, 0.0) > time.perf_counter():
                continue
            breaker = self.breakers[model]
            if not breaker.allow():
                if first:
                    wait = breaker.reopens_in()
                    reason = f"breaker open: recent calls mostly failed; probes again in {wait:.1f}s"
                    self.outcome.attempts.append(Attempt(model, "skipped", "BreakerOpen", reason))
                continue
            call = self._call(model)
            if call is None:
                breaker.record("neutral")
                return True
            called = True
            yield call
        if not called and not self._calls and self._eligible:  # every breaker open: still one real attempt
            model = min(self._eligible, key=lambda m: self.breakers[m].reopens_in())
            self.breakers[model].force()
            call = self._call(model)
            if call is None:
                self.breakers[model].record("neutral")
                return True
            yield call
        return False

    def _pause(self, extra: int) -> float | None:
        """The back-off before extra pass ``extra``, or None when the deadline leaves no room for it."""
        now = time.perf_counter()
        latest = self.deadline_at - MIN_ATTEMPT_SECONDS
        self._eligible = [m for m in self._eligible if self._not_before.get(m, 0.0) <= latest]  # Retry-After fits
        if not self._eligible:
            return None
        pause = self.backoff * 2 ** (extra - 1) * random.uniform(0.5, 1.5)
        ready = min(self._not_before.get(m, 0.0) for m in self._eligible) - now
        pause = max(pause, ready)
        return pause if now + pause <= latest else None

    def succeeded(self, call: Call, began: float) -> None:
        """The call answered."""
        latency = (time.perf_counter() - began) * 1000
        self.outcome.attempts.append(Attempt(call.model, "ok", latency_ms=latency))
        self.breakers[call.model].record("success")

    def failed(self, call: Call, exc: BaseException, began: float) -> None:
        """The call failed with ``exc``: record it, tell the breaker, and decide whether the model stays eligible."""
        failure = self.llm.classify(exc)
        latency = (time.perf_counter() - began) * 1000
        self.outcome.attempts.append(Attempt(call.model, "error", failure.name, failure.reason, latency))
        self.breakers[call.model].record("failure" if failure.counts_against_provider else "neutral")
        if failure.kind == "config":
            logger.error(
                "configuration error calling %s (%s: %s): check its api_key_env, api_base and model name in the "
                "route table; falling back meanwhile",
                call.model, failure.name, failure.reason,
            )  # fmt: skip
        if failure.kind in ("caller", "config"):
            self._eligible.remove(call.model)
        elif failure.retry_after is not None:
            self._not_before[call.model] = time.perf_counter() + failure.retry_after
        if self.time_left() < MIN_ATTEMPT_SECONDS:
            self.deadline_hit = True

    def abandoned(self, call: Call) -> None:
        """The call was cancelled before it ended (the client went away): it says nothing of the provider."""
        self.breakers[call.model].record("neutral")
