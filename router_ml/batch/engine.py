"""The work both engines do, chunk by chunk: route a chunk of prompts, or embed a chunk of texts.

The driver cuts the input into the same chunks whatever the engine, and each chunk is one call of the same
function on a router (or embedder) loaded once per worker. Embeddings differ in the last bits when the batch they
are computed in differs, so equal chunks are what makes the Ray engine's output identical to the local engine's;
the decision cache is off for the same reason (a cached row would come from another chunk).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..router import Router

if TYPE_CHECKING:
    from ..embed import Embedder

__all__ = ["ENGINES", "EmbedSpec", "LocalRunner", "RouteSpec", "chunked", "route_chunk"]

ENGINES = ("local", "ray")
"""The batch engines: ``local`` (this process) and ``ray`` (Ray Data actors, on a laptop or a cluster)."""

Worker = Callable[[Sequence[Any]], Any]
"""One chunk in, its result out: what a spec builds, once per worker."""


def chunked(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` cut into consecutive chunks of ``size`` (the last one shorter)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def route_chunk(router: Router, prompts: Sequence[Any]) -> dict[str, Any]:
    """Route one chunk: the columns of its decisions, and each model's P(success) when the artifact has success
    heads (``success``, ``{model: array}``; else ``None``)."""
    heads = router.artifact.success
    decisions, rows = router.route_rows(list(prompts), success=heads is not None)  # one embedding pass for both
    labels = router.labels
    success = None
    if heads is not None:
        columns = rows[:, len(labels) :].astype(np.float64)
        success = {str(m): columns[:, j] for j, m in enumerate(heads.heads.models_)}
    return {
        "label": [d.label for d in decisions],
        "model": [d.model for d in decisions],
        "confidence": np.array([d.confidence for d in decisions], dtype=np.float64),
        "predicted": [d.predicted for d in decisions],
        "abstained": np.array([d.abstained for d in decisions], dtype=bool),
        "probabilities": np.array([[d.probabilities[c] for c in labels] for d in decisions], dtype=np.float64),
        "success": success,
    }


@dataclass(frozen=True)
class RouteSpec:
    """How a worker loads the router: :meth:`Router.load`'s arguments (the decision cache off)."""

    model: str
    routes: str | None = None
    backend: str | None = None
    threshold: float | None = None

    def load(self) -> Router:
        """The router, loaded."""
        return Router.load(self.model, self.routes, backend=self.backend, threshold=self.threshold, cache_size=0)

    def build(self) -> Worker:
        """A worker function that routes one chunk on the router loaded once."""
        router = self.load()
        return lambda prompts: route_chunk(router, prompts)


@dataclass(frozen=True)
class EmbedSpec:
    """How a worker builds the embedder: an artifact's (``model``, on ``backend``), or a model by name."""

    model: str | None = None
    embedder: str | None = None
    backend: str | None = None

    def build(self) -> Worker:
        """A worker function that embeds one chunk of texts (float32 rows)."""
        from ..artifact import load as load_artifact
        from ..embed import make_embedder

        if self.model is not None:
            embedder: Embedder = load_artifact(self.model, backend=self.backend).model.embedder  # type: ignore[assignment]
        else:
            embedder = make_embedder(str(self.embedder), self.backend)
        embedder.warm_up()
        return lambda texts: np.asarray(embedder.encode(list(texts)), dtype=np.float32)


class LocalRunner:
    """The local engine: every chunk in this process, in order, on one worker."""

    workers = 1

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def run(self, chunks: Sequence[Sequence[Any]]) -> list[Any]:
        """Each chunk's result, in the order of ``chunks``."""
        return [self._worker(chunk) for chunk in chunks]
