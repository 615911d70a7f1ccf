"""What the outcome log records: one :class:`Outcome` per request, its :class:`Attempt` s, and :class:`Feedback`.

Each list of values is defined once here, as a ``Literal`` with its tuple of values: an outcome's status, an
attempt's status, and what the log keeps of a prompt. So is what counts as a *fallback*
(:attr:`Outcome.fell_back`), which both ``router-ml outcomes summary`` and the service's ``/metrics`` count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from ..exceptions import DataError

__all__ = [
    "ATTEMPT_STATUSES",
    "OUTCOME_STATUSES",
    "PROMPT_STORAGE",
    "Attempt",
    "AttemptStatus",
    "Feedback",
    "Outcome",
    "OutcomeStatus",
    "PromptStorage",
    "parse_score",
]

OutcomeStatus = Literal["ok", "error", "deadline", "decision_only", "stream_error", "stream_cancelled"]
"""How a request ended: answered, every model failed, the deadline passed, routed only, or a stream that broke
(``stream_error``) or that the client stopped reading (``stream_cancelled``) after it had started."""
OUTCOME_STATUSES: tuple[OutcomeStatus, ...] = get_args(OutcomeStatus)

AttemptStatus = Literal["ok", "error", "skipped"]
"""One model tried: it answered, it failed, or it was skipped without a call (its context window, its breaker)."""
ATTEMPT_STATUSES: tuple[AttemptStatus, ...] = get_args(AttemptStatus)

PromptStorage = Literal["full", "hash", "none"]
"""What the log keeps of each prompt: the full text, its SHA-256, or nothing."""
PROMPT_STORAGE: tuple[PromptStorage, ...] = get_args(PromptStorage)


@dataclass
class Attempt:
    """One model tried for a request: answered, failed (``error`` is the exception class) or skipped."""

    model: str
    status: AttemptStatus
    error: str | None = None
    reason: str | None = None
    latency_ms: float = 0.0


@dataclass
class Outcome:
    """Everything that happened to one request."""

    request_id: str
    started_at: float
    finished_at: float = 0.0
    status: OutcomeStatus = "ok"
    router_version: str | None = None
    label: str | None = None
    predicted: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    abstained: bool = False
    forced: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    model: str | None = None
    routing_ms: float = 0.0
    provider_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None
    stream: bool = False
    prompt_text: str | None = None
    prompt_hash: str | None = None
    instructions_hash: str | None = None  # the route table's instructions the last model called got (SHA-256 prefix)
    sticky: bool = False  # a session's pinned model answered
    propensity: float | None = None  # P(first model) under the serving policy; None when forced or pinned
    explored: bool = False  # the first model was an exploratory choice (route table's ``explore``)
    score_failures: bool = True  # a failed call to a model counts as a 0 outcome for it (the caller may opt out)

    @property
    def called(self) -> bool:
        """Whether the request asked for a model's answer (not a decision only)."""
        return self.status != "decision_only"

    @property
    def answered(self) -> bool:
        """Whether a model answered (a stream that broke after it started does not count)."""
        return self.status == "ok"

    @property
    def policy_routed(self) -> bool:
        """The one definition of a request whose first model the routing policy chose: a model was called, and
        neither a forced route or model nor a session's pin chose it. The exploration share's denominator, in
        ``router-ml outcomes summary`` and the service's ``/metrics``."""
        return self.called and self.forced is None and not self.sticky

    @property
    def fell_back(self) -> bool:
        """The one definition of a fallback: answered, but not by the first model of the chain.

        Every attempt before the answering one failed or was skipped (a context window too small, an open
        breaker); :attr:`fallback_causes` says why.
        """
        return self.answered and any(a.status != "ok" for a in self.attempts)

    @property
    def fallback_causes(self) -> list[str]:
        """Why each model before the answering one was passed over: the error class, or the skip's kind."""
        return [a.error or a.status for a in self.attempts if a.status != "ok"] if self.fell_back else []


@dataclass
class Feedback:
    """A label, a score in [0, 1] and/or a comment attached to a logged request."""

    request_id: str
    created_at: float
    label: str | None = None
    score: float | None = None
    comment: str | None = None


def parse_score(score: float | str | None) -> float | None:
    """A feedback score in [0, 1]; ``"up"``/``"down"`` (or 👍/👎) read as 1 and 0."""
    if score is None:
        return None
    words = {"up": 1.0, "down": 0.0, "👍": 1.0, "👎": 0.0, "good": 1.0, "bad": 0.0}
    if isinstance(score, str):
        if score.strip().lower() in words:
            return words[score.strip().lower()]
        try:
            score = float(score)
        except ValueError:
            raise DataError(f"score must be a number in [0, 1] or up/down, got {score!r}") from None
    if not 0.0 <= float(score) <= 1.0:
        raise DataError(f"score must be in [0, 1] (or up/down), got {score}")
    return float(score)
