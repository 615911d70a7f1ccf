"""Batch input and output: find the part files, read and check one part, write one output part atomically.

A part is read whole on the driver, whatever the engine, so that every malformed row is reported the same way:
``file:line`` for JSONL and CSV, ``file: row N`` for Parquet (N counts from 1). A row is malformed when its line is
not a JSON object, a CSV row has more fields than the header, or its prompt is missing, not a string or a
messages list, or empty. A JSONL column whose values have no common type (strings and messages lists) is written
as strings, the other values JSON-encoded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError, DataError
from ..router import routing_texts
from ..rows import read_records

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["SUFFIXES", "Part", "find_parts", "output_name", "pyarrow", "read_part", "write_atomic"]

SUFFIXES = (".parquet", ".jsonl", ".csv")
"""The input file types, by extension."""


def pyarrow() -> Any:
    """The ``pyarrow`` module, or a one-line :class:`ConfigError` naming the extra that installs it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet
    except ImportError:
        raise ConfigError(
            "batch routing reads and writes Parquet with pyarrow, a dependency of router-ml that is missing here: "
            "pip install 'pyarrow>=14' (or reinstall router-ml)"
        ) from None
    return pa


def find_parts(path: Path) -> list[Path]:
    """The part files of INPUT: the file itself, or every ``.parquet``/``.jsonl``/``.csv`` file under the folder
    (names starting with ``_`` or ``.`` left out), sorted by relative path.

    Raises:
        DataError: INPUT is missing, of another type, or a folder without part files.
    """
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
        return [path]
    if not path.is_dir():
        raise DataError(f"INPUT {path} does not exist; expected a .parquet, .jsonl or .csv file or a folder of them")
    parts = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUFFIXES
        and not any(s.startswith(("_", ".")) for s in p.relative_to(path).parts)
    )
    if not parts:
        raise DataError(f"INPUT folder {path} holds no {', '.join(SUFFIXES)} files; put the part files there")
    return parts


def output_name(root: Path, part: Path) -> str:
    """The output part's file name: the input's path relative to INPUT, folders joined by ``__``, plus
    ``.parquet`` (``day=1/a.jsonl`` → ``day=1__a.jsonl.parquet``)."""
    relative = part.relative_to(root).parts if root.is_dir() else (part.name,)
    return "__".join(relative) + ".parquet"


@dataclass
class Part:
    """One input part, read and checked.

    Attributes:
        path (Path): the file.
        table (pa.Table): the input columns of its good rows, in file order.
        prompts (list): the prompt of each good row (a string or a messages list).
        rows (list[int]): each good row's position among the file's records, from 0.
        bad (list[str]): one message per malformed row, naming the file and row.
    """

    path: Path
    table: pa.Table
    prompts: list[Any]
    rows: list[int]
    bad: list[str] = field(default_factory=list)


def _problem(value: Any, column: str) -> str | None:
    """Why ``value`` cannot be routed, or ``None`` when it can."""
    if value is None:
        return f"no {column!r} value; expected the prompt (a string or a messages list)"
    if not isinstance(value, str | list):
        return f"{column!r} holds {type(value).__name__}; expected a string or a messages list"
    try:
        routing_texts(value)
    except DataError as exc:
        return str(exc)
    return None


def read_part(path: Path, text_column: str) -> Part:
    """Read one part and check every row's prompt (see the module's docstring for what is malformed).

    Raises:
        DataError: the file cannot be read at all, or has no ``text_column``.
    """
    pa = pyarrow()
    if path.suffix.lower() == ".parquet":
        try:
            table = pa.parquet.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read {path} as Parquet: {exc}") from None
        _check_column(path, table.column_names, text_column)
        values = table.column(text_column).to_pylist()
        problems = [_problem(v, text_column) for v in values]
        good = [i for i, p in enumerate(problems) if p is None]
        bad = [f"{path}: row {i + 1}: {p}" for i, p in enumerate(problems) if p is not None]
        kept = table if not bad else table.take(pa.array(good, type=pa.int64()))
        return Part(path, kept, [values[i] for i in good], good, bad)
    records, rows, bad = [], [], []

    def header(names: list[str], origin: str) -> None:
        _check_column(path, names, text_column)

    for index, (row, origin, problem) in enumerate(read_records(path, (text_column,), check_header=header)):
        if row is not None and problem is None:
            problem = _problem(row.get(text_column), text_column)
        if problem is None:
            records.append(row)
            rows.append(index)
        else:
            bad.append(f"{origin}: {problem}")
    return Part(path, _table(path, records), [r[text_column] for r in records], rows, bad)


def _table(path: Path, records: list[dict[str, Any]]) -> pa.Table:
    """The records as one table; a column whose values have no common type (strings and messages lists, say) is
    kept as strings, its other values JSON-encoded."""
    pa = pyarrow()
    names = list(dict.fromkeys(name for record in records for name in record))
    columns = {}
    for name in names:
        values = [record.get(name) for record in records]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError):
            encoded = [v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]
            columns[name] = pa.array(encoded, pa.string())
    return pa.table(columns) if columns else pa.table({})


def _check_column(path: Path, columns: list[str], text_column: str) -> None:
    if text_column not in columns:
        raise DataError(
            f"{path}: no {text_column!r} column (found {columns[:10]}); name the prompt column with --text-column"
        )


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` as Parquet at ``path`` through a temporary file and a rename: a reader sees the whole part
    or none."""
    pa = pyarrow()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pa.parquet.write_table(table, temporary)
    os.replace(temporary, path)
