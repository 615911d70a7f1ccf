"""Train the chaos benchmark's small router: ``python chaos_train.py OUT [PER_LABEL]``.

Run as a script (by :func:`router_ml.testing.chaos_run.small_router`) with the ``PYTHONPATH`` of the service
under test, so that the artifact is written by the same ``router_ml`` that will load it (artifact formats change
between versions). It uses only long-standing APIs (``load_bundled``, ``train``, ``artifact.save``), so it runs
on older trees that do not have this file.
"""

from __future__ import annotations

import sys


def main(out: str, per_label: int = 80) -> None:
    """PER_LABEL prompts of each label, evenly spaced over the bundled training split; one C, TF-IDF, 3 folds."""
    from router_ml import artifact
    from router_ml.data import load_bundled
    from router_ml.route_table import bundled_routes_path
    from router_ml.training import TrainConfig, train

    data = load_bundled("train")
    keep: list[int] = []
    for label in sorted(set(data.labels)):
        rows = [i for i, y in enumerate(data.labels) if y == label]
        keep += rows[:: max(1, len(rows) // per_label)][:per_label]
    small = data.subset(sorted(keep))
    result = train(small, TrainConfig(c_grid=(4.0,), tfidf=(True,), cv_folds=3))
    artifact.save(result.model, out, threshold=result.threshold, data=small, metrics=result.metrics,
                  routes_file=bundled_routes_path(), overwrite=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 80)
