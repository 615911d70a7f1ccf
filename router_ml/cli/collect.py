"""``router-ml collect``: answer a prompts file with several models, score each answer, write outcome rows."""

from __future__ import annotations

from pathlib import Path

import click

from .group import cli
from .options import EXISTING_FILE, FILE, engine_options, routes_option

__all__ = ["collect"]


@cli.command()
@click.argument("prompts", type=EXISTING_FILE)
@click.option("--models", required=True, help="Comma-separated models of the route table to collect.")
@click.option("--out", "-o", required=True, type=FILE, help="Outcomes file (.jsonl) to append to; a rerun resumes.")
@click.option("--judge", default=None, metavar="MODEL", help="Model that grades each answer (SCORE: 1–10 → 0–1).")
@click.option(
    "--reference-column", default=None, metavar="COL",
    help="Grade by exact match against this column instead (numbers: the answer's last number).",
)  # fmt: skip
@routes_option("Route table TOML with the models, their endpoints and prices (default: the bundled table).")
@click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True,
              help="Pairs in flight at most (per worker with --engine ray).")  # fmt: skip
@click.option("--skip-failures", is_flag=True, help="Leave failed calls out (a rerun retries them) instead of 0.")
@click.option("--text-column", default="text", show_default=True, help="Column holding the prompt.")
@click.option("--source-column", default="source", show_default=True, help="Optional column carried to the rows.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds per model call.")  # fmt: skip
@click.option("--deadline", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Seconds per request, retries included.")  # fmt: skip
@engine_options
@click.option("--workers", type=click.IntRange(1), default=None,
              help="With --engine ray: Ray actors, a dispatcher each (default: one per cluster CPU).")  # fmt: skip
def collect(
    prompts: Path, models: str, out: Path, judge: str | None, reference_column: str | None, routes: Path | None,
    concurrency: int, skip_failures: bool, text_column: str, source_column: str, timeout: float, deadline: float,
    engine: str, address: str | None, workers: int | None,
) -> None:  # fmt: skip
    """Send every prompt of PROMPTS (JSONL or CSV) to each model, score the answers, append outcome rows to --out.

    Each row is (text, model, score, cost, source), as train-outcomes reads it. Pairs already in --out are skipped.
    --engine ray spreads the pairs over Ray actors, --concurrency each; this process still skips the done pairs and
    appends each row as it comes back.
    """
    from ..online.collect import collect as run

    summary = run(
        prompts, models.split(","), out, routes=routes, judge=judge, reference_column=reference_column,
        concurrency=concurrency, skip_failures=skip_failures, text_column=text_column, source_column=source_column,
        timeout=timeout, deadline=deadline, engine=engine, address=address, workers=workers,
    )  # fmt: skip
    click.echo(summary.format())
