"""Collect outcomes offline: every prompt of a file sent to every model, each answer scored, rows appended as done.

Each (prompt, model) pair is one call through the real :class:`~router_ml.online.dispatch.Dispatcher` with the
model forced, so the route table's endpoints, prices, instructions, breakers, retries and deadlines all apply.
The answer is scored by a judge model (through the dispatcher too) or against a reference column
(:mod:`router_ml.online.judge`). Each finished pair is appended to the output at once, as a long outcome row that
:func:`router_ml.success.load_outcomes` reads::

    {"text": ..., "model": ..., "score": 0.89, "cost": 0.0012, "source": ..., "answer": ..., "judge": ...}

- **Resuming.** A rerun with the same output skips the pairs already in it; a last line cut off mid-write is
  dropped first and collected again.
- **Failures.** A call that no attempt answered is written with score 0 and an ``error`` field, or with
  ``skip_failures`` not written (a rerun retries it). A judge that gives no score leaves the pair unwritten: it is
  never guessed, and a rerun asks again. Both kinds are logged, with the reason, to ``OUT.errors.jsonl``.
- ``concurrency`` pairs are in flight at most (a pair's answer, then its judging), per worker.
- **Engines** (:mod:`.collect_ray`). ``local`` answers here; ``ray`` on Ray actors, a dispatcher each. This process
  still skips done pairs, writes each row as it comes back (an interruption loses the pairs in flight) and counts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError, DataError, DispatchError
from ..route_table import RouteTable, load_routes
from ..rows import read_rows
from .collect_ray import check_engine, engine_slots
from .dispatch import Dispatcher
from .judge import answer_text, grade_reference, judge_answer

__all__ = ["CollectSummary", "PairSpec", "PromptRow", "acollect", "collect", "collected_pairs", "read_prompts"]

_ERROR_CHARS = 600


@dataclass(frozen=True)
class PromptRow:
    """One prompt to collect: its text, source, reference answer (reference grading only) and ``file:line``."""

    text: str
    origin: str
    source: str | None = None
    reference: str | None = None


@dataclass
class CollectSummary:
    """What a :func:`collect` run did.

    Attributes:
        out (Path): the outcomes file. errors (Path): where the pairs left unwritten are logged, with the reason.
        pairs (int): (prompt, model) pairs of the prompts file (repeated prompts count once).
        skipped (int): pairs already in ``out`` at the start, not sent again.
        written (int): rows appended this run, failed calls among them.
        failed (int): calls that no attempt answered: ``failures_written`` of them written as score 0, the others
            left out (``skip_failures``).
        unscored (int): answers the judge gave no score to (left out; a rerun asks again).
        cost (float): USD of this run's answers. judge_cost (float): USD of this run's judge calls.
        duplicates (int): repeated prompts of the prompts file, collected once.
        truncated (bool): whether a cut-off last line of ``out`` was dropped before resuming.
        engine (str): ``"local"`` or ``"ray"``. workers (int): Ray actors, else 1 (0: nothing was pending).
    """

    out: Path
    errors: Path
    pairs: int = 0
    skipped: int = 0
    written: int = 0
    failed: int = 0
    unscored: int = 0
    cost: float = 0.0
    judge_cost: float = 0.0
    duplicates: int = 0
    truncated: bool = False
    failures_written: int = 0
    engine: str = "local"
    workers: int = 1

    @property
    def remaining(self) -> int:
        """Pairs still missing from ``out``: a rerun sends them."""
        return self.pairs - self.skipped - self.written

    def format(self) -> str:
        """A few lines for people."""
        lines = [
            f"{self.written} rows written to {self.out} ({self.failures_written} of them failed calls, score 0); "
            f"{self.skipped} pairs skipped as already done; {self.pairs} pairs in all",
            f"failures: {self.failed} calls failed, {self.unscored} answers unscored by the judge"
            + (f" (see {self.errors})" if self.failed > self.failures_written or self.unscored else ""),
            f"cost: ${self.cost + self.judge_cost:.4f} (answers ${self.cost:.4f}, judge ${self.judge_cost:.4f})",
        ]
        if self.remaining:
            lines.append(f"{self.remaining} pairs not written: run the same command again to retry them")
        if self.duplicates:
            lines.append(f"{self.duplicates} repeated prompts in the prompts file were collected once")
        if self.truncated:
            lines.append(f"dropped a cut-off last line of {self.out} (an interrupted write) and collected it again")
        if self.engine != "local" and self.workers:
            lines.append(f"answered on the {self.engine} engine by {self.workers} worker{'s' * (self.workers > 1)}")
        return "\n".join(lines)


def _cell(row: dict[str, Any], column: str, origin: str, what: str) -> str | None:
    """A cell as a string (numbers too), ``None`` when empty or missing."""
    value = row.get(column)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataError(f"{origin}: {what} {column!r} must be a string, found {type(value).__name__} ({value!r:.60})")
    return str(value)


def read_prompts(
    path: str | Path, *, text_column: str = "text", source_column: str = "source", reference_column: str | None = None
) -> tuple[list[PromptRow], int]:
    """The unique prompts of a JSONL or CSV file, in file order, and how many repeats were dropped.

    Each row needs ``text_column`` (and ``reference_column`` when given); ``source_column`` is optional.
    """
    path = Path(path)
    needed = [text_column] + ([reference_column] if reference_column else [])

    def check_header(names: list[str], origin: str) -> None:
        missing = [c for c in needed if c not in names]
        if missing:
            raise DataError(
                f"{origin}: expected columns {needed}, missing {missing}; found {names}. Rename the columns, or "
                "name yours with --text-column / --reference-column"
            )

    rows: dict[str, PromptRow] = {}
    duplicates = 0
    for row, origin in read_rows(path, needed, check_header=check_header):
        text = row.get(text_column)
        if not isinstance(text, str) or not text.strip():
            found = "nothing" if text in (None, "") else f"{type(text).__name__} {text!r:.60}"
            raise DataError(f"{origin}: expected the prompt as a non-empty string in {text_column!r}, found {found}")
        reference = _cell(row, reference_column, origin, "the reference") if reference_column else None
        if reference_column and reference is None:
            raise DataError(f"{origin}: no reference answer in {reference_column!r}; fill it in or remove the row")
        if text in rows:
            duplicates += 1
            continue
        rows[text] = PromptRow(text, origin, _cell(row, source_column, origin, "the source"), reference)
    if not rows:
        raise DataError(f'{path}: no prompts; expected rows like {{"{text_column}": "..."}}; fill the file')
    return list(rows.values()), duplicates


def collected_pairs(out: str | Path) -> tuple[set[tuple[str, str]], bool]:
    """The (text, model) pairs already in an outcomes file, and whether a cut-off last line was dropped from it.

    A last line without its newline is kept (and ended) when it is a whole row, else removed from the file.
    """
    path = Path(out)
    if not path.exists():
        return set(), False
    data = path.read_bytes()
    truncated = False
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1  # where the last line starts
        if _row(data[cut:]) is not None:  # a whole row that only lacks its newline
            with path.open("ab") as handle:
                handle.write(b"\n")
        else:
            with path.open("r+b") as handle:
                handle.truncate(cut)
            data, truncated = data[:cut], True
    pairs: set[tuple[str, str]] = set()
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        row = _row(line)
        if row is None:
            raise DataError(
                f"{path}:{number}: expected an outcome row written by collect, a JSON object with 'text' and "
                f"'model', found {line[:80]!r}; fix or remove the line (or write to a new --out file)"
            )
        pairs.add((row["text"], row["model"]))
    return pairs, truncated


def _row(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    ok = isinstance(row, dict) and isinstance(row.get("text"), str) and isinstance(row.get("model"), str)
    return row if ok else None


class _Sink:
    """Appends rows to the outcomes file and unwritten pairs to the errors file (opened at the first), each flushed."""

    def __init__(self, out: Path, errors: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self.errors_path, self.files = errors, {"row": out.open("a", encoding="utf-8")}

    def write(self, kind: str, row: dict[str, Any]) -> None:
        """Append ``row`` to the outcomes file (``kind`` "row") or the errors file ("error")."""
        if kind not in self.files:
            self.files[kind] = self.errors_path.open("a", encoding="utf-8")
        self.files[kind].write(json.dumps(row, ensure_ascii=False) + "\n")
        self.files[kind].flush()

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


PairAnswerer = Callable[[PromptRow, str], Awaitable["PairOutcome"]]  # an engine's slot: one pair at a time


@dataclass(frozen=True)
class PairSpec:
    """How pairs are answered and scored: the table, the judge (``None``: the reference), the dispatcher's
    ``limits`` (timeout, deadline, retries). Picklable: each engine worker :meth:`build` s its own dispatcher."""

    routes: RouteTable
    judge: str | None
    limits: dict[str, Any]

    def build(self) -> PairAnswerer:
        """Answers and scores pairs through a dispatcher of its own (no outcome store: the rows are the log)."""
        return partial(answer_pair, Dispatcher(routes=self.routes, store=None, **self.limits), self.judge)


@dataclass(frozen=True)
class PairOutcome:
    """One pair from a worker: its outcome row (a failed call's: score 0 and ``error``), or for an answer the judge
    gave no score its error row (``unscored``); and what its answer and judging cost."""

    row: dict[str, Any]
    failed: bool = False
    unscored: bool = False
    cost: float = 0.0
    judge_cost: float = 0.0


async def answer_pair(dispatcher: Dispatcher, judge: str | None, item: PromptRow, model: str) -> PairOutcome:
    """Answer one pair through ``dispatcher``, then score it by ``judge`` or by the prompt's reference."""
    base: dict[str, Any] = {"text": item.text, "model": model}
    if item.source is not None:
        base["source"] = item.source
    try:
        result = await dispatcher.acomplete(item.text, model=model)
    except DispatchError as exc:
        return PairOutcome({**base, "score": 0.0, "error": str(exc)[:_ERROR_CHARS]}, failed=True)
    answer, cost = answer_text(result.response), result.outcome.cost_usd
    if judge is None:
        assert item.reference is not None
        score, error, judge_cost = grade_reference(answer, item.reference), None, 0.0
    else:
        score, error, judge_cost = await judge_answer(dispatcher, judge, item.text, answer)
    if score is None:
        return PairOutcome({**base, "answer": answer, "error": error}, unscored=True, cost=cost or 0.0,
                           judge_cost=judge_cost)  # fmt: skip
    row = {**base, "score": round(score, 6), **({"cost": cost} if cost is not None else {}), "answer": answer}
    return PairOutcome(row | ({"judge": judge} if judge else {}), cost=cost or 0.0, judge_cost=judge_cost)


def _record(done: PairOutcome, sink: _Sink, summary: CollectSummary, skip_failures: bool) -> None:
    """Count one pair in the summary and write its row, or its error when it is left out."""
    summary.cost += done.cost
    summary.judge_cost += done.judge_cost
    summary.failed += done.failed
    summary.unscored += done.unscored
    if done.unscored or (done.failed and skip_failures):
        sink.write("error", {k: v for k, v in done.row.items() if k != "score"})
        return
    sink.write("row", done.row)
    summary.written += 1
    summary.failures_written += done.failed


def _models(models: Sequence[str], judge: str | None, table: RouteTable) -> list[str]:
    """The models to collect, checked against the route table."""
    names = list(dict.fromkeys(m.strip() for m in models if m.strip()))
    if not names:
        raise ConfigError("no models to collect; name at least one, e.g. --models openai/gpt-5,openai/gpt-5-mini")
    unknown = [m for m in [*names, *([judge] if judge else [])] if m not in table.all_models]
    if unknown:
        raise ConfigError(
            f"{table.source}: the route table has no model {unknown}; it knows {table.all_models}. Add each under "
            '[models."provider/model"] (with its api_base and prices) or pass --routes with a table that has it'
        )
    return names


def _check_options(out: Path, prompts: Path, judge: str | None, reference_column: str | None, concurrency: int) -> None:
    if (judge is None) == (reference_column is None):
        raise ConfigError(
            "give exactly one way to score the answers: a judge model (--judge MODEL) or a reference column "
            f"(--reference-column COL); got {'both' if judge else 'neither'}"
        )
    if out.suffix.lower() != ".jsonl":
        raise ConfigError(f"the outcomes file must be .jsonl (one long row a line), got {out}; name it e.g. out.jsonl")
    if out.resolve() == prompts.resolve():
        raise ConfigError(f"the outcomes file {out} is the prompts file; write the outcomes to another file")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")


async def acollect(
    prompts_path: str | Path, models: Sequence[str], out: str | Path, *, routes: RouteTable | str | Path | None = None,
    judge: str | None = None, reference_column: str | None = None, concurrency: int = 4, skip_failures: bool = False,
    text_column: str = "text", source_column: str = "source", timeout: float = 60.0, deadline: float = 120.0,
    retries: int = 1, progress: bool = True, engine: str = "local", address: str | None = None,
    workers: int | None = None,
) -> CollectSummary:  # fmt: skip
    """The async :func:`collect` (same arguments), for code that already runs an event loop."""
    prompts_path, out = Path(prompts_path), Path(out)
    _check_options(out, prompts_path, judge, reference_column, concurrency)
    check_engine(engine, address, workers)  # Ray missing: one line, before the prompts are read
    table = routes if isinstance(routes, RouteTable) else load_routes(routes)
    names = _models(models, judge, table)
    items, duplicates = read_prompts(
        prompts_path, text_column=text_column, source_column=source_column, reference_column=reference_column
    )
    done, truncated = collected_pairs(out)
    summary = CollectSummary(out, out.with_name(f"{out.stem}.errors.jsonl"), duplicates=duplicates, engine=engine)
    summary.truncated, summary.pairs = truncated, len(items) * len(names)
    pending = [(item, model) for item in items for model in names if (item.text, model) not in done]
    summary.skipped = summary.pairs - len(pending)
    spec = PairSpec(table, judge, {"timeout": timeout, "deadline": deadline, "retries": retries})
    with engine_slots(spec, concurrency, engine, address, workers, len(pending)) as slots:
        summary.workers = len(slots) // concurrency
        sink = _Sink(out, summary.errors)
        record = partial(_record, sink=sink, summary=summary, skip_failures=skip_failures)
        try:
            await _run(slots, iter(pending), len(pending), record, summary, progress)
        finally:
            sink.close()
    return summary


async def _run(
    slots: Sequence[PairAnswerer], pending: Iterator[tuple[PromptRow, str]], total: int,
    record: Callable[[PairOutcome], None], summary: CollectSummary, bar: bool,
) -> None:  # fmt: skip
    """Each slot takes the pending pairs one at a time, and each pair is recorded as it comes back; the progress
    bar shows the cost so far. An error stops every slot (the pairs in flight are lost: a rerun sends them)."""
    from tqdm import tqdm

    with tqdm(total=total, desc="collect", unit="pair", disable=not bar, dynamic_ncols=True) as progress:

        async def worker(answer: PairAnswerer) -> None:
            for item, model in pending:  # one shared iterator: each pair goes to exactly one slot
                record(await answer(item, model))
                cost = summary.cost + summary.judge_cost
                progress.set_postfix_str(f"cost ${cost:.4f}, failed {summary.failed}", refresh=False)
                progress.update()

        tasks = [asyncio.ensure_future(worker(answer)) for answer in slots[:total]]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()


def collect(
    prompts_path: str | Path, models: Sequence[str], out: str | Path, *, routes: RouteTable | str | Path | None = None,
    judge: str | None = None, reference_column: str | None = None, concurrency: int = 4, skip_failures: bool = False,
    text_column: str = "text", source_column: str = "source", timeout: float = 60.0, deadline: float = 120.0,
    retries: int = 1, progress: bool = True, engine: str = "local", address: str | None = None,
    workers: int | None = None,
) -> CollectSummary:  # fmt: skip
    """Send every prompt of ``prompts_path`` to every model, score each answer and append it to ``out``.

    Args:
        prompts_path (str | Path): a JSONL or CSV file with a ``text_column`` (and optionally ``source_column``,
            carried to the rows, and ``reference_column``).
        models (Sequence[str]): the models to collect, each named in the route table.
        out (str | Path): the ``.jsonl`` outcomes file, appended to; pairs already in it are skipped.
        routes (RouteTable | str | Path | None): models, endpoints and prices (default: the bundled table).
        judge (str | None): a model of the table that grades each answer (``SCORE: 1``–``10``, to [0, 1]).
        reference_column (str | None): grade by exact match against this column instead of a judge.
        concurrency (int): pairs in flight at most, per worker. Default 4.
        skip_failures (bool): leave a failed call out (a rerun retries it) instead of writing a 0.
        timeout, deadline, retries: the dispatcher's, per call (see :class:`Dispatcher`).
        progress (bool): show a progress bar with the cost so far (on stderr).
        engine (str): ``"local"`` (this process) or ``"ray"`` (the pairs spread over Ray actors, each with its own
            dispatcher; ``pip install 'router-ml[ray]'``); this process resumes, writes and counts either way.
        address (str | None): the Ray cluster to join (default: ``$RAY_ADDRESS``, else a local runtime).
        workers (int | None): Ray actors (default: one per cluster CPU, at most one per pending pair).

    Returns:
        CollectSummary: rows written, pairs skipped, failures and cost.
    """
    return asyncio.run(acollect(**locals()))  # the arguments, as given
