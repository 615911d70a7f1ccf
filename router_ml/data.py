"""Read and validate labelled prompts (JSONL, CSV, DataFrame or lists) into :class:`LabelledPrompts`.

Nothing is dropped silently: every problem raises a :class:`DataError` naming the file and line, except exact
duplicates (same text, same label), which are kept and reported in :attr:`LabelledPrompts.duplicates`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .exceptions import DataError
from .rows import read_rows

__all__ = [
    "AUTO_GROUP_SIZE",
    "HELDOUT_PERCENT",
    "LabelledPrompts",
    "auto_group_depth",
    "bundled_data_dir",
    "from_dataframe",
    "from_lists",
    "is_heldout",
    "load_bundled",
    "load_file",
    "load_files",
    "merge_groups",
]

logger = logging.getLogger(__name__)

HELDOUT_PERCENT = 18
"""Share of the bundled prompts (by text hash) kept out of training."""
AUTO_GROUP_SIZE = 5
"""``group_depth="auto"`` keeps the most ``:``-separated parts of the sources that leave at least 90 % of the
prompts in groups of this many or more."""


def auto_group_depth(groups: Sequence[str | None]) -> int:
    """The ``group_depth`` that ``"auto"`` picks for these sources: the deepest at which at least 90 % of the prompts
    share their group with :data:`AUTO_GROUP_SIZE` − 1 others or more; 0 (whole) when that is the whole source, 1
    when no depth does. Sources like ``dataset:category:id`` name one prompt each: scored per source, every group
    would be a single prompt and the worst source a 0.0."""
    parts = [g.split(":") for g in groups if g is not None]
    deepest = max((len(p) for p in parts), default=1)
    for depth in range(deepest, 0, -1):
        sizes = Counter(":".join(p[:depth]) for p in parts)
        if sum(sizes[":".join(p[:depth])] >= AUTO_GROUP_SIZE for p in parts) >= 0.9 * len(parts):
            return 0 if depth == deepest else depth
    return 1


def merge_groups(groups: list[str | None], depth: int | Literal["auto"]) -> list[str | None]:
    """``groups`` cut to their first ``depth`` ``:``-separated parts (0: whole; ``"auto"``: as
    :func:`auto_group_depth` picks)."""
    depth = auto_group_depth(groups) if depth == "auto" else depth
    return groups if not depth else [g if g is None else ":".join(g.split(":")[:depth]) for g in groups]


@dataclass(frozen=True)
class LabelledPrompts:
    """Validated prompts with their labels.

    Attributes:
        texts (list[str]): the prompts.
        labels (list[str]): one label per prompt.
        origins (list[str]): ``file:line`` (or ``<list>:index``) of each prompt, for error messages.
        duplicates (list[tuple[str, str]]): origins of exact duplicates (second occurrence, first occurrence).
        groups (list[str] | None): the source of each prompt (a data set, a batch, a customer), when known: what
            grouped cross-validation holds out together and what per-source scores are computed over.
        languages (list[str | None] | None): each prompt's language (ISO 639-1 code, e.g. ``"zh"``) from the
            data's ``language`` column, when it has one; ``None`` for rows without (see :mod:`router_ml.language`).
    """

    texts: list[str]
    labels: list[str]
    origins: list[str]
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    groups: list[str] | None = None
    languages: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[str]:
        """The distinct labels, sorted."""
        return sorted(set(self.labels))

    def counts(self) -> dict[str, int]:
        """Number of prompts per label, sorted by label."""
        return dict(sorted(Counter(self.labels).items()))

    def fingerprint(self) -> str:
        """SHA-256 over the (text, label) pairs in order: identifies the training data in a manifest."""
        digest = hashlib.sha256()
        for text, label in zip(self.texts, self.labels, strict=True):
            digest.update(json.dumps([text, label], ensure_ascii=False).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def subset(self, indices: Iterable[int]) -> LabelledPrompts:
        """The prompts at ``indices`` (duplicate reports are not carried over)."""
        idx = list(indices)
        groups = None if self.groups is None else [self.groups[i] for i in idx]
        languages = None if self.languages is None else [self.languages[i] for i in idx]
        return LabelledPrompts(
            [self.texts[i] for i in idx], [self.labels[i] for i in idx], [self.origins[i] for i in idx],
            groups=groups, languages=languages,
        )  # fmt: skip

    def __add__(self, other: LabelledPrompts) -> LabelledPrompts:
        groups = None if self.groups is None or other.groups is None else self.groups + other.groups
        languages = None
        if self.languages is not None or other.languages is not None:
            languages = (self.languages or [None] * len(self)) + (other.languages or [None] * len(other))
        return _validated(
            self.texts + other.texts, self.labels + other.labels, self.origins + other.origins, min_per_label=1,
            groups=groups, languages=languages,
        )  # fmt: skip

    def check_min_per_label(self, minimum: int) -> None:
        """Raise unless every label has at least ``minimum`` prompts."""
        small = {label: n for label, n in self.counts().items() if n < minimum}
        if small:
            raise DataError(
                f"labels with fewer than {minimum} examples: {small}. Add examples for them, merge them into "
                f"another label, or lower the minimum (--min-per-label)."
            )


def is_heldout(text: str, percent: int = HELDOUT_PERCENT) -> bool:
    """Whether a prompt belongs to the held-out split: a stable function of its text alone."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 100 < percent


def bundled_data_dir() -> Path:
    """Folder holding the bundled prompt files (``data/prompts`` in the repository)."""
    repo_copy = Path(__file__).resolve().parent.parent / "data" / "prompts"
    if repo_copy.is_dir():
        return repo_copy
    return Path(str(resources.files("router_ml") / "_data" / "prompts"))


def load_bundled(split: Literal["train", "heldout", "all"] = "train") -> LabelledPrompts:
    """The bundled dataset, or its train / held-out split (see ``data/README.md``).

    Example:
        >>> data = load_bundled("heldout")
        >>> sorted(data.counts())
        ['code', 'creative', 'reasoning', 'simple']
    """
    if split not in ("train", "heldout", "all"):
        raise DataError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    files = sorted(bundled_data_dir().glob("*.jsonl"))
    if not files:
        raise DataError(f"no bundled prompt files found in {bundled_data_dir()}; is the checkout complete?")
    data = load_files(files, group_column=None)
    data = replace(data, groups=[Path(origin.rpartition(":")[0]).stem for origin in data.origins])  # the batch
    if split == "all":
        return data
    keep = [i for i, t in enumerate(data.texts) if is_heldout(t) == (split == "heldout")]
    return data.subset(keep)


def load_files(
    paths: Sequence[str | Path],
    *,
    text_column: str = "text",
    label_column: str = "label",
    min_per_label: int = 1,
    group_column: str | None = "source",
    group_depth: int | Literal["auto"] = 0,
) -> LabelledPrompts:
    """Load and merge several JSONL/CSV files, validating the union (conflicts across files are caught too).

    Args:
        group_column (str | None): the column naming each prompt's source (optional: when no row has it, the
            data has no groups; when some rows have it, every row must). Default ``"source"``.
        group_depth (int): keep only the first N ``:``-separated parts of the source (``1`` turns
            ``"dataset:category:id"`` into ``"dataset"``); 0 keeps it whole; ``"auto"``: as
            :func:`auto_group_depth` picks. Default 0.
    """
    if not paths:
        raise DataError("no data files given; pass at least one .jsonl or .csv file")
    texts: list[str] = []
    labels: list[str] = []
    origins: list[str] = []
    groups: list[str | None] = []
    languages: list[str | None] = []
    columns = _Columns(text_column, label_column, group_column)
    for path in paths:
        for text, label, origin, group, language in _read_rows(Path(path), columns):
            texts.append(text)
            labels.append(label)
            origins.append(origin)
            groups.append(group)
            languages.append(language)
    groups = merge_groups(groups, group_depth)
    return _validated(
        texts, labels, origins, min_per_label=min_per_label, groups=_all_or_none(groups, origins),
        languages=None if all(lang is None for lang in languages) else languages,
    )  # fmt: skip


def _all_or_none(groups: list[str | None], origins: list[str]) -> list[str] | None:
    """The groups when every row has one, None when no row has one; a DataError naming the first row without."""
    if all(g is None for g in groups):
        return None
    missing = next((o for g, o in zip(groups, origins, strict=True) if g is None), None)
    if missing is not None:
        raise DataError(
            f"{missing}: no source, while other rows have one; give every row a source, or none "
            "(or choose another column with --group-column)"
        )
    return [str(g) for g in groups]


def load_file(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    min_per_label: int = 1,
    group_column: str | None = "source",
    group_depth: int | Literal["auto"] = 0,
) -> LabelledPrompts:
    """Load one JSONL (one object per line) or CSV (with a header row) file of labelled prompts."""
    return load_files(
        [path], text_column=text_column, label_column=label_column, min_per_label=min_per_label,
        group_column=group_column, group_depth=group_depth,
    )  # fmt: skip


def from_lists(texts: Sequence[Any], labels: Sequence[Any], *, min_per_label: int = 1) -> LabelledPrompts:
    """Validate prompts and labels given as Python sequences."""
    if len(texts) != len(labels):
        raise DataError(f"got {len(texts)} texts but {len(labels)} labels; they must be the same length")
    origins = [f"<list>:{i}" for i in range(len(texts))]
    for text, label, origin in zip(texts, labels, origins, strict=True):
        _check_row(text, label, origin)
    return _validated(list(texts), list(labels), origins, min_per_label=min_per_label)


def from_dataframe(
    frame: Any, *, text_column: str = "text", label_column: str = "label", min_per_label: int = 1
) -> LabelledPrompts:
    """Validate prompts from a pandas DataFrame with the given text and label columns."""
    columns = [str(c) for c in frame.columns]
    _check_columns(columns, text_column, label_column, "<DataFrame>")
    texts = frame[text_column].tolist()
    labels = frame[label_column].tolist()
    origins = [f"<DataFrame>:row {i}" for i in frame.index]
    for text, label, origin in zip(texts, labels, origins, strict=True):
        _check_row(text, _none_if_nan(label), origin)
    return _validated(texts, labels, origins, min_per_label=min_per_label)


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


Row = tuple[str, str, str, str | None, str | None]
"""Text, label, origin (``file:line``), source and language of one row."""


@dataclass(frozen=True)
class _Columns:
    """The columns a file's rows are read from (``language`` is always that column, when present)."""

    text: str
    label: str
    group: str | None
    language: str = "language"

    def row(self, row: dict[str, Any], label: Any, origin: str) -> Row:
        """One validated row."""
        text, label, origin = _check_row(row[self.text], label, origin)
        return text, label, origin, _optional(row, self.group, origin), _optional(row, self.language, origin)


def _read_rows(path: Path, columns: _Columns) -> Iterable[Row]:
    def check(names: list[str], origin: str) -> None:
        _check_columns(names, columns.text, columns.label, origin)

    is_csv = path.suffix.lower() == ".csv"
    for row, origin in read_rows(path, (columns.text, columns.label), check_header=check):
        if not is_csv:  # a CSV file's header is checked once, before its first row
            check(list(row), origin)
        yield columns.row(row, (row[columns.label] or None) if is_csv else row[columns.label], origin)


def _optional(row: dict[str, Any], column: str | None, origin: str) -> str | None:
    """The row's value in an optional column (its source, its language); ``None`` without one; a number is read
    as its text."""
    value = _none_if_nan(row.get(column)) if column else None
    if value is None or value == "":
        return None
    if not isinstance(value, str | int):
        raise DataError(f"{origin}: {column} must be a string, found {type(value).__name__} ({value!r:.60})")
    return str(value).strip()


def _check_columns(columns: list[str], text_column: str, label_column: str, origin: str) -> None:
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise DataError(
            f"{origin}: missing column(s) {missing}; found columns {columns}. "
            f"Rename them or pass --text-column/--label-column (text_column=/label_column=)."
        )


def _check_row(text: Any, label: Any, origin: str) -> tuple[str, str, str]:
    if not isinstance(text, str):
        raise DataError(f"{origin}: text must be a string, found {type(text).__name__} ({text!r:.60})")
    if not text.strip():
        raise DataError(f"{origin}: text is empty; remove the row or fill in the prompt")
    if label is None or (isinstance(label, str) and not label.strip()):
        raise DataError(f"{origin}: label is missing; every prompt needs a label")
    if not isinstance(label, str):
        raise DataError(f"{origin}: label must be a string, found {type(label).__name__} ({label!r})")
    return text, label.strip(), origin


def _validated(
    texts: list[str],
    labels: list[str],
    origins: list[str],
    *,
    min_per_label: int,
    groups: list[str] | None = None,
    languages: list[str | None] | None = None,
) -> LabelledPrompts:
    labels = [label.strip() for label in labels]
    first_seen: dict[str, tuple[str, str]] = {}
    duplicates: list[tuple[str, str]] = []
    for text, label, origin in zip(texts, labels, origins, strict=True):
        key = text.strip()
        if key in first_seen:
            other_label, other_origin = first_seen[key]
            if other_label != label:
                raise DataError(
                    f"{origin}: this text is labelled {label!r} but {other_origin} has the same text labelled "
                    f"{other_label!r}; a prompt can have only one label, so fix or remove one of them"
                )
            duplicates.append((origin, other_origin))
        else:
            first_seen[key] = (label, origin)
    if duplicates:
        logger.warning("%d exact duplicate prompt(s), e.g. %s repeats %s", len(duplicates), *duplicates[0])
    data = LabelledPrompts(texts, labels, origins, duplicates, groups, languages)
    if not texts:
        raise DataError("no labelled prompts found; the input is empty")
    data.check_min_per_label(min_per_label)
    return data
