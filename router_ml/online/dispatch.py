"""Dispatch a routed request to its specialist model, surviving provider faults, and log the outcome.

The pieces, each in one place:

- :mod:`router_ml.online.llm` makes one call to one model through litellm (the only module that imports it),
  with no hidden retries or cooldowns, and sorts failures (transient, rate limit, caller, configuration);
- :mod:`router_ml.online.breaker` keeps each model's circuit breaker, driven by its failure *rate* in this worker;
- :mod:`router_ml.online.attempts` is the failure policy: which model next, each call's timeout within the hard
  deadline, back-off with jitter, ``Retry-After``, skipping open breakers but never failing without a real call;
- :mod:`router_ml.online.streams` holds a stream back until its first content (a failure before that falls back
  like a plain call) and makes a stream that ends without content or finish reason a failure, never ``ok``.

This module routes (or takes a forced route or model, or a session's pinned model: :mod:`.sessions`), sends each
model the route table's instructions and default parameters under the caller's own
(:mod:`router_ml.route_table_options`),
runs the plan with a sync or an async driver (the same few lines each), and writes one
:class:`~router_ml.online.outcome.Outcome` per request, whatever happened.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigError, DispatchError
from ..route_table import RouteTable
from ..router import Decision, Prompt, Router, routing_texts
from .attempts import AttemptPlan, Wait
from .breaker import BreakerPolicy, Breakers
from .llm import LLMClient
from .outcome import Outcome, OutcomeStatus
from .request import check_caller_params, conversation, model_request, sent_messages
from .sessions import DEFAULT_SESSION_TTL, SessionPins, check_session
from .store import OutcomeStore
from .streams import StreamState, alogged, aprime, check_answer, logged, prime

__all__ = ["DispatchError", "DispatchResult", "Dispatcher"]


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
    sent: list[dict[str, Any]]
    primed: StreamState | None = None


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
        session_ttl (float): seconds a session's pin lives after its last turn (shared through ``store``); 0 turns
            stickiness off. Default 1800.
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
        session_ttl: float = DEFAULT_SESSION_TTL,
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
        self.pins = SessionPins(session_ttl, store.target if store is not None else None) if session_ttl else None

    # -- planning ----------------------------------------------------------------------------------------------
    def _prepare(
        self, prompt: Prompt, route: str | None, model: str | None, params: Mapping[str, Any], session: str | None,
        score_failures: bool,
    ) -> tuple[Outcome, list[str] | None, list[dict[str, Any]]]:  # fmt: skip
        """Validate the request; the chain is ``None`` when the router (or a session's pin) still has to decide."""
        check_caller_params(params)
        check_session(session)
        text, _ = routing_texts(prompt)  # validates the prompt (empty messages, no user turn, ...)
        outcome = Outcome(request_id=uuid.uuid4().hex, started_at=time.time(), prompt_text=text)
        outcome.score_failures = bool(score_failures)
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
        return outcome, chain, conversation(prompt)

    def _apply(self, outcome: Outcome, decision: Decision) -> list[str]:
        """Record the router's decision on the outcome; return the model chain: the route's, or for a quality
        route the router's pick and its fallbacks by predicted success."""
        outcome.routing_ms = decision.latency_ms
        outcome.label, outcome.predicted = decision.label, decision.predicted
        outcome.confidence, outcome.probabilities = decision.confidence, decision.probabilities
        outcome.abstained = decision.abstained
        outcome.propensity, outcome.explored = decision.propensity, decision.explored
        if decision.strategy == "quality":  # the router picked the model and ordered the fallbacks
            return list(decision.chain)
        return list(self.routes[decision.label].chain)

    def _plan(self, outcome: Outcome, chain: list[str], messages: list[dict[str, Any]], began: float) -> AttemptPlan:
        """The attempts of one request; its deadline counts from ``began``, the request's arrival (routing too)."""
        deadline_at = began + self.deadline
        label = outcome.label

        def sent(model: str) -> list[dict[str, Any]]:  # what each model is sent (its context window is checked)
            return sent_messages(self.routes, model, label, messages)

        return AttemptPlan(chain, sent, outcome, self.llm, self.breakers, deadline_at=deadline_at, retries=self.retries)

    def _request(
        self, outcome: Outcome, model: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The messages and parameters of one call to ``model``; the outcome notes its instructions."""
        call = model_request(self.routes, model, outcome.label, messages, params)
        outcome.instructions_hash = call.instructions_hash
        return call.messages, call.params

    async def _offload(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run a pin lookup or write: in a thread when pins live in a shared store (I/O), else right here."""
        if self.pins is not None and self.pins.shared:
            return await asyncio.to_thread(func, *args)
        return func(*args)

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

    def _stream_done(self, outcome: Outcome, answer: _Answer, exc: BaseException | None) -> None:
        """Log a stream once it has ended, broken, or been abandoned by its reader."""
        assert outcome.model is not None and answer.primed is not None
        outcome.provider_ms = (time.perf_counter() - answer.began) * 1000
        usage = answer.primed.usage()
        outcome.prompt_tokens = getattr(usage, "prompt_tokens", None) or self.llm.count_tokens(
            outcome.model, messages=answer.sent
        )
        outcome.completion_tokens = getattr(usage, "completion_tokens", None) or self.llm.count_tokens(
            outcome.model, text=answer.primed.text()
        )
        outcome.cost_usd = self.llm.cost(outcome.model, None, outcome.prompt_tokens, outcome.completion_tokens)
        if exc is None:
            self._finish(outcome, "ok")
        elif isinstance(exc, GeneratorExit | asyncio.CancelledError):  # the reader stopped reading
            self._finish(outcome, "stream_cancelled", "the client stopped reading the stream")
        else:  # the provider's stream broke, or ended incomplete
            failure = self.llm.classify(exc)
            self._finish(outcome, "stream_error", f"{failure.name}: {failure.reason}")

    def _streaming(self, outcome: Outcome, decision: Decision | None, answer: _Answer, sync: bool) -> DispatchResult:
        """The result of a stream that started; it is logged when it ends (:meth:`_stream_done`)."""
        outcome.stream, outcome.model = True, answer.model
        relay = logged if sync else alogged
        chunks = relay(answer.response, answer.primed, functools.partial(self._stream_done, outcome, answer))
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
        session: str | None = None,
        score_failures: bool = True,
        **params: Any,
    ) -> DispatchResult:
        """Route ``prompt`` (a string or OpenAI-style messages) and call the model, asynchronously.

        Args:
            route (str | None): force this route instead of asking the router (the session's pin is bypassed).
            model (str | None): force this model (no fallbacks; the session's pin is bypassed).
            decision_only (bool): route and log, but call no model (sessions are not consulted).
            stream (bool): return a stream of chunks in ``result.stream``; it is returned only once its first
                content has arrived, so a stream that fails before that falls back like a plain call.
            session (str | None): the conversation's id: its first routed turn pins it to the model that answered,
                later turns go there first (``result.outcome.sticky`` says whether the pin held).
            score_failures (bool): a failed call counts as a 0 outcome for its model in the outcomes retraining
                learns from (``outcomes export --kind outcomes``); ``False`` keeps this request's failures out.
            **params: passed to the model (temperature, max_tokens, tools, ...), over the route table's defaults.

        Raises:
            DispatchError: every model in the chain failed, or the deadline passed (the outcome is logged).
        """
        began = time.perf_counter()
        outcome, chain, messages = self._prepare(prompt, route, model, params, session, score_failures)
        decision, pin = None, None
        if chain is None and session is not None and self.pins is not None and not decision_only:
            pin, chain = await self._offload(self.pins.resume, session, self.routes, outcome)
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
        outcome.model = answer.model
        if session is not None and self.pins is not None:
            await self._offload(self.pins.settle, session, pin, outcome)
        if answer.primed is None:
            return self._answered(outcome, decision, answer)
        return self._streaming(outcome, decision, answer, sync=False)

    async def _arun(
        self, plan: AttemptPlan, messages: list[dict[str, Any]], stream: bool, params: dict[str, Any]
    ) -> _Answer | None:
        """The async driver of the plan: the first answer, or None when nothing answered."""
        for step in plan.steps():
            if isinstance(step, Wait):
                await asyncio.sleep(step.seconds)
                continue
            began = time.perf_counter()
            sent, call_params = self._request(plan.outcome, step.model, messages, params)
            try:
                async with asyncio.timeout(step.timeout):  # hard: the call and, for streams, the first content
                    response = await self.llm.acomplete(
                        step.model, sent, timeout=step.timeout, stream=stream, **call_params
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
            return _Answer(step.model, response, began, sent, primed)
        return None

    # -- sync --------------------------------------------------------------------------------------------------
    def complete(
        self,
        prompt: Prompt,
        *,
        route: str | None = None,
        model: str | None = None,
        decision_only: bool = False,
        stream: bool = False,
        session: str | None = None,
        score_failures: bool = True,
        **params: Any,
    ) -> DispatchResult:
        """Synchronous :meth:`acomplete` (same arguments, same policy and logging; streams are plain iterators)."""
        began = time.perf_counter()
        outcome, chain, messages = self._prepare(prompt, route, model, params, session, score_failures)
        decision, pin = None, None
        if chain is None and session is not None and self.pins is not None and not decision_only:
            pin, chain = self.pins.resume(session, self.routes, outcome)
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
        outcome.model = answer.model
        if session is not None and self.pins is not None:
            self.pins.settle(session, pin, outcome)
        if answer.primed is None:
            return self._answered(outcome, decision, answer)
        return self._streaming(outcome, decision, answer, sync=True)

    def _run(
        self, plan: AttemptPlan, messages: list[dict[str, Any]], stream: bool, params: dict[str, Any]
    ) -> _Answer | None:
        """The sync driver of the plan (the call's timeout bounds each read of the provider's answer)."""
        for step in plan.steps():
            if isinstance(step, Wait):
                time.sleep(step.seconds)
                continue
            began = time.perf_counter()
            sent, call_params = self._request(plan.outcome, step.model, messages, params)
            try:
                response = self.llm.complete(step.model, sent, timeout=step.timeout, stream=stream, **call_params)
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
            return _Answer(step.model, response, began, sent, primed)
        return None
