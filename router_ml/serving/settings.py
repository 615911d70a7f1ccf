"""Settings of the routing service, kept in a light module: ``router-ml --help`` and the CLI's option defaults
read them without importing the web stack or the model code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from ..exceptions import ConfigError
from ..online.outcome import PromptStorage

__all__ = ["ServiceConfig"]


@dataclass
class ServiceConfig:
    """Everything the service reads at start (``router-ml serve`` fills it from its options and environment).

    Attributes:
        model (str): artifact directory, or a models directory with a ``CURRENT`` pointer.
        routes (str | None): route table TOML; the artifact's own when ``None``.
        db (str | None): outcome store, a SQLite path or a ``postgresql://`` URL; ``$ROUTER_ML_DB`` or the
            default file when ``None``.
        backend (str | None): embedder backend (``torch``, ``onnx``, ``onnx-int8``); the artifact's when ``None``.
        fallback_backend (str | None): backend to use, with a warning, if ``backend`` cannot be built.
        api_keys (list[str]): bearer tokens accepted on ``/v1/*``; empty means no authentication.
        admin_key (str | None): bearer token for ``/admin/*``; ``None`` disables the admin endpoints.
        max_body_bytes (int): largest request body. Default 1 MB.
        max_messages (int): most messages in one request. Default 256.
        max_batch_inputs (int): most inputs in one ``/v1/route`` batch. Default 256.
        cache_size (int): decision-cache entries per worker; 0 turns it off.
        max_batch (int): micro-batch size bound. max_wait_ms (float): micro-batch wait bound.
        timeout (float): seconds per provider call. deadline (float): seconds per request, fallbacks included.
        reload_interval (float): seconds between checks for a newly promoted artifact; 0 checks only on
            ``/admin/reload``.
        prompt_storage (str): what the outcome log keeps of prompts: ``full``, ``hash`` or ``none``.
        session_ttl (float): seconds a session's pin (``x-router-session``) lives after its last turn; 0 turns
            stickiness off. Default 1800.
        explore (float | None): the share of quality-routed requests sent to another candidate, overriding the
            route table's ``explore`` (:mod:`router_ml.success.explore`); the table's when ``None``.
    """

    model: str
    routes: str | None = None
    db: str | None = None
    backend: str | None = None
    fallback_backend: str | None = None
    api_keys: list[str] = field(default_factory=list)
    admin_key: str | None = None
    max_body_bytes: int = 1_000_000
    max_messages: int = 256
    max_batch_inputs: int = 256
    cache_size: int = 4096  # router_ml.router.DEFAULT_CACHE_SIZE (not imported: this module stays light)
    max_batch: int = 32
    max_wait_ms: float = 2.0
    timeout: float = 60.0
    deadline: float = 120.0
    reload_interval: float = 0.0
    prompt_storage: PromptStorage = "full"
    session_ttl: float = 1800.0  # router_ml.online.sessions.DEFAULT_SESSION_TTL (not imported: this module stays light)
    explore: float | None = None

    def to_json(self) -> str:
        """The settings as JSON (how ``router-ml serve`` hands them to the workers)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServiceConfig:
        """Settings from :meth:`to_json`'s text; a ``ConfigError`` for unknown names."""
        data = json.loads(text)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown service settings {sorted(unknown)}")
        return cls(**data)
