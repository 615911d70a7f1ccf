"""The instruction part of a prompt: its first and last line, apart from the material pasted between them.

A long prompt is mostly material (an article, notes, a chat log, code) with a short instruction before or after
it. Features of the whole prompt weigh the material: its n-grams outnumber the instruction's, and a creative ask
on an article ("turn this into a bedtime story") looks like a mechanical task on given text. The router therefore
also reads the *instruction view* of each prompt: for a prompt of :data:`MIN_CHARS` or more, its first and last
non-empty lines (or sentences, when it is one paragraph) outside fenced code blocks, each cut to
:data:`EDGE_CHARS`; a shorter prompt is its own instruction view.

The view is a ``TfidfVectorizer`` preprocessor, so the artifact names it (:data:`VIEWS`) instead of storing code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["EDGE_CHARS", "MIN_CHARS", "VIEWS", "instruction_part", "instruction_view", "view_name"]

MIN_CHARS = 300
"""Prompts shorter than this (in characters) are their own instruction part."""
EDGE_CHARS = 160
"""The first and last line are each cut to this many characters (the first from its start, the last from its end)."""

_FENCED = re.compile(r"```.*?```", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|(?<=[。！？：])\s*")  # CJK full stops need no space after them


def instruction_part(text: str) -> str:
    """The first and last line of a long ``text`` outside fenced code (or first and last sentence of a single
    paragraph), joined by ``" ... "``; ``text`` itself when it is shorter than :data:`MIN_CHARS`.

    Example:
        >>> instruction_part("Turn this into a story for kids:\\n" + "The council met on Tuesday. " * 12 + "\\nThanks!")
        'Turn this into a story for kids: ... Thanks!'
    """
    if len(text) < MIN_CHARS:
        return text
    outside = _FENCED.sub(" ", text)
    pieces = [line.strip() for line in outside.splitlines() if line.strip()]
    if len(pieces) < 2:
        pieces = [s for s in _SENTENCE_END.split(outside.strip()) if s]
    if not pieces:
        return text[:EDGE_CHARS]
    first, last = pieces[0][:EDGE_CHARS], pieces[-1][-EDGE_CHARS:]
    return first if len(pieces) == 1 else f"{first} ... {last}"


def instruction_view(text: str) -> str:
    """:func:`instruction_part`, lower-cased: a ``TfidfVectorizer`` preprocessor (which replaces its lower-casing)."""
    return instruction_part(text).lower()


VIEWS: dict[str, Callable[[str], str]] = {"instruction": instruction_view}
"""The named text views a vectorizer may read, as artifacts store them (``preprocessor: "instruction"``)."""

_RAW_PARTS: dict[Callable[[str], str], Callable[[str], str]] = {instruction_view: instruction_part}


def view_name(preprocessor: Any) -> str | None:
    """The :data:`VIEWS` name of a vectorizer's ``preprocessor`` (``None`` for none); other callables are refused."""
    if preprocessor is None:
        return None
    for name, view in VIEWS.items():
        if preprocessor is view:
            return name
    raise ValueError(f"only the named views {sorted(VIEWS)} can be saved as a preprocessor, got {preprocessor!r}")


def raw_part(preprocessor: Any) -> Callable[[str], str] | None:
    """For a :data:`VIEWS` preprocessor, the part of the text it reads before lower-casing; ``None`` otherwise."""
    return _RAW_PARTS.get(preprocessor)
