"""The dispatch demo: the original three-specialist example (``examples/seed_agents.toml``) against the loopback
stub LLM server, showing where each prompt went, which instructions reached which model, a sticky conversation,
a fallback, and the outcome-log summary.

Used by ``scripts/demo_dispatch.py`` (``make demo``) and as the last step of ``router-ml demo`` (``make run``).
No traffic leaves this machine: every model's ``api_base`` is the stub on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from ..route_table import RouteTable, load_routes
from .stub import StubLLMServer, stub_route_table

__all__ = ["PROMPTS", "run_dispatch_demo", "seed_agents_path"]

PROMPTS = (
    ("code", "Write a Python function that returns the n-th Fibonacci number iteratively."),
    ("creative", "Write a short poem about the first snow falling on a quiet city."),
    ("reasoning", "Why does the Moon always show the same face to the Earth?"),
    ("simple", "Translate into French: 'The train leaves at nine tomorrow morning.'"),
)
"""(expected route, prompt): one prompt per specialist."""

FOLLOW_UP = "Nice. Now write a limerick about that function."
"""A second turn that would route to ``creative`` on its own, sent in the coding conversation's session."""

_KEY_ENV = "ROUTER_ML_DEMO_KEY"


def seed_agents_path() -> Path:
    """Path of ``examples/seed_agents.toml`` (the repository's copy, else the one installed with the package)."""
    repo_copy = Path(__file__).resolve().parents[2] / "examples" / "seed_agents.toml"
    if repo_copy.is_file():
        return repo_copy
    return Path(str(resources.files("router_ml") / "_data" / "seed_agents.toml"))


def _demo_table(table: RouteTable, stub: StubLLMServer) -> RouteTable:
    """``table`` served by the stub, plus a route whose primary is down, to show a fallback."""
    data = stub_route_table(table, stub, _KEY_ENV).to_dict()
    data["routes"]["demo-fallback"] = {"model": "openai/fail-primary", "fallbacks": [table["reasoning"].model]}
    data["models"]["openai/fail-primary"] = {"api_base": stub.base_url, "api_key_env": _KEY_ENV}
    return RouteTable.from_dict(data, source=f"{table.source} (served by the demo stub)")


def _received(stub: StubLLMServer, before: int) -> str:
    """The system messages of the requests the stub received since ``before``, as one quoted line."""
    system = [text for r in stub.received[before:] for text in r.system]
    return " | ".join(repr(text) for text in system) if system else "(none)"


def run_dispatch_demo(
    model_dir: str | Path, db: str | Path, routes: str | Path | None = None, echo: Callable[[str], None] = print
) -> None:
    """Route and dispatch the demo prompts through a router, printing what each model received.

    Args:
        model_dir (str | Path): the router artifact (trained on the bundled labels).
        db (str | Path): the outcome store to write.
        routes (str | Path | None): the route table; ``examples/seed_agents.toml`` when ``None``.
        echo (Callable): where each line goes. Default ``print``.
    """
    from ..exceptions import DispatchError
    from ..online.dispatch import Dispatcher  # imports litellm (seconds): only when the demo runs
    from ..online.store import OutcomeStore
    from ..router import Router

    os.environ.setdefault(_KEY_ENV, "stub-key")
    with StubLLMServer() as stub, OutcomeStore(db) as store:
        table = _demo_table(load_routes(routes or seed_agents_path()), stub)
        dispatcher = Dispatcher(Router.load(model_dir, table), table, store)
        echo(f"route table {table.source}; stub LLM server on {stub.root_url}; outcome log {db}\n")
        for expected, prompt in PROMPTS:
            before = len(stub.received)
            result = dispatcher.complete(prompt, session=f"demo-{expected}")
            o = result.outcome
            mark = "ok" if o.label == expected else f"expected {expected}"
            echo(f"[{o.label:<9}] {o.model:<30} conf {o.confidence:.2f} ({mark})")
            echo(f"    prompt:       {prompt}")
            echo(f"    instructions: {_received(stub, before)}")
            echo(f"    answer:       {result.response.choices[0].message.content}\n")
        conversation = [
            {"role": "user", "content": PROMPTS[0][1]},
            {"role": "assistant", "content": "def fib(n): ..."},
            {"role": "user", "content": FOLLOW_UP},
        ]
        alone = dispatcher.router.route(conversation)  # type: ignore[union-attr]
        result = dispatcher.complete(conversation, session="demo-code")
        echo(f"[sticky   ] {FOLLOW_UP!r} routes to {alone.label} on its own; in the coding")
        echo(f"    session it stays on {result.outcome.model} (pin held: {result.outcome.sticky})\n")
        result = dispatcher.complete("What is the boiling point of water at the top of Everest?", route="demo-fallback")
        tried = " -> ".join(f"{a.model} ({a.error or 'ok'})" for a in result.outcome.attempts)
        echo(f"[fallback ] tried {tried}\n")
        try:
            dispatcher.complete("hello", model="openai/fail-primary")
        except DispatchError as exc:
            echo(f"[error    ] a clear error when nothing can answer: {exc}\n")
        summary = store.summary()
    echo("outcome log summary:")
    for key in ("requests", "route_share", "status", "error_rate", "fallback_rate", "cost_usd"):
        echo(f"  {key:<14} {summary[key]}")
    echo(f"  routing p50    {summary['routing_ms_p50']:.1f} ms, end to end p50 {summary['latency_ms_p50']:.0f} ms")
    echo("\nstub requests by provider path: " + ", ".join(sorted(set(stub.requests))))
