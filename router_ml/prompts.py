"""What the router reads of a prompt: the text to route on, the conversation before it, and a cache key.

A prompt is a string or an OpenAI-style messages list. Conversations are routed on the last user turn, with up to
``CONTEXT_CHARS`` characters of the turns before it as context (see :mod:`router_ml.router`).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from .exceptions import DataError

__all__ = ["CONTEXT_CHARS", "Prompt", "cache_key", "routing_texts"]

CONTEXT_CHARS = 1000

Prompt = str | Sequence[Mapping[str, Any]]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "\n".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def routing_texts(prompt: Prompt) -> tuple[str, str | None]:
    """The text to route on and, for conversations, the preceding context (``None`` if there is none).

    Raises:
        DataError: an empty prompt, an empty messages list, or no user turn with text.
    """
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError("the prompt is empty; pass a non-empty string or a messages list")
        return prompt, None
    if not isinstance(prompt, Sequence) or not prompt:
        raise DataError("messages must be a non-empty list of {'role': ..., 'content': ...} objects")
    for i, message in enumerate(prompt):
        if not isinstance(message, Mapping) or "role" not in message:
            raise DataError(f"messages[{i}] must be an object with 'role' and 'content', found {message!r:.80}")
    user_turns = [i for i, m in enumerate(prompt) if m["role"] == "user" and _content_text(m.get("content")).strip()]
    if not user_turns:
        raise DataError("messages contain no user turn with text; the router routes on the last user message")
    last = user_turns[-1]
    earlier = [_content_text(m.get("content")) for m in prompt[:last] if m["role"] in ("user", "assistant", "system")]
    context = "\n".join(t for t in earlier if t.strip())[-CONTEXT_CHARS:]
    return _content_text(prompt[last]["content"]), (context or None)


def _normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def cache_key(text: str, context: str | None) -> bytes:
    """Decision-cache key: a hash of the normalized routing text and context."""
    joined = _normalize(text) + "\x00" + ("" if context is None else _normalize(context))
    return hashlib.blake2b(joined.encode("utf-8", "surrogatepass"), digest_size=16).digest()
