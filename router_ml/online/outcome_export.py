"""Export scored answers from the outcome log as per-model outcome rows: which model answered, and how well.

Each request that a model answered and that feedback scored becomes one long row, the format
:func:`router_ml.success.data.load_outcomes` reads::

    {"text": "<prompt>", "model": "<the model that answered>", "score": 0.0-1.0, "cost": 0.0012,
     "source": "online:<router version>:<request id>", "route": "<routed label>"}

``model`` is :attr:`Outcome.model`, the model that answered after any fallbacks (not the first one tried);
``score`` is the latest feedback score, which the log keeps in [0, 1] (``up`` = 1, ``down`` = 0); ``cost`` is
the answering call's USD, when known. ``source`` groups rows by router version (see
:func:`router_ml.success.data.group_key`). The rows come from :meth:`OutcomeStore.outcomes` and
:meth:`OutcomeStore.feedback`, so this works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import OutcomeStore

__all__ = ["export_outcomes"]


def export_outcomes(store: OutcomeStore, path: str | Path, *, since: float | None = None) -> dict[str, int]:
    """Write one (prompt, answering model, feedback score) row per scored, answered request to ``path`` (JSONL).

    Args:
        store (OutcomeStore): the outcome log.
        path (str | Path): the JSONL file to write.
        since (float | None): only requests started at or after this time (epoch seconds). Default: all.

    Returns:
        dict[str, int]: ``written`` rows; scored requests left out because ``no_text`` (the prompt text was not
        stored) or ``not_answered`` (no model answered in full: an error, a deadline, a decision only, a
        broken or abandoned stream).
    """
    logged = {o.request_id: o for o in store.outcomes(since)}
    scores: dict[str, float] = {}
    for fb in store.feedback():  # oldest first: the latest score wins
        if fb.score is not None and fb.request_id in logged:
            scores[fb.request_id] = fb.score
    counts = {"written": 0, "no_text": 0, "not_answered": 0}
    with Path(path).open("w", encoding="utf-8") as handle:
        for request_id, score in scores.items():
            outcome = logged[request_id]
            if not outcome.answered or outcome.model is None:
                counts["not_answered"] += 1
                continue
            if outcome.prompt_text is None:
                counts["no_text"] += 1
                continue
            row: dict[str, Any] = {"text": outcome.prompt_text, "model": outcome.model, "score": score}
            if outcome.cost_usd is not None:
                row["cost"] = outcome.cost_usd
            row["source"] = f"online:{outcome.router_version or 'no-router'}:{request_id}"
            if outcome.label is not None:
                row["route"] = outcome.label
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            counts["written"] += 1
    return counts
