"""What a provider is sent: the caller's conversation and parameters, with the route table's instructions and
default parameters for the model called.

The rules (see :mod:`router_ml.route_table_options`): the called model's ``instructions`` (else the served route's) go
first, as a system message, before the caller's own messages, system messages included; parameters are the
route's defaults, then the model's, then the caller's, each over the one before. A forced model (no route) gets
only its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import DataError
from ..route_table import RouteTable
from ..route_table_options import instructions_hash
from ..router import Prompt

__all__ = ["PASS_THROUGH", "ModelRequest", "check_caller_params", "conversation", "model_request", "sent_messages"]

PASS_THROUGH = frozenset({
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "tools", "tool_choice", "n",
    "presence_penalty", "frequency_penalty", "seed", "response_format", "user", "logprobs", "top_logprobs",
    "parallel_tool_calls", "stream_options", "metadata",
})  # fmt: skip
"""Parameters a caller may send with a request; they go to the provider as given."""


@dataclass(frozen=True)
class ModelRequest:
    """One call's conversation and parameters, and the id of the instructions it carries (``None``: none)."""

    messages: list[dict[str, Any]]
    params: dict[str, Any]
    instructions_hash: str | None


def check_caller_params(params: Mapping[str, Any]) -> None:
    """A DataError for parameters the dispatcher does not pass on."""
    unknown = set(params) - PASS_THROUGH
    if unknown:
        raise DataError(f"unsupported parameters {sorted(unknown)}; supported: {sorted(PASS_THROUGH)}")


def conversation(prompt: Prompt) -> list[dict[str, Any]]:
    """``prompt`` as OpenAI-style messages (a string becomes one user message); a copy, never the caller's."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def sent_messages(
    routes: RouteTable, model: str, label: str | None, messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The conversation ``model`` is sent when serving route ``label``: its instructions first, then ``messages``."""
    instructions = routes.instructions_for(model, label)
    return [{"role": "system", "content": instructions}, *messages] if instructions else messages


def model_request(
    routes: RouteTable, model: str, label: str | None, messages: list[dict[str, Any]], params: Mapping[str, Any]
) -> ModelRequest:
    """Everything one call to ``model`` serving route ``label`` sends: instructions, messages and parameters.

    Example:
        >>> from router_ml.route_table import RouteTable
        >>> table = RouteTable.from_dict({"routes": {"code": {"model": "a/m", "instructions": "Be exact.",
        ...                                                    "params": {"temperature": 0.2, "max_tokens": 50}}}})
        >>> call = model_request(table, "a/m", "code", [{"role": "user", "content": "hi"}], {"temperature": 0.9})
        >>> [m["role"] for m in call.messages], call.params
        (['system', 'user'], {'temperature': 0.9, 'max_tokens': 50})
    """
    return ModelRequest(
        sent_messages(routes, model, label, messages),
        {**routes.params_for(model, label), **params},
        instructions_hash(routes.instructions_for(model, label)),
    )
