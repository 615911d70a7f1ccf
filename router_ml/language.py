"""Each prompt's language, for scores per language: the data's own ``language`` column where it has one, else
detected with ``py3langid`` (langid.py's model, stored without pickle) among :data:`LANGUAGES`. It took about
1.2 ms a prompt and named the language of 99.1 % of ``multilingual-dev.jsonl``'s prompts (97.3 % among all 97
languages of its model; lingua's fast mode: 97 %).

A detected language is a guess: on a short or mixed prompt ("bhai ek python code likh do") it can name a language
the prompt is not in. Give the data a ``language`` column when the scores per language matter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

from .exceptions import RouterMLError

__all__ = ["LANGUAGES", "detect_language", "languages_of"]

_CODES = (
    "af am ar az be bg bn ca cs cy da de el en es et eu fa fi fr ga gl gu he hi hr hu hy id is it ja ka kk km kn ko "
    "lt lv mk ml mn mr ms ne nl no pa pl ps pt ro ru si sk sl sq sr sv sw ta te th tl tr uk ur vi zh"
)
LANGUAGES = tuple(_CODES.split())
"""The languages a detector may name: widely written ones. Among all 97 of langid.py, short English prompts were
named Volapük, Latin or Esperanto; the languages of ``multilingual-dev.jsonl`` were named as often either way."""


@cache
def _classify() -> Callable[[str], tuple[str, float]]:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise RouterMLError("language detection needs py3langid: `pip install py3langid`") from None
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier.set_languages(LANGUAGES)
    return identifier.classify  # type: ignore[no-any-return]


def detect_language(text: str) -> str:
    """The ISO 639-1 code of the language ``text`` is most likely written in.

    Example:
        >>> detect_language("Напиши, пожалуйста, короткое стихотворение о весне и о том, как тает снег")
        'ru'
    """
    return str(_classify()(text)[0])


def languages_of(texts: Sequence[str], given: Sequence[str | None] | None = None) -> list[str]:
    """Each text's language: ``given[i]`` when set, else detected (see :func:`detect_language`)."""
    if given is None:
        given = [None] * len(texts)
    return [language or detect_language(text) for text, language in zip(texts, given, strict=True)]
