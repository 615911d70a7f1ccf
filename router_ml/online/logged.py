"""Logged traffic as retraining and off-policy evaluation read it: one row per scored call, with its odds.

The rows are those ``router-ml outcomes export --kind outcomes`` writes (:mod:`.outcome_export`): ``text``,
``model`` (the model the score belongs to), ``score`` in [0, 1], and optionally ``propensity`` (the model's
probability under the policy that served the request; ``null`` after a fallback or for a forced model),
``explored``, ``cost``, ``route`` and ``source`` (``online:<router version>:<request id>``). Unlike
:func:`router_ml.success.load_outcomes`, rows are not merged per prompt: each is one logged decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import DataError
from ..rows import read_rows
from ..success.data import _number as parse_number
from ..success.data import group_key

__all__ = ["LoggedOutcomes", "read_logged"]


@dataclass(frozen=True)
class LoggedOutcomes:
    """Logged calls, one per row (see the module docstring); ``propensities`` are NaN where unknown."""

    texts: list[str]
    models: list[str]
    scores: np.ndarray
    propensities: np.ndarray
    explored: np.ndarray
    routes: list[str | None]
    policies: list[str]
    """The policy that served each row: the router version of its ``source``, else the source's group."""

    def __len__(self) -> int:
        return len(self.texts)


def _number(value: object, name: str, origin: str, low: float, high: float) -> float:
    """A number in ``[low, high]``, read as the outcome loader reads one (CSV text, booleans as 1/0)."""
    number = parse_number(value, name, origin, csv_file=isinstance(value, str))
    if not low <= number <= high:
        raise DataError(f"{origin}: {name} must be a number in [{low:g}, {high:g}], found {value!r}; fix the row")
    return number


def read_logged(paths: Sequence[str | Path]) -> LoggedOutcomes:
    """Read exported outcome rows (JSONL or CSV), each as one logged call.

    Raises:
        DataError: a missing file or column, a score outside [0, 1], a propensity outside (0, 1], naming file:line.
    """
    texts, models, scores, props, explored, routes, policies = [], [], [], [], [], [], []
    for path in paths:
        for row, origin in read_rows(Path(path), ("text", "model", "score")):
            text, model = row.get("text"), row.get("model")
            if not isinstance(text, str) or not text.strip() or not isinstance(model, str) or not model:
                raise DataError(f"{origin}: a row needs a non-empty text and model; found {sorted(row)}")
            scores.append(_number(row.get("score"), "score", origin, 0.0, 1.0))
            p = row.get("propensity")
            props.append(math.nan if p in (None, "") else _number(p, "propensity", origin, 1e-12, 1.0))
            explored.append(row.get("explored") in (True, "true", "True", "1", 1))
            source = str(row.get("source") or "")
            parts = source.split(":")
            policies.append(parts[1] if len(parts) == 3 and parts[0] == "online" else group_key(source))
            texts.append(text)
            models.append(model)
            routes.append(str(row["route"]) if row.get("route") not in (None, "") else None)
    if not texts:
        raise DataError(f"no outcome rows in {[str(p) for p in paths]}; export them with `router-ml outcomes export "
                        "--kind outcomes`")  # fmt: skip
    return LoggedOutcomes(
        texts, models, np.array(scores), np.array(props), np.array(explored, dtype=bool), routes, policies
    )
