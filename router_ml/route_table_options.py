"""What a route table may add to the requests it routes: ``instructions`` and default ``params``.

Both may be set on a route (``[routes.<label>]``) and on a model (``[models."provider/name"]``). For each call the
dispatcher makes, they are resolved for the model actually called (a fallback too):

- ``instructions``: a system message put first in the conversation. The called model's own instructions, if it
  has any, replace the route's; otherwise the instructions of the route being served are used (so a coding
  request that falls back to another route's model still gets the coding route's instructions). The caller's own
  system messages are kept, after it.
- ``params``: default provider parameters, merged key by key: the route's, then the called model's over them,
  then the caller's over both (the caller's values always win).

Only parameters that every provider litellm speaks to understands the same way are allowed, each with its type
and range checked on load (:data:`PARAM_RULES`); anything else is a :class:`~router_ml.exceptions.ConfigError`
that says what was expected, what was found, and how to fix it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from .exceptions import ConfigError

__all__ = ["MAX_INSTRUCTIONS_CHARS", "PARAM_RULES", "check_instructions", "check_params", "instructions_hash"]

MAX_INSTRUCTIONS_CHARS = 100_000
"""Longest accepted ``instructions`` (characters): a system prompt, not a document."""


def _number(low: float, high: float) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high

    return check


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _stop(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, list) and 1 <= len(value) <= 4 and all(isinstance(s, str) and s for s in value)


PARAM_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "temperature": ("a number from 0 to 2", _number(0.0, 2.0)),
    "top_p": ("a number from 0 to 1", _number(0.0, 1.0)),
    "max_tokens": ("a positive integer", _positive_int),
    "max_completion_tokens": ("a positive integer", _positive_int),
    "presence_penalty": ("a number from -2 to 2", _number(-2.0, 2.0)),
    "frequency_penalty": ("a number from -2 to 2", _number(-2.0, 2.0)),
    "seed": ("an integer", _int),
    "stop": ("a non-empty string or a list of 1 to 4 non-empty strings", _stop),
}
"""Parameter name → (what it must be, its check). The route table accepts these keys in ``params`` only."""


def check_instructions(value: Any, where: str) -> str | None:
    """``value`` if it is acceptable ``instructions`` (``None`` or a non-empty string); else a ConfigError.

    Args:
        value: the ``instructions`` entry as read.
        where (str): the table it came from, e.g. ``[routes.code]``, for the message.
    """
    where = f"{where} " if where else ""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}instructions must be a string (a system message), found {type(value).__name__} {value!r}; "
            'write it as instructions = "You are ..."'
        )
    if not value.strip():
        raise ConfigError(f"{where}instructions is empty; write the system message, or remove the key")
    if len(value) > MAX_INSTRUCTIONS_CHARS:
        raise ConfigError(
            f"{where}instructions has {len(value):,} characters, more than {MAX_INSTRUCTIONS_CHARS:,}; "
            "shorten the system message"
        )
    return value


def check_params(value: Any, where: str) -> dict[str, Any]:
    """A copy of ``value`` if it is an acceptable ``params`` table (see :data:`PARAM_RULES`); else a ConfigError.

    Args:
        value: the ``params`` entry as read (``None`` means none).
        where (str): the table it came from, e.g. ``[routes.code]``, for the message.
    """
    where = f"{where} " if where else ""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}params must be a table of provider parameters, found {type(value).__name__} {value!r}; "
            "write it as params = { temperature = 0.2, max_tokens = 1024 }"
        )
    unknown = sorted(set(value) - set(PARAM_RULES))
    if unknown:
        raise ConfigError(
            f"{where}params has unknown keys {unknown}; expected some of {sorted(PARAM_RULES)}. Fix the spelling "
            "or remove them (callers can still send other parameters with each request)"
        )
    for name, item in value.items():
        expected, ok = PARAM_RULES[name]
        if not ok(item):
            raise ConfigError(f"{where}params.{name} must be {expected}, found {item!r}; fix the value or remove it")
    return {name: list(item) if isinstance(item, list) else item for name, item in value.items()}


def instructions_hash(text: str | None) -> str | None:
    """The id the outcome log keeps of ``instructions``: the first 16 hex digits of its SHA-256 (None for none).

    Example:
        >>> instructions_hash("You are a creative writer. Be weird.")
        'a0e8238c96958e57'
    """
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
