"""The ``router-ml`` command line: a click group of thin commands that parse arguments, call the API and print."""

from __future__ import annotations

from . import online, serving
from .main import cli

online.register(cli)
serving.register(cli)

__all__ = ["cli"]
