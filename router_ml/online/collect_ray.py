"""Where :func:`~router_ml.online.collect.collect` answers its (prompt, model) pairs: its two engines.

- ``local``: ``concurrency`` slots on one dispatcher, in this process.
- ``ray``: ``workers`` Ray actors (default: one per cluster CPU, at most one per pending pair). Each builds its own
  dispatcher from the picklable spec once, and answers and scores up to ``concurrency`` pairs at a time, so the
  concurrency limit is **per worker**: ``workers × concurrency`` pairs are in flight at most. The driver holds that
  many slots, each awaiting one pair from its actor, and records each pair as it comes back (the resume, the rows,
  the progress bar and the summary stay in the driver, :mod:`.collect`).
- An actor that dies is restarted, and its pairs retried, up to :data:`MAX_RETRIES` times each (a retried pair may
  have been answered, and paid for, once before).
- **API keys** are read on the workers, from their own environment, as the dispatcher reads them here: a local
  runtime started by ``collect`` inherits this process's; on a cluster, set them on every node (or in the job's
  Ray ``runtime_env``). ``collect`` never ships them.

Ray is an optional extra (``pip install 'router-ml[ray]'``), imported only when the ray engine runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

from ..exceptions import ConfigError

__all__ = ["MAX_RETRIES", "PairActor", "check_engine", "engine_slots", "ray_slots"]

MAX_RETRIES = 3
"""Restarts of a dead actor, and retries of each pair it held."""

Answerer = Callable[[Any, str], Awaitable[Any]]
"""One slot: ``(prompt row, model) → pair outcome``, one pair at a time."""


class AnswererSpec(Protocol):
    """What builds a worker's answerer (:class:`router_ml.online.collect.PairSpec`): picklable, built once a worker."""

    def build(self) -> Answerer:
        """An answerer with a dispatcher of its own."""
        ...


def check_engine(engine: str, address: str | None, workers: int | None) -> None:
    """A known engine with its options; for ``ray``, Ray installed (else one line naming the extra)."""
    if engine not in ("local", "ray"):
        raise ConfigError(f"engine must be one of local, ray, got {engine!r}")
    if engine == "local" and address is not None:
        raise ConfigError(f"an address ({address!r}) is for the ray engine; add --engine ray (engine='ray')")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if engine == "ray":
        from ..batch.ray_engine import require_ray

        require_ray()


def engine_slots(
    spec: AnswererSpec, concurrency: int, engine: str, address: str | None, workers: int | None, total: int
) -> AbstractContextManager[list[Answerer]]:
    """The engine's slots, ``concurrency`` a worker, for ``total`` pending pairs (none, and no Ray, for none)."""
    if not total:
        return nullcontext([])
    if engine == "ray":
        return ray_slots(spec, concurrency, address, workers, total)
    return nullcontext([spec.build()] * concurrency)  # one dispatcher for every slot


class PairActor:
    """A Ray actor (async: up to ``max_concurrency`` pairs at once) with its own dispatcher."""

    def __init__(self, spec: AnswererSpec) -> None:
        self._answer = spec.build()

    async def answer(self, item: Any, model: str) -> Any:
        """One pair, answered and scored."""
        return await self._answer(item, model)


def _slot(actor: Any) -> Answerer:
    """A slot whose pairs ``actor`` answers."""

    async def answer(item: Any, model: str) -> Any:
        return await actor.answer.remote(item, model)

    return answer


@contextmanager
def ray_slots(
    spec: AnswererSpec, concurrency: int, address: str | None, workers: int | None, total: int
) -> Iterator[list[Answerer]]:
    """``concurrency`` slots on each of the Ray actors, interleaved (so the first slots spread over every actor),
    inside a Ray session (:func:`router_ml.batch.ray_engine.ray_session`); the actors are killed on exit."""
    from ..batch.ray_engine import ray_session

    with ray_session(address) as ray:
        cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
        count = max(1, min(workers or int(cpus), total))
        actor_class = ray.remote(PairActor).options(
            num_cpus=min(1.0, cpus / count),  # more workers than CPUs share them (the work is waiting on the network)
            max_concurrency=concurrency,
            max_restarts=MAX_RETRIES,
            max_task_retries=MAX_RETRIES,
        )
        actors = [actor_class.remote(spec) for _ in range(count)]
        try:
            yield [_slot(actor) for _ in range(concurrency) for actor in actors]
        finally:
            for actor in actors:
                ray.kill(actor)
