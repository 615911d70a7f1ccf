"""Read per-model outcomes (how well each model answered each prompt) from JSONL/CSV files or records.

Two row shapes, told apart row by row, so one file may hold both:

- a *long* row is one call: ``text``, ``model``, ``score`` and optionally ``cost`` (USD of that call);
- a *wide* row is one prompt answered by several models: ``text`` and ``scores``, an object
  ``{model: score}`` (in CSV, a cell holding that object as JSON).

Scores are numbers in [0, 1] (``true``/``false`` read as 1/0). Rows are merged by exact prompt text into one
score matrix, NaN where a model has no outcome for a prompt: logs where one model answered each prompt are
normal. A (prompt, model) pair seen more than once is averaged and counted in :attr:`Outcomes.repeated`; every
other problem raises a :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataError
from ..rows import read_rows

__all__ = ["Outcomes", "from_records", "group_key", "load_outcomes"]

logger = logging.getLogger(__name__)

_FIX_COLUMNS = "rename the columns, or name yours with text_column=/model_column=/score_column=/scores_column="


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Per-model outcomes, one row per unique prompt.

    Attributes:
        texts (list[str]): the unique prompts, in first-seen order.
        models (list[str]): the model names, sorted.
        scores (np.ndarray): ``(n_prompts, n_models)`` float64 in [0, 1]; NaN where a model has no outcome.
        origins (list[str]): ``file:line`` (or ``<records>:index``) of each prompt's first row.
        groups (list[str] | None): each prompt's group (see :func:`group_key`) when a group column was read.
        costs (np.ndarray | None): ``(n_prompts, n_models)`` mean USD per call where rows carry a cost, NaN
            elsewhere; ``None`` when no row has one.
        repeated (int): (prompt, model) pairs seen more than once, whose scores (and costs) were averaged.
    """

    texts: list[str]
    models: list[str]
    scores: np.ndarray
    origins: list[str]
    groups: list[str] | None = None
    costs: np.ndarray | None = None
    repeated: int = 0

    def __post_init__(self) -> None:
        shape = (len(self.texts), len(self.models))
        if self.scores.shape != shape or (self.costs is not None and self.costs.shape != shape):
            raise DataError(f"scores and costs must have shape {shape} (prompts, models), got {self.scores.shape}")
        if len(self.origins) != len(self.texts) or (self.groups is not None and len(self.groups) != len(self.texts)):
            raise DataError(f"origins and groups need one entry per prompt ({len(self.texts)})")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Iterable[int]) -> Outcomes:
        """The prompts at ``indices``, with every model (the count of repeated pairs is not carried over)."""
        idx = list(indices)
        return Outcomes(
            [self.texts[i] for i in idx], list(self.models), self.scores[idx], [self.origins[i] for i in idx],
            groups=None if self.groups is None else [self.groups[i] for i in idx],
            costs=None if self.costs is None else self.costs[idx],
        )  # fmt: skip

    @property
    def coverage(self) -> float:
        """The share of (prompt, model) cells with an outcome: 1.0 when every model answered every prompt."""
        return float(np.isfinite(self.scores).mean()) if self.scores.size else 0.0

    def observed(self, model: str) -> np.ndarray:
        """A boolean mask over the prompts: which have an outcome for ``model``."""
        if model not in self.models:
            raise DataError(f"no outcomes for model {model!r}; the models are {self.models}")
        return np.isfinite(self.scores[:, self.models.index(model)])


def group_key(value: str) -> str:
    """A row's group from its ``source``: ``"<dataset>:<group>:<id>"`` without the trailing id.

    A value with fewer than three ``:``-separated parts is its own group.

    Example:
        >>> group_key("mmlu:abstract_algebra:12"), group_key("dcrouter:train:2:417"), group_key("batch-7")
        ('mmlu:abstract_algebra', 'dcrouter:train:2', 'batch-7')
    """
    value = value.strip()
    head, _, _ = value.rpartition(":")
    return head if value.count(":") >= 2 else value


@dataclass(frozen=True)
class _Columns:
    """The column names rows are read from."""

    text: str = "text"
    model: str = "model"
    score: str = "score"
    scores: str = "scores"
    cost: str = "cost"
    group: str | None = None

    def check_header(self, names: list[str], origin: str) -> None:
        """A CSV header must name the text column and the columns of at least one row shape."""
        if self.text in names and (self.scores in names or {self.model, self.score} <= set(names)):
            return
        raise DataError(
            f"{origin}: expected columns {self.text!r} and either {self.model!r} + {self.score!r} (one model a "
            f"row) or {self.scores!r} (a JSON object of model scores); found {names}; {_FIX_COLUMNS}"
        )


def load_outcomes(
    paths: str | Path | Sequence[str | Path],
    *,
    group_column: str | None = None,
    text_column: str = "text",
    model_column: str = "model",
    score_column: str = "score",
    scores_column: str = "scores",
    cost_column: str = "cost",
) -> Outcomes:
    """Load and merge per-model outcomes from one or more ``.jsonl``/``.csv`` files.

    Args:
        paths (str | Path | Sequence[str | Path]): the files; each must hold at least one row.
        group_column (str | None): a column every row must have, read through :func:`group_key` into
            :attr:`Outcomes.groups` (``"source"`` for the public outcome sets). Default ``None``: no groups.
        text_column, model_column, score_column, scores_column, cost_column (str): the column names.

    Returns:
        Outcomes: one row per unique prompt text.
    """
    files = [paths] if isinstance(paths, str | Path) else list(paths)
    if not files:
        raise DataError("no outcome files given; pass at least one .jsonl or .csv file")
    columns = _Columns(text_column, model_column, score_column, scores_column, cost_column, group_column)
    merged = _Merged()
    for file in files:
        path = Path(file)
        example = (columns.text, columns.model, columns.score)
        csv_file = path.suffix.lower() == ".csv"
        before = merged.rows
        for row, origin in read_rows(path, example, check_header=columns.check_header):
            merged.add(*_parse(row, origin, columns, csv_file))
        if merged.rows == before:
            raise DataError(
                f"{path}: no outcome rows; expected lines like "
                f'{{"{columns.text}": ..., "{columns.model}": ..., "{columns.score}": ...}} '
                f'or {{"{columns.text}": ..., "{columns.scores}": {{model: score}}}}; fill the file or leave it out'
            )
    return merged.outcomes()


def from_records(
    records: Iterable[Mapping[str, Any]],
    *,
    group_column: str | None = None,
    origin: str = "<records>",
    text_column: str = "text",
    model_column: str = "model",
    score_column: str = "score",
    scores_column: str = "scores",
    cost_column: str = "cost",
) -> Outcomes:
    """Validate and merge in-memory rows exactly as :func:`load_outcomes` does files.

    Errors name the row as ``<origin>:<index>`` (0-based).

    Example:
        >>> o = from_records([{"text": "2+2?", "model": "a", "score": 1}, {"text": "2+2?", "scores": {"b": 0.5}}])
        >>> o.models, o.scores.tolist()
        (['a', 'b'], [[1.0, 0.5]])
    """
    columns = _Columns(text_column, model_column, score_column, scores_column, cost_column, group_column)
    merged = _Merged()
    for index, row in enumerate(records):
        where = f"{origin}:{index}"
        if not isinstance(row, Mapping):
            found = type(row).__name__
            raise DataError(f"{where}: expected a mapping like {{'text': ..., 'scores': ...}}, found {found}")
        merged.add(*_parse(row, where, columns, csv_file=False))
    if not merged.rows:
        raise DataError(f"{origin}: no outcome rows; the input is empty")
    return merged.outcomes()


_Observation = tuple[str, float, float | None]
"""A model, its score and the call's cost (when known)."""


def _parse(
    row: Mapping[str, Any], origin: str, columns: _Columns, csv_file: bool
) -> tuple[str, str, str | None, list[_Observation]]:
    """One validated row: its text, origin, group and (model, score, cost) observations."""
    if columns.text not in row:
        raise DataError(f"{origin}: no {columns.text!r} column; found {sorted(row)}; {_FIX_COLUMNS}")
    text = row[columns.text]
    if not isinstance(text, str):
        raise DataError(f"{origin}: text must be a string, found {type(text).__name__} ({text!r:.60})")
    if not text.strip():
        raise DataError(f"{origin}: text is empty; remove the row or fill in the prompt")
    group = None if columns.group is None else _group(row, columns.group, origin)
    if _present(row.get(columns.scores)):
        return text, origin, group, _wide(row, origin, columns, csv_file)
    model, score = row.get(columns.model), row.get(columns.score)
    if not _present(model) and not _present(score):
        raise DataError(
            f"{origin}: neither {columns.scores!r} (a wide row: {{model: score}}) nor {columns.model!r} and "
            f"{columns.score!r} (a long row: one model's score); found {sorted(k for k in row if _present(row[k]))}. "
            f"Give the row one of the two shapes; or {_FIX_COLUMNS}"
        )
    if not _present(model) or not isinstance(model, str) or not model.strip():
        raise DataError(f"{origin}: {columns.model!r} must name the model that answered, found {model!r:.60}")
    if not _present(score):
        raise DataError(f"{origin}: no {columns.score!r} for model {model!r}; give a number in [0, 1]")
    value = _score(score, f"{columns.score!r}", origin, csv_file)
    cost = None
    if _present(row.get(columns.cost)):
        cost = _number(row[columns.cost], f"{columns.cost!r}", origin, csv_file)
        if cost < 0:
            raise DataError(f"{origin}: {columns.cost!r} must be a non-negative number of USD, found {cost}")
    return text, origin, group, [(model.strip(), value, cost)]


def _wide(row: Mapping[str, Any], origin: str, columns: _Columns, csv_file: bool) -> list[_Observation]:
    """The observations of a wide row's ``scores`` object (a JSON string in CSV)."""
    both = [c for c in (columns.model, columns.score, columns.cost) if _present(row.get(c))]
    if both:
        raise DataError(
            f"{origin}: has {columns.scores!r} and also {both}; a row is either wide ({columns.scores!r} only) "
            f"or long ({columns.model!r}, {columns.score!r}, {columns.cost!r}): split it into two rows"
        )
    scores = row[columns.scores]
    if isinstance(scores, str):
        try:
            scores = json.loads(scores)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{origin}: {columns.scores!r} is not valid JSON ({exc.msg} at column {exc.colno}); "
                'expected an object like {"model-a": 1, "model-b": 0}'
            ) from None
    if not isinstance(scores, Mapping) or not scores:
        raise DataError(
            f'{origin}: {columns.scores!r} must be a non-empty object like {{"model-a": 1, "model-b": 0}}, '
            f"found {scores!r:.60}"
        )
    observed: list[_Observation] = []
    for model, score in scores.items():
        if not isinstance(model, str) or not model.strip():
            raise DataError(f"{origin}: {columns.scores!r} has an empty model name; name every model")
        observed.append((model.strip(), _score(score, f"the score of {model!r}", origin, csv_file=False), None))
    return observed


def _present(value: Any) -> bool:
    """Whether a cell holds a value: not missing, ``None``, ``""`` or a float NaN (a pandas gap)."""
    return value is not None and value != "" and not (isinstance(value, float) and math.isnan(value))


def _number(value: Any, what: str, origin: str, csv_file: bool) -> float:
    """A finite number; booleans read as 1/0, and in CSV cells the text of a number or ``true``/``false``."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if csv_file and isinstance(value, str):
        word = value.strip().lower()
        try:
            value = {"true": 1.0, "false": 0.0}[word] if word in ("true", "false") else float(word)
        except ValueError:
            raise DataError(f"{origin}: {what} must be a number, found {value!r:.60}") from None
    elif not isinstance(value, numbers.Real):
        raise DataError(
            f"{origin}: {what} must be a number, found {type(value).__name__} ({value!r:.60}); "
            "write scores as numbers in [0, 1] (1 = a good answer, 0 = a bad one)"
        )
    if not math.isfinite(float(value)):
        raise DataError(f"{origin}: {what} is {value}; give a finite number, or leave the row out")
    return float(value)


def _score(value: Any, what: str, origin: str, csv_file: bool) -> float:
    """A score in [0, 1]."""
    score = _number(value, what, origin, csv_file)
    if not 0.0 <= score <= 1.0:
        raise DataError(f"{origin}: {what} must be in [0, 1], found {score}; rescale the scores to [0, 1]")
    return score


def _group(row: Mapping[str, Any], column: str, origin: str) -> str:
    """The row's group: :func:`group_key` of its value in ``column``, which every row must have."""
    value = row.get(column)
    if not _present(value):
        raise DataError(
            f"{origin}: no {column!r} value, which groups the rows (group_column={column!r}); give every row "
            "one, or load without group_column"
        )
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(f"{origin}: {column!r} must be a string, found {type(value).__name__} ({value!r:.60})")
    return group_key(str(value))


class _Merged:
    """Rows merged by exact prompt text: per (prompt, model) sums and counts of scores and costs."""

    def __init__(self) -> None:
        self.rows = 0
        self.index: dict[str, int] = {}
        self.texts: list[str] = []
        self.origins: list[str] = []
        self.groups: list[str | None] = []
        self.cells: dict[tuple[int, str], list[float]] = {}  # score sum, count, cost sum, cost count
        self.group_conflicts: list[tuple[str, str]] = []

    def add(self, text: str, origin: str, group: str | None, observations: list[_Observation]) -> None:
        """Merge one parsed row."""
        self.rows += 1
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.texts)
            self.texts.append(text)
            self.origins.append(origin)
            self.groups.append(group)
        elif group != self.groups[i]:
            self.group_conflicts.append((origin, self.origins[i]))
        for model, score, cost in observations:
            cell = self.cells.setdefault((i, model), [0.0, 0, 0.0, 0])
            cell[0] += score
            cell[1] += 1
            if cost is not None:
                cell[2] += cost
                cell[3] += 1

    def outcomes(self) -> Outcomes:
        """The merged :class:`Outcomes`."""
        if self.group_conflicts:
            logger.warning(
                "%d row(s) repeat a prompt under another group; each prompt keeps its first group (e.g. %s, first "
                "seen at %s)", len(self.group_conflicts), *self.group_conflicts[0],
            )  # fmt: skip
        models = sorted({model for _, model in self.cells})
        column = {model: j for j, model in enumerate(models)}
        scores = np.full((len(self.texts), len(models)), np.nan)
        costs = np.full_like(scores, np.nan)
        for (i, model), (total, count, cost, paid) in self.cells.items():
            scores[i, column[model]] = total / count
            if paid:
                costs[i, column[model]] = cost / paid
        repeated = sum(1 for cell in self.cells.values() if cell[1] > 1)
        if repeated:
            logger.info("%d (prompt, model) pair(s) seen more than once: their scores are averaged", repeated)
        groups = None if any(g is None for g in self.groups) else [str(g) for g in self.groups]
        has_cost = any(cell[3] for cell in self.cells.values())
        return Outcomes(
            self.texts, models, scores, self.origins, groups=groups, costs=costs if has_cost else None,
            repeated=repeated,
        )  # fmt: skip
