"""Batch paths on one API and two engines: route, evaluate and embed many prompts, locally or on a Ray cluster.

- :mod:`.route`: :func:`route_file`, INPUT (Parquet, JSONL or CSV, a file or a folder) to a folder of Parquet
  parts, committed part by part (:mod:`.commit`) so that a rerun resumes;
- :mod:`.io`: finding, reading and checking the parts, and writing them atomically;
- :mod:`.engine`: the chunk of work both engines run, and the local engine;
- :mod:`.ray_engine`: the Ray engine (Ray Data ``map_batches`` on stateful actors), imported only when used;
- :mod:`.embedding`: embeddings on the cluster for ``train`` and ``eval``.

``import router_ml.batch`` imports neither Ray nor pyarrow.
"""

from __future__ import annotations

from .embedding import RemoteEmbedder, engine_embedder, train_on
from .engine import ENGINES
from .route import BatchSummary, route_file

__all__ = ["ENGINES", "BatchSummary", "RemoteEmbedder", "engine_embedder", "route_file", "train_on"]
