"""One exception hierarchy: every error says what was expected, what was found and how to fix it."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataError",
    "DispatchError",
    "EmbedderError",
    "NotFittedError",
    "RouterMLError",
    "StoreError",
]


class RouterMLError(Exception):
    """Base class of every error router-ml raises on purpose."""


class DataError(RouterMLError, ValueError):
    """Labelled prompts are missing, malformed or inconsistent."""


class ConfigError(RouterMLError, ValueError):
    """A route table or a training configuration is invalid."""


class EmbedderError(RouterMLError, RuntimeError):
    """The embedding model cannot be loaded or does not match what was expected."""


class ArtifactError(RouterMLError, ValueError):
    """A saved router artifact is missing, corrupt or incompatible."""


class NotFittedError(RouterMLError, ValueError, AttributeError):
    """A model was used before ``fit`` (mirrors :class:`sklearn.exceptions.NotFittedError`)."""


class StoreError(RouterMLError, RuntimeError):
    """The outcome store cannot be opened or written, or a request id is unknown."""


class DispatchError(RouterMLError, RuntimeError):
    """No model could answer; ``outcome`` (a :class:`router_ml.online.outcome.Outcome`) holds every attempt and its
    reason, and is logged too."""

    def __init__(self, message: str, outcome: Any) -> None:
        super().__init__(message)
        self.outcome = outcome
