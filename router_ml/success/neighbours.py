"""The neighbour part of the success heads: each model's mean outcome on the k most similar training prompts.

Correctness is a noisy 0/1 signal per prompt; averaging it over similar prompts (RouterBench's kNN router) is
what generalised best to subjects and task families the heads never saw (docs/outcomes.md). To keep it as cheap
as a linear head at routing time, similarity is cosine in a small PCA projection of the embedding (64
dimensions by default: 0.1 ms for 8,000 stored prompts), over at most ``max_rows`` stored training prompts.

:class:`Memory` is plain arrays, stored as data in the artifact with the rest of the heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from sklearn.decomposition import PCA

__all__ = ["Memory", "fit_memory"]


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Memory:
    """Stored training prompts in the projection, with their outcomes.

    Attributes:
        mean (np.ndarray): ``(dim,)`` the projection's centre (of unit-length embeddings).
        components (np.ndarray): ``(dims, dim)`` the projection.
        vectors (np.ndarray): ``(rows, dims)`` unit-length projected training prompts.
        scores (np.ndarray): ``(rows, n_models)`` their outcomes, NaN where unknown.
        prior (np.ndarray): ``(n_models,)`` each model's mean outcome, used where no neighbour has one.
    """

    mean: np.ndarray
    components: np.ndarray
    vectors: np.ndarray
    scores: np.ndarray
    prior: np.ndarray

    def project(self, X: np.ndarray) -> np.ndarray:
        """Unit-length projections of embeddings ``X``."""
        return _unit((_unit(np.asarray(X, dtype=np.float32)) - self.mean) @ self.components.T)

    def predict(self, X: np.ndarray, k: int, base: np.ndarray | None = None, strength: float = 0.0) -> np.ndarray:
        """``(n, n_models)``: each model's mean outcome over the ``k`` nearest stored prompts that have one.

        Where outcomes are sparse (a log holds one model per prompt), a model may have few known outcomes among the
        ``k`` neighbours; their mean is then shrunk towards ``base`` (``(n, n_models)``, e.g. the regression's
        prediction; the model's mean outcome when ``None``) as if ``strength`` more neighbours had that value.
        """
        similarity = self.project(X) @ self.vectors.T
        k = min(k, self.vectors.shape[0])
        if k < similarity.shape[1]:
            rows = self.scores[np.argpartition(-similarity, k - 1, axis=1)[:, :k]]  # (n, k, n_models)
        else:
            rows = np.broadcast_to(self.scores, (len(similarity), *self.scores.shape))
        if not self.sparse:
            return rows.mean(axis=1, dtype=np.float64)
        known = ~np.isnan(rows)
        counts = known.sum(axis=1)
        total = np.where(known, rows, 0.0).sum(axis=1)
        base = np.broadcast_to(self.prior if base is None else base, total.shape)
        mean = (total + strength * base) / np.maximum(counts + strength, 1e-12)
        return np.where(counts + strength > 0, mean, base).astype(np.float64)

    @cached_property
    def sparse(self) -> bool:
        """Whether some stored outcome is unknown (then the mean is taken over the known ones only)."""
        return bool(np.isnan(self.scores).any())


def fit_memory(X: np.ndarray, scores: np.ndarray, dims: int, max_rows: int, seed: int = 0) -> Memory:
    """A :class:`Memory` of (at most ``max_rows``, a seeded sample) training prompts ``X`` and their ``scores``
    (NaN = unknown), in a PCA projection to ``dims`` dimensions (fewer when the data has fewer)."""
    rows = np.arange(len(X))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    unit = _unit(np.asarray(X, dtype=np.float32))
    pca = PCA(n_components=min(dims, unit.shape[1], len(unit)), random_state=seed).fit(unit)
    memory = Memory(
        mean=pca.mean_.astype(np.float32),
        components=pca.components_.astype(np.float32),
        vectors=np.empty((0, 0), dtype=np.float32),
        scores=scores[rows].astype(np.float32),
        prior=(np.nansum(scores, axis=0) / np.maximum((~np.isnan(scores)).sum(axis=0), 1)).astype(np.float32),
    )
    return Memory(
        memory.mean, memory.components, memory.project(X[rows]).astype(np.float32), memory.scores, memory.prior
    )
