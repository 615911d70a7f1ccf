"""The OpenAI-compatible HTTP service.

Modules: :mod:`.app` (the app factory), :mod:`.api` (``/v1/*`` endpoints), :mod:`.operations` (probes, metrics,
reload), :mod:`.schemas` (request bodies, OpenAI errors, body limits, decision headers), :mod:`.errors` (guard
middleware and exception handlers), :mod:`.state` (one worker's router, batcher, dispatcher and store),
:mod:`.settings` (``ServiceConfig``), :mod:`.metrics` (Prometheus), :mod:`.batching` (the micro-batcher).
"""

from __future__ import annotations
