"""Dispatch a routed request to its specialist model through litellm, with fallbacks, and log the outcome.

This is the only module that imports litellm. It builds on :class:`litellm.Router` for what litellm does well:
the HTTP calls to every provider, retries with back-off (rate limits by default), and cooldowns (a model that
keeps failing is skipped without waiting for its timeout, via an explicit ``AllowedFailsPolicy``: with the default
policy litellm never cools down a model group of one deployment, which is every model here).

Two pieces are written here, where litellm's own falls short:

- The fallback chain. ``litellm.Router(fallbacks=...)`` returns only the final response or exception; it does not
  report which models were tried and why each failed, which the outcome log must record. So the chain from the
  route table is walked here, one ``Router.acompletion`` per model, keeping each model's error class and reason.
- The context-window check. litellm's ``context_window_fallbacks`` acts only after a provider has rejected a
  prompt (a wasted round trip, and it needs litellm to know the model). Here the prompt is counted with
  ``litellm.token_counter`` before the call and compared with the route table's ``max_input_tokens`` or litellm's
  model info, and a model that cannot fit is skipped with that reason.

A hard deadline bounds the whole request; each attempt's timeout is the smaller of the model's timeout and the
time left.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigError, DataError, DispatchError
from ..route import Decision, Prompt, Router, routing_texts
from ..routes import RouteTable
from .outcome import Attempt, Outcome
from .store import OutcomeStore

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map over the network
import litellm
from litellm.types.router import AllowedFailsPolicy, RetryPolicy

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
        decision (Decision | None): the routing decision (``None`` when a model was forced).
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


def _messages(prompt: Prompt) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def _error_name(exc: BaseException) -> str:
    return type(exc).__name__


def _reason(exc: BaseException) -> str:
    """The exception's message on one line, at most 300 characters."""
    return " ".join(str(exc).split())[:300]


class Dispatcher:
    """Routes prompts and calls the routed model (falling back along the route's chain), logging every outcome.

    Args:
        router (Router | None): the trained router; without one, every call must force a route or a model.
        routes (RouteTable | None): models, fallbacks, prices and endpoints; the router's when ``None``.
        store (OutcomeStore | None): where outcomes are written; none when ``None``.
        timeout (float): default seconds per model call. Default 60.
        deadline (float): hard limit in seconds for a whole request, fallbacks included. Default 120.
        cooldown_seconds (float): how long a failing model is skipped. Default 30.
        allowed_fails (int): failures of one kind a model may have (per minute) before its cooldown. Default 3.
        rate_limit_retries (int): retries, with back-off, of a rate-limited model before falling back. Default 1.
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
        cooldown_seconds: float = 30.0,
        allowed_fails: int = 3,
        rate_limit_retries: int = 1,
        decide: Callable[[Prompt], Awaitable[Decision]] | None = None,
    ) -> None:
        if router is None and routes is None:
            raise ConfigError("a Dispatcher needs a router or a route table")
        if timeout <= 0 or deadline <= 0:
            raise ConfigError(f"timeout and deadline must be positive, got {timeout} and {deadline}")
        self.router = router
        self.routes = routes or router.routes  # type: ignore[union-attr]
        self.store = store
        self.timeout = timeout
        self.deadline = deadline
        self.decide = decide
        self.llm = litellm.Router(
            model_list=[self._deployment(model) for model in self.routes.all_models],
            num_retries=rate_limit_retries,
            retry_policy=RetryPolicy(RateLimitErrorRetries=rate_limit_retries, DefaultRetries=0),
            allowed_fails_policy=AllowedFailsPolicy(
                InternalServerErrorAllowedFails=allowed_fails,
                TimeoutErrorAllowedFails=allowed_fails,
                RateLimitErrorAllowedFails=allowed_fails,
                ServiceUnavailableErrorAllowedFails=allowed_fails,
                BadGatewayErrorAllowedFails=allowed_fails,
            ),
            cooldown_time=cooldown_seconds,
        )

    def _deployment(self, model: str) -> dict[str, Any]:
        spec = self.routes.price_of(model)
        params: dict[str, Any] = {"model": model, "max_retries": 0}  # no hidden SDK retries: litellm's only
        if spec is not None and spec.api_base:
            params["api_base"] = spec.api_base
        if spec is not None and spec.api_key_env:
            params["api_key"] = os.environ.get(spec.api_key_env, "")
        params["timeout"] = (spec.timeout if spec is not None and spec.timeout else None) or self.timeout
        return {"model_name": model, "litellm_params": params}

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

    def _fits(self, model: str, messages: list[dict[str, Any]], outcome: Outcome) -> bool:
        """Whether the prompt fits the model's context window; records a skipped attempt if not."""
        spec = self.routes.price_of(model)
        limit = spec.max_input_tokens if spec is not None else None
        if limit is None:
            try:
                limit = litellm.get_model_info(model).get("max_input_tokens")
            except Exception:  # litellm raises for models it does not know: no limit to check
                limit = None
        if limit is None:
            return True
        tokens = litellm.token_counter(model=model, messages=messages)
        if tokens <= limit:
            return True
        outcome.attempts.append(
            Attempt(model, "skipped", "ContextWindowExceeded", f"prompt has {tokens} tokens, model accepts {limit}")
        )
        return False

    def _cost(
        self, model: str, response: Any, prompt_tokens: int | None, completion_tokens: int | None
    ) -> float | None:
        spec = self.routes.price_of(model)
        if spec is not None and prompt_tokens is not None and completion_tokens is not None:
            return spec.cost(prompt_tokens, completion_tokens)
        try:
            return float(litellm.completion_cost(completion_response=response))
        except Exception:  # litellm raises for models without a known price
            return None

    def _succeeded(self, outcome: Outcome, model: str, response: Any, began: float) -> None:
        usage = getattr(response, "usage", None)
        outcome.model = model
        outcome.provider_ms = (time.perf_counter() - began) * 1000
        outcome.prompt_tokens = getattr(usage, "prompt_tokens", None)
        outcome.completion_tokens = getattr(usage, "completion_tokens", None)
        outcome.cost_usd = self._cost(model, response, outcome.prompt_tokens, outcome.completion_tokens)

    def _finish(self, outcome: Outcome, status: str, error: str | None = None) -> None:
        outcome.status = status
        outcome.error = error
        outcome.finished_at = time.time()
        if self.store is not None:
            self.store.record(outcome)

    def _give_up(self, outcome: Outcome, deadline_hit: bool) -> DispatchError:
        reasons = "; ".join(f"{a.model}: {a.error} ({a.reason})" for a in outcome.attempts) or "no model to try"
        status = "deadline" if deadline_hit else "error"
        message = (
            f"request {outcome.request_id}: the {self.deadline:g}s deadline passed" if deadline_hit else
            f"request {outcome.request_id}: every model failed"
        ) + f" — {reasons}"  # fmt: skip
        self._finish(outcome, status, message)
        return DispatchError(message, outcome)

    def _attempt_timeout(self, model: str, stop_at: float) -> float:
        spec = self.routes.price_of(model)
        per_model = spec.timeout if spec is not None and spec.timeout else self.timeout
        return max(0.001, min(per_model, stop_at - time.perf_counter()))

    def _candidates(
        self, chain: list[str], messages: list[dict[str, Any]], outcome: Outcome, stop_at: float
    ) -> Iterator[str]:
        """The chain's models that fit the prompt, in order; raises once the deadline has passed."""
        for candidate in chain:
            if time.perf_counter() >= stop_at:
                raise self._give_up(outcome, deadline_hit=True)
            if self._fits(candidate, messages, outcome):
                yield candidate

    @staticmethod
    def _failed(outcome: Outcome, model: str, exc: BaseException, began: float) -> None:
        latency = (time.perf_counter() - began) * 1000
        outcome.attempts.append(Attempt(model, "error", _error_name(exc), _reason(exc), latency))

    def _answered(
        self, outcome: Outcome, decision: Decision | None, model: str, response: Any, began: float
    ) -> DispatchResult:
        """Record a successful non-streaming call."""
        outcome.attempts.append(Attempt(model, "ok", latency_ms=(time.perf_counter() - began) * 1000))
        self._succeeded(outcome, model, response, began)
        self._finish(outcome, "ok")
        return DispatchResult(outcome.request_id, decision, outcome, response=response)

    def _streaming(
        self, outcome: Outcome, decision: Decision | None, model: str, began: float, stream: Any
    ) -> DispatchResult:
        """Record that a stream started; the outcome is finished by the stream wrapper."""
        outcome.attempts.append(Attempt(model, "ok", latency_ms=(time.perf_counter() - began) * 1000))
        outcome.stream, outcome.model = True, model
        return DispatchResult(outcome.request_id, decision, outcome, stream=stream)

    @staticmethod
    def _stream_status(exc: BaseException) -> tuple[str, str]:
        if isinstance(exc, GeneratorExit | asyncio.CancelledError):  # the consumer stopped reading
            return "stream_cancelled", "the client stopped reading the stream"
        return "stream_error", f"{_error_name(exc)}: {_reason(exc)}"  # the provider's stream broke

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
            stream (bool): return a stream of chunks in ``result.stream``.
            **params: passed to the model (temperature, max_tokens, tools, ...).

        Raises:
            DispatchError: every model in the chain failed, or the deadline passed (the outcome is logged).
        """
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
        stop_at = time.perf_counter() + self.deadline
        for candidate in self._candidates(chain, messages, outcome, stop_at):
            began = time.perf_counter()
            timeout = self._attempt_timeout(candidate, stop_at)
            try:
                async with asyncio.timeout(stop_at - time.perf_counter()):  # the hard deadline, retries included
                    response = await self.llm.acompletion(
                        model=candidate, messages=messages, stream=stream, timeout=timeout, **params
                    )
                    first = await anext(aiter(response)) if stream else None
            except Exception as exc:  # provider errors, litellm.Timeout, asyncio's TimeoutError
                self._failed(outcome, candidate, exc, began)
                continue
            if stream:
                chunks = self._astream(outcome, response, first, began, messages)
                return self._streaming(outcome, decision, candidate, began, chunks)
            return self._answered(outcome, decision, candidate, response, began)
        raise self._give_up(outcome, deadline_hit=time.perf_counter() >= stop_at)

    async def _astream(
        self, outcome: Outcome, response: Any, first: Any, began: float, messages: list[dict[str, Any]]
    ) -> AsyncIterator[Any]:
        chunks = [first]
        status, error = "ok", None
        try:
            yield first
            async for chunk in response:
                chunks.append(chunk)
                yield chunk
        except (Exception, GeneratorExit, asyncio.CancelledError) as exc:
            status, error = self._stream_status(exc)
            raise
        finally:
            self._stream_done(outcome, chunks, messages, began, status, error)

    def _stream_done(
        self,
        outcome: Outcome,
        chunks: list[Any],
        messages: list[dict[str, Any]],
        began: float,
        status: str,
        error: str | None,
    ) -> None:
        assert outcome.model is not None
        outcome.provider_ms = (time.perf_counter() - began) * 1000
        text = "".join(
            (c.choices[0].delta.content or "") for c in chunks if getattr(c, "choices", None) and c.choices[0].delta
        )
        usage = next((c.usage for c in reversed(chunks) if getattr(c, "usage", None)), None)
        outcome.prompt_tokens = getattr(usage, "prompt_tokens", None) or litellm.token_counter(
            model=outcome.model, messages=messages
        )
        outcome.completion_tokens = getattr(usage, "completion_tokens", None) or litellm.token_counter(
            model=outcome.model, text=text
        )
        outcome.cost_usd = self._cost(outcome.model, None, outcome.prompt_tokens, outcome.completion_tokens)
        self._finish(outcome, status, error)

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
        """Synchronous :meth:`acomplete` (same arguments, same logging; streams are plain iterators)."""
        outcome, chain, messages = self._prepare(prompt, route, model, params)
        decision = None
        if chain is None:
            assert self.router is not None
            decision = self.router.route(prompt)
            chain = self._apply(outcome, decision)
        if decision_only:
            self._finish(outcome, "decision_only")
            return DispatchResult(outcome.request_id, decision, outcome)
        stop_at = time.perf_counter() + self.deadline
        for candidate in self._candidates(chain, messages, outcome, stop_at):
            began = time.perf_counter()
            try:
                timeout = self._attempt_timeout(candidate, stop_at)
                response = self.llm.completion(
                    model=candidate, messages=messages, stream=stream, timeout=timeout, **params
                )
                first = next(iter(response)) if stream else None
            except Exception as exc:
                self._failed(outcome, candidate, exc, began)
                continue
            if stream:
                chunks = self._stream(outcome, response, first, began, messages)
                return self._streaming(outcome, decision, candidate, began, chunks)
            return self._answered(outcome, decision, candidate, response, began)
        raise self._give_up(outcome, deadline_hit=time.perf_counter() >= stop_at)

    def _stream(
        self, outcome: Outcome, response: Any, first: Any, began: float, messages: list[dict[str, Any]]
    ) -> Iterator[Any]:
        chunks = [first]
        status, error = "ok", None
        try:
            yield first
            for chunk in response:
                chunks.append(chunk)
                yield chunk
        except (Exception, GeneratorExit) as exc:
            status, error = self._stream_status(exc)
            raise
        finally:
            self._stream_done(outcome, chunks, messages, began, status, error)
