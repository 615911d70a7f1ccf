"""Dispatch a routed request to its specialist model, surviving provider faults, and log the outcome.

The pieces, each in one place:

- :mod:`router_ml.online.llm` makes one call to one model through litellm (the only module that imports it),
  with no hidden retries or cooldowns, and sorts failures (transient, rate limit, caller, configuration);
- :mod:`router_ml.online.breaker` keeps each model's circuit breaker, driven by its failure *rate* in this worker;
- :mod:`router_ml.online.attempts` is the failure policy: which model next, each call's timeout within the hard
  deadline, back-off with jitter, ``Retry-After``, skipping open breakers but never failing without a real call;
- :mod:`router_ml.online.streams` holds a stream back until its first content (a failure before that falls back
  like a plain call) and makes a stream that ends without content or finish reason a failure, never ``ok``.

This module routes (or takes a forced route or model), runs the plan with a sync or an async driver (the same
few lines each), and writes one :class:`~router_ml.online.outcome.Outcome` per request, whatever happened.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigError, DataError, DispatchError
from ..route import Decision, Prompt, Router, routing_texts
from ..routes import RouteTable
from .attempts import AttemptPlan, Wait
from .breaker import BreakerPolicy, Breakers
from .llm import LLMClient
from .outcome import Outcome, OutcomeStatus
from .store import OutcomeStore
from .streams import StreamState, aprime, arelay, check_answer, prime, relay

__all__ = ["DispatchError", "DispatchResult", "Dispatcher"]

_PASS_THROUGH = {
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "tools", "tool_choice", "n",
    "presence_penalty", "frequency_penalty", "seed", "response_format", "user", "logprobs", "top_logprobs",
    "parallel_tool_calls", "stream_options", "metadata",
}  # fmt: skip


@dataclass
class DispatchResult:
    """What :meth:`Dispatcher.complete` returns.

    Attributes:
        request_id (str): id of the logged outcome (attach feedback with it).
        decision (Decision | None): the routing decision (``None`` when a route or model was forced).
        response (Any): litellm's ``ModelResponse`` (``None`` for decision-only requests and streams).
        stream (Any): for ``stream=True``, an iterator (sync) or async iterator of chunks; the outcome is logged
            when it ends or breaks.
        outcome (Outcome): the record (for streams, complete once the stream has ended).
    """

    request_id: str
    decision: Decision | None
    outcome: Outcome
    response: Any = None
    stream: Any = None


@dataclass
class _Answer:
    """A call that answered: the model, the response, and for streams what was read before the commit."""

    model: str
    response: Any
    began: float
    primed: StreamState | None = None


def _messages(prompt: Prompt) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


class Dispatcher:
    """Routes prompts and calls the routed model (falling back along the route's chain), logging every outcome.

    Args:
        router (Router | None): the trained router; without one, every call must force a route or a model.
        routes (RouteTable | None): models, fallbacks, prices and endpoints; the router's when ``None``.
        store (OutcomeStore | None): where outcomes are written; none when ``None``.
        timeout (float): default seconds per model call. Default 60.
        deadline (float): hard limit in seconds for a whole request from its arrival: routing, fallbacks and
            retries included. Default 120.
        breaker (BreakerPolicy | None): when a model's circuit breaker opens and how it recovers.
        retries (int): extra passes over the models that failed transiently, within the deadline. Default 1.
        decide (Callable | None): async ``prompt → Decision`` for :meth:`acomplete` (the service passes its
            micro-batcher); by default ``router.route`` runs in a thread.
    """

    def __init__(
        self,
        router: Router | None = None,
        routes: RouteTable | None = None,
        store: OutcomeStore | None = None,
        *,
        timeout: float = 60.0,
        deadline: float = 120.0,
        breaker: BreakerPolicy | None = None,
        retries: int = 1,
        decide: Callable[[Prompt], Awaitable[Decision]] | None = None,
    ) -> None:
        if router is None and routes is None:
            raise ConfigError("a Dispatcher needs a router or a route table")
        if timeout <= 0 or deadline <= 0 or retries < 0:
            raise ConfigError(
                f"timeout and deadline must be positive and retries ≥ 0, got {timeout}, {deadline}, {retries}"
            )
        self.router = router
        self.routes = routes or router.routes  # type: ignore[union-attr]
        self.store = store
        self.timeout, self.deadline, self.retries = timeout, deadline, retries
        self.decide = decide
        self.breakers = Breakers(breaker)
        self.llm = LLMClient(self.routes, timeout)

    # -- planning ----------------------------------------------------------------------------------------------
    def _prepare(
        self, prompt: Prompt, route: str | None, model: str | None, params: Mapping[str, Any]
    ) -> tuple[Outcome, list[str] | None, list[dict[str, Any]]]:
        """Validate the request; the chain is ``None`` when the router still has to decide."""
        unknown = set(params) - _PASS_THROUGH
        if unknown:
            raise DataError(f"unsupported parameters {sorted(unknown)}; supported: {sorted(_PASS_THROUGH)}")
        text, _ = routing_texts(prompt)  # validates the prompt (empty messages, no user turn, ...)
        outcome = Outcome(request_id=uuid.uuid4().hex, started_at=time.time(), prompt_text=text)
        if self.router is not None:
            outcome.router_version = self.router.version
        chain: list[str] | None = None
        if model is not None:
            if model not in self.routes.all_models:
                raise ConfigError(f"unknown model {model!r}; the route table knows {self.routes.all_models}")
            chain, outcome.forced = [model], f"model:{model}"
        elif route is not None:
            chain, outcome.forced, outcome.label = list(self.routes[route].chain), f"route:{route}", route
        elif self.router is None:
            raise ConfigError("this Dispatcher has no router: pass route= or model=")
        return outcome, chain, _messages(prompt)

    def _apply(self, outcome: Outcome, decision: Decision) -> list[str]:
        """Record the router's decision on the outcome; return the route's model chain."""
        outcome.routing_ms = decision.latency_ms
        outcome.label, outcome.predicted = decision.label, decision.predicted
        outcome.confidence, outcome.probabilities = decision.confidence, decision.probabilities
        outcome.abstained = decision.abstained
        return list(self.routes[decision.label].chain)

    def _plan(self, outcome: Outcome, chain: list[str], messages: list[dict[str, Any]], began: float) -> AttemptPlan:
        """The attempts of one request; its deadline counts from ``began``, the request's arrival (routing too)."""
        deadline_at = began + self.deadline
        return AttemptPlan(
            chain, messages, outcome, self.llm, self.breakers, deadline_at=deadline_at, retries=self.retries
        )

    # -- recording ---------------------------------------------------------------------------------------------
    def _finish(self, outcome: Outcome, status: OutcomeStatus, error: str | None = None) -> None:
        outcome.status, outcome.error, outcome.finished_at = status, error, time.time()
        if self.store is not None:
            self.store.record(outcome)

    def _give_up(self, outcome: Outcome, plan: AttemptPlan) -> DispatchError:
        reasons = "; ".join(f"{a.model}: {a.error} ({a.reason})" for a in outcome.attempts) or "no model to try"
        status: OutcomeStatus = "deadline" if plan.deadline_hit else "error"
        message = (
            f"request {outcome.request_id}: the {self.deadline:g}s deadline passed" if plan.deadline_hit else
            f"request {outcome.request_id}: every model failed"
        ) + f" — {reasons}"  # fmt: skip
        self._finish(outcome, status, message)
        return DispatchError(message, outcome)

    def _answered(self, outcome: Outcome, decision: Decision | None, answer: _Answer) -> DispatchResult:
        """Record a plain answer."""
        usage = getattr(answer.response, "usage", None)
        outcome.model = answer.model
        outcome.provider_ms = (time.perf_counter() - answer.began) * 1000
        outcome.prompt_tokens = getattr(usage, "prompt_tokens", None)
        outcome.completion_tokens = getattr(usage, "completion_tokens", None)
        outcome.cost_usd = self.llm.cost(
            answer.model, answer.response, outcome.prompt_tokens, outcome.completion_tokens
        )
        self._finish(outcome, "ok")
        return DispatchResult(outcome.request_id, decision, outcome, response=answer.response)

    def _stream_done(
        self,
        outcome: Outcome,
        state: StreamState,
        messages: list[dict[str, Any]],
        began: float,
        exc: BaseException | None,
    ) -> None:
        """Log a stream once it has ended, broken, or been abandoned by its reader."""
        assert outcome.model is not None
        outcome.provider_ms = (time.perf_counter() - began) * 1000
        usage = state.usage()
        outcome.prompt_tokens = getattr(usage, "prompt_tokens", None) or self.llm.count_tokens(
            outcome.model, messages=messages
        )
        outcome.completion_tokens = getattr(usage, "completion_tokens", None) or self.llm.count_tokens(
            outcome.model, text=state.text()
        )
        outcome.cost_usd = self.llm.cost(outcome.model, None, outcome.prompt_tokens, outcome.completion_tokens)
        if exc is None:
            self._finish(outcome, "ok")
        elif isinstance(exc, GeneratorExit | asyncio.CancelledError):  # the reader stopped reading
            self._finish(outcome, "stream_cancelled", "the client stopped reading the stream")
        else:  # the provider's stream broke, or ended incomplete
            failure = self.llm.classify(exc)
            self._finish(outcome, "stream_error", f"{failure.name}: {failure.reason}")

    def _streaming(self, outcome: Outcome, decision: Decision | None, answer: _Answer, chunks: Any) -> DispatchResult:
        outcome.stream, outcome.model = True, answer.model
        return DispatchResult(outcome.request_id, decision, outcome, stream=chunks)

    # -- async -------------------------------------------------------------------------------------------------
    async def acomplete(
        self,
        prompt: Prompt,
        *,
        route: str | None = None,
        model: str | None = None,
        decision_only: bool = False,
        stream: bool = False,
        **params: Any,
    ) -> DispatchResult:
        """Route ``prompt`` (a string or OpenAI-style messages) and call the model, asynchronously.

        Args:
            route (str | None): force this route instead of asking the router.
            model (str | None): force this model (no fallbacks).
            decision_only (bool): route and log, but call no model.
            stream (bool): return a stream of chunks in ``result.stream``; it is returned only once its first
                content has arrived, so a stream that fails before that falls back like a plain call.
            **params: passed to the model (temperature, max_tokens, tools, ...).

        Raises:
            DispatchError: every model in the chain failed, or the deadline passed (the outcome is logged).
        """
        began = time.perf_counter()
        outcome, chain, messages = self._prepare(prompt, route, model, params)
        decision = None
        if chain is None:
            assert self.router is not None
            if self.decide is not None:
                decision = await self.decide(prompt)
            else:
                decision = await asyncio.to_thread(self.router.route, prompt)  # embedding stays off the event loop
            chain = self._apply(outcome, decision)
        if decision_only:
            self._finish(outcome, "decision_only")
            return DispatchResult(outcome.request_id, decision, outcome)
        plan = self._plan(outcome, chain, messages, began)
        answer = await self._arun(plan, messages, stream, params)
        if answer is None:
            raise self._give_up(outcome, plan)
        if answer.primed is None:
            return self._answered(outcome, decision, answer)
        chunks = self._alogged(outcome, answer, messages)
        return self._streaming(outcome, decision, answer, chunks)

    async def _arun(
        self, plan: AttemptPlan, messages: list[dict[str, Any]], stream: bool, params: dict[str, Any]
    ) -> _Answer | None:
        """The async driver of the plan: the first answer, or None when nothing answered."""
        for step in plan.steps():
            if isinstance(step, Wait):
                await asyncio.sleep(step.seconds)
                continue
            began = time.perf_counter()
            try:
                async with asyncio.timeout(step.timeout):  # hard: the call and, for streams, the first content
                    response = await self.llm.acomplete(
                        step.model, messages, timeout=step.timeout, stream=stream, **params
                    )
                    primed = await aprime(response) if stream else None
                    if not stream:
                        check_answer(response)
            except Exception as exc:  # every provider failure; the plan decides what follows
                plan.failed(step, exc, began)
                continue
            except BaseException:
                plan.abandoned(step)
                raise
            plan.succeeded(step, began)
            return _Answer(step.model, response, began, primed)
        return None

    async def _alogged(self, outcome: Outcome, answer: _Answer, messages: list[dict[str, Any]]) -> AsyncIterator[Any]:
        assert answer.primed is not None
        error: BaseException | None = None
        try:
            async for chunk in arelay(answer.response, answer.primed):
                yield chunk
        except (Exception, GeneratorExit, asyncio.CancelledError) as exc:
            error = exc
            raise
        finally:
            self._stream_done(outcome, answer.primed, messages, answer.began, error)

    # -- sync --------------------------------------------------------------------------------------------------
    def complete(
        self,
        prompt: Prompt,
        *,
        route: str | None = None,
        model: str | None = None,
        decision_only: bool = False,
        stream: bool = False,
        **params: Any,
    ) -> DispatchResult:
        """Synchronous :meth:`acomplete` (same arguments, same policy and logging; streams are plain iterators)."""
        began = time.perf_counter()
        outcome, chain, messages = self._prepare(prompt, route, model, params)
        decision = None
        if chain is None:
            assert self.router is not None
            decision = self.router.route(prompt)
            chain = self._apply(outcome, decision)
        if decision_only:
            self._finish(outcome, "decision_only")
            return DispatchResult(outcome.request_id, decision, outcome)
        plan = self._plan(outcome, chain, messages, began)
        answer = self._run(plan, messages, stream, params)
        if answer is None:
            raise self._give_up(outcome, plan)
        if answer.primed is None:
            return self._answered(outcome, decision, answer)
        return self._streaming(outcome, decision, answer, self._logged(outcome, answer, messages))

    def _run(
        self, plan: AttemptPlan, messages: list[dict[str, Any]], stream: bool, params: dict[str, Any]
    ) -> _Answer | None:
        """The sync driver of the plan (the call's timeout bounds each read of the provider's answer)."""
        for step in plan.steps():
            if isinstance(step, Wait):
                time.sleep(step.seconds)
                continue
            began = time.perf_counter()
            try:
                response = self.llm.complete(step.model, messages, timeout=step.timeout, stream=stream, **params)
                primed = prime(response) if stream else None
                if not stream:
                    check_answer(response)
            except Exception as exc:  # every provider failure; the plan decides what follows
                plan.failed(step, exc, began)
                continue
            except BaseException:
                plan.abandoned(step)
                raise
            plan.succeeded(step, began)
            return _Answer(step.model, response, began, primed)
        return None

    def _logged(self, outcome: Outcome, answer: _Answer, messages: list[dict[str, Any]]) -> Iterator[Any]:
        assert answer.primed is not None
        error: BaseException | None = None
        try:
            yield from relay(answer.response, answer.primed)
        except (Exception, GeneratorExit) as exc:
            error = exc
            raise
        finally:
            self._stream_done(outcome, answer.primed, messages, answer.began, error)
