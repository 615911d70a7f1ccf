"""The ``router-ml`` click group: logging set-up, and every :class:`RouterMLError` as one line and exit code 2."""

from __future__ import annotations

import logging
from typing import Any

import click

from ..exceptions import RouterMLError

__all__ = ["RouterMLGroup", "cli"]


class RouterMLGroup(click.Group):
    """Turns router-ml errors into one clear line and exit code 2, instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; print a :class:`RouterMLError` as ``error: ...`` and exit 2."""
        try:
            return super().invoke(ctx)
        except RouterMLError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=RouterMLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="router-ml")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def cli(verbose: bool) -> None:
    """router-ml: route each LLM request to the right specialist model with a local, trained classifier.

    Typical flow: `router-ml train --out router/`, `router-ml eval router/`, `router-ml route --model router/ "..."`.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
