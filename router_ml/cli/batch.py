"""``router-ml route-batch``: route a file or a folder of prompts into Parquet, here or on a Ray cluster."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .group import cli
from .options import DIR, EXISTING_DIR, engine_options, routes_option, run_backend_option

__all__ = ["route_batch"]


@cli.command(name="route-batch")
@click.argument("model_dir", metavar="MODEL", type=EXISTING_DIR)
@click.argument("source", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.argument("output", metavar="OUTPUT", type=DIR)
@engine_options
@click.option("--workers", type=click.IntRange(1), default=None, help="Ray actors (default: one per cluster CPU).")
@click.option("--skip-bad-rows", is_flag=True, help="Skip malformed rows (counted in the summary) instead of failing.")
@click.option("--overwrite", is_flag=True, help="Start again in an OUTPUT that holds another run's parts.")
@click.option("--text-column", default="text", show_default=True, help="Column holding the prompt.")
@click.option("--prefix", default="", help="Put before the added columns' names (when INPUT already has them).")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True, help="Prompts per routing call.")
@click.option("--threshold", type=float, default=None, help="Override the artifact's abstention threshold.")
@routes_option()
@run_backend_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def route_batch(
    model_dir: Path, source: Path, output: Path, engine: str, address: str | None, workers: int | None,
    skip_bad_rows: bool, overwrite: bool, text_column: str, prefix: str, batch_size: int, threshold: float | None,
    routes: Path | None, backend: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Route every prompt of INPUT (a Parquet, JSONL or CSV file, or a folder of them) into OUTPUT, a folder of
    Parquet parts: the input columns plus row, label, model, confidence, predicted, abstained, probabilities and,
    with success heads, success.

    Each part is committed as it is written, so a rerun after an interruption skips the finished parts. A
    malformed row stops the run with its file and row, unless --skip-bad-rows. --engine ray runs the routing on
    Ray Data actors, each loading MODEL once (a path every node can read); this process reads INPUT and writes
    OUTPUT.
    """
    from ..batch import route_file

    summary = route_file(
        model_dir, source, output, engine, address=address, workers=workers, routes=routes, backend=backend,
        threshold=threshold, text_column=text_column, prefix=prefix, batch_size=batch_size,
        skip_bad_rows=skip_bad_rows, overwrite=overwrite,
    )  # fmt: skip
    click.echo(json.dumps(summary.to_dict()) if as_json else summary.format())
