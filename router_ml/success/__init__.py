"""Learn from outcomes which model answers best, and route on quality per dollar.

- :mod:`.data`: outcome rows (long or wide, JSONL or CSV, sparse or full) into :class:`Outcomes`;
- :mod:`.heads`: :class:`SuccessHeads`, per-model calibrated P(success | prompt) on the router's embedding;
- :mod:`.training`: fit them on outcome files and save an artifact (``router-ml train-outcomes``);
- :mod:`.policy` and :mod:`.routing`: a route table's ``strategy = "quality"``, and its compiled form;
- :mod:`.metrics`, :mod:`.baselines`, :mod:`.report`, :mod:`.evaluation`: the cost–quality evaluation
  (``router-ml eval-outcomes``).

Only the light modules are imported here (the route table imports :mod:`.policy`).
"""

from __future__ import annotations

from .data import Outcomes, from_records, group_key, load_outcomes
from .heads import SuccessHeads
from .policy import QualityStrategy

__all__ = ["Outcomes", "QualityStrategy", "SuccessHeads", "from_records", "group_key", "load_outcomes"]
