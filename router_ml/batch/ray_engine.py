"""The Ray engine: chunks through Ray Data ``map_batches`` on a pool of stateful actors, each of which loads the
router (or embedder) once.

Ray is an optional extra (``pip install 'router-ml[ray]'``), imported only here and only when the engine runs.
A chunk is one row of the Ray dataset (its prompts pickled), and each batch holds one chunk, so every actor
routes exactly the chunks the local engine would. An actor that dies (a killed process, a lost node) is restarted
and its chunk retried by Ray, up to ``max_retries`` times each.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..exceptions import ConfigError
from .engine import EmbedSpec, RouteSpec, Worker

__all__ = ["RAY_EXTRA", "RayRunner", "ray_session", "require_ray"]

RAY_EXTRA = "pip install 'router-ml[ray]'"
"""What installs the Ray engine."""

logger = logging.getLogger(__name__)


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or a one-line :class:`ConfigError` naming the extra."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(f"the ray engine needs Ray Data, which is not installed: {RAY_EXTRA}") from None
    return ray


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray, connected: the runtime already started in this process, else the cluster at ``address``, else a new
    local runtime on this machine's cores. A runtime started here is shut down on exit."""
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray runtime"
            raise ConfigError(
                f"cannot start or reach {where} ({str(exc).splitlines()[0]}); start one with `ray start --head` "
                "and pass its address, or leave the address out for a local runtime"
            ) from None
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


class ChunkActor:
    """A Ray Data actor: builds its worker from the spec once, then turns each batch of one pickled chunk into its
    pickled result."""

    def __init__(self, spec: RouteSpec | EmbedSpec) -> None:
        self._worker: Worker = spec.build()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run each chunk of ``batch`` (columns ``chunk`` and ``payload``) through the worker."""
        results = [pickle.dumps(self._worker(pickle.loads(p))) for p in batch["payload"]]
        return {"chunk": np.asarray(batch["chunk"]), "result": np.array(results, dtype=object)}


class RayRunner:
    """The Ray engine: runs chunks on ``workers`` actors built from ``spec``, inside a :func:`ray_session`.

    Args:
        spec (RouteSpec | EmbedSpec): what each actor loads once.
        workers (int | None): actors in the pool; ``None``: one per CPU of the cluster.
        max_retries (int): restarts of a dead actor, and retries of its chunk. Default 3.
    """

    def __init__(self, spec: RouteSpec | EmbedSpec, workers: int | None = None, max_retries: int = 3) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {max_retries}")
        self.spec, self.max_retries = spec, max_retries
        self.ray = require_ray()
        if not self.ray.is_initialized():
            raise ConfigError("the Ray engine runs inside ray_session(): Ray is not initialized")
        self.workers = workers or max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def run(self, chunks: Sequence[Sequence[Any]]) -> list[Any]:
        """Each chunk's result, in the order of ``chunks`` (Ray returns them in any order; each carries its index)."""
        if not chunks:
            return []
        data = self.ray.data
        context = data.DataContext.get_current()
        context.enable_progress_bars = False
        items = [{"chunk": i, "payload": pickle.dumps(list(c))} for i, c in enumerate(chunks)]
        dataset = data.from_items(items, override_num_blocks=len(items))
        with warnings.catch_warnings():  # Ray 2.5x names max_restarts a deprecated pass-through; older Rays need it
            warnings.simplefilter("ignore")
            mapped = dataset.map_batches(
                ChunkActor,
                fn_constructor_kwargs={"spec": self.spec},
                batch_size=1,
                compute=data.ActorPoolStrategy(size=min(self.workers, len(items))),
                num_cpus=1,
                max_restarts=self.max_retries,
                max_task_retries=self.max_retries,
            )
        results: dict[int, Any] = {}
        for row in mapped.iter_rows():
            results[int(row["chunk"])] = pickle.loads(row["result"])
        if len(results) != len(chunks):
            missing = sorted(set(range(len(chunks))) - set(results))[:5]
            raise RuntimeError(f"the Ray engine returned {len(results)} of {len(chunks)} chunks (missing {missing})")
        return [results[i] for i in range(len(chunks))]
