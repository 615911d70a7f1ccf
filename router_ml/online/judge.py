"""Grade an answer: a judge model's prompt and its reply's score, or an exact match against a reference.

- **Judge.** :func:`judge_answer` sends the judge model, through the dispatcher, :func:`judge_prompt`: it asks the
  judge to end its reply with ``SCORE: N``, ``N`` an integer from 1 (useless or wrong) to 10 (fully correct and
  helpful). :func:`parse_judge_score` reads the last such line and normalises it to [0, 1] as ``(N − 1) / 9``. A
  reply without a score in 1–10 raises :class:`JudgeError`: a score is never guessed.
- **Reference.** :func:`grade_reference` is 1 or 0. A numeric reference (GSM8K's ``#### 72`` too) is compared
  with the *last* number of the answer (``1,234`` = ``1234``, ``$5.00`` = ``5``); any other reference must equal
  the whole answer once both are normalised (:func:`normalise`: case, punctuation and runs of whitespace).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Any

from ..exceptions import DispatchError, RouterMLError
from .dispatch import Dispatcher

__all__ = [
    "JUDGE_SCALE", "JudgeError", "answer_text", "grade_reference", "judge_answer", "judge_prompt", "normalise",
    "parse_judge_score",
]  # fmt: skip

JUDGE_SCALE = (1, 10)
"""The judge's scale: ``SCORE: 1`` is 0.0, ``SCORE: 10`` is 1.0."""

_TEMPLATE = """You are grading an AI assistant's answer to a user's request.

[Request]
{question}

[Answer]
{answer}

[Task]
Judge whether the answer is correct, complete and helpful for the request. Explain briefly if you need to, then end \
your reply with one line of the form
SCORE: N
where N is an integer from {low} (useless or wrong) to {high} (fully correct and helpful)."""

_SCORE = re.compile(r"\bscore[\s*]{0,3}[:=][\s*]{0,3}(-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_REFERENCE_NUMBER = re.compile(r"^\$?\s*(-?\d[\d,]*(?:\.\d+)?|-?\.\d+)\s*%?$")


class JudgeError(RouterMLError, ValueError):
    """A judge's reply holds no score on its scale; ``reply`` is the reply."""

    def __init__(self, message: str, reply: str) -> None:
        super().__init__(message)
        self.reply = reply


def judge_prompt(question: str, answer: str) -> str:
    """The grading request sent to the judge model for one (prompt, answer) pair."""
    return _TEMPLATE.format(question=question, answer=answer, low=JUDGE_SCALE[0], high=JUDGE_SCALE[1])


def parse_judge_score(reply: str) -> float:
    """The score in [0, 1] of a judge's reply: its last ``SCORE: N`` (or ``SCORE: N/10``), as ``(N − 1) / 9``.

    Example:
        >>> parse_judge_score("Correct and clear.\\nSCORE: 10"), round(parse_judge_score("**Score:** 4/10"), 3)
        (1.0, 0.333)
    """
    low, high = JUDGE_SCALE
    matches = _SCORE.findall(reply or "")
    if not matches:
        raise JudgeError(f"the judge's reply has no 'SCORE: N' line (N from {low} to {high})", reply)
    value, denominator = matches[-1]
    if denominator and int(denominator) != high:
        raise JudgeError(f"the judge scored {value}/{denominator}; expected a score out of {high}", reply)
    score = float(value)
    if not low <= score <= high:
        raise JudgeError(f"the judge's score {value} is outside {low}–{high}", reply)
    return (score - low) / (high - low)


def answer_text(response: Any) -> str:
    """The text of a chat completion's first choice (``""`` when it has none)."""
    return str(response.choices[0].message.content or "")


async def judge_answer(
    dispatcher: Dispatcher, judge: str, question: str, answer: str
) -> tuple[float | None, str | None, float]:
    """Ask ``judge`` (forced, through ``dispatcher``) to grade ``answer``: its score in [0, 1], or ``None`` and why
    (the call failed, or the reply holds no score), and the USD the judge call cost."""
    try:
        result = await dispatcher.acomplete(judge_prompt(question, answer), model=judge)
    except DispatchError as exc:
        return None, f"the judge {judge} failed: {str(exc)[:600]}", 0.0
    cost, reply = result.outcome.cost_usd or 0.0, answer_text(result.response)
    try:
        return parse_judge_score(reply), None, cost
    except JudgeError as exc:
        return None, f"{exc}; reply: {reply[:600]!r}", cost


def normalise(text: str) -> str:
    """``text`` in lower case, without punctuation or symbols, with single spaces between words."""
    kept = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in unicodedata.normalize("NFKC", text))
    return " ".join(kept.casefold().split())


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def grade_reference(answer: str, reference: str) -> float:
    """1.0 when ``answer`` matches ``reference`` (see the module's docstring), else 0.0.

    Example:
        >>> grade_reference("6 × 7 = 42, so the answer is 42.", "#### 42"), grade_reference("Paris!", "paris")
        (1.0, 1.0)
    """
    reference = reference.rsplit("####", 1)[-1].strip()
    numeric = _REFERENCE_NUMBER.match(reference)
    if numeric:
        found = _NUMBER.findall(answer)
        expected, last = _number(numeric.group(1)), _number(found[-1]) if found else None
        return float(last is not None and expected is not None and last == expected)
    return float(normalise(answer) == normalise(reference) != "")
