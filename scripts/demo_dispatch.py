"""End-to-end demo of the seed's three-specialist example against a local stub LLM server.

Starts the stub on 127.0.0.1 (it speaks the OpenAI, Anthropic and Gemini wire formats), points the bundled route
table's models at it, and sends prompts through the trained router and the dispatcher: the coding prompt lands on
the Claude route, the poem on the Gemini route, the fact question on the GPT route. One more request is sent to a
route whose primary model is down, to show a fallback. Prints the outcome-log summary at the end.

    python scripts/demo_dispatch.py [--model artifacts/router] [--db /tmp/router-demo.db]

No traffic leaves this machine: every model's api_base is the loopback stub.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

PROMPTS = [
    ("code", "Write a Python function that returns the n-th Fibonacci number iteratively."),
    ("creative", "Write a short poem about the first snow falling on a quiet city."),
    ("reasoning", "Why does the Moon always show the same face to the Earth?"),
    ("simple", "Translate into French: 'The train leaves at nine tomorrow morning.'"),
]


def stub_routes(table, stub):  # type: ignore[no-untyped-def]
    """The bundled route table served by the stub, plus a route whose primary is down, to show a fallback."""
    from router_ml.routes import RouteTable
    from router_ml.testing.stub import stub_route_table

    data = stub_route_table(table, stub, "ROUTER_ML_DEMO_KEY").to_dict()
    data["routes"]["demo-fallback"] = {"model": "openai/fail-primary", "fallbacks": [table["reasoning"].model]}
    data["models"]["openai/fail-primary"] = {"api_base": stub.base_url, "api_key_env": "ROUTER_ML_DEMO_KEY"}
    return RouteTable.from_dict(data, source="demo route table")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", type=Path, default=Path("artifacts/router"), help="router artifact (trained if missing)"
    )
    parser.add_argument("--db", type=Path, default=None, help="outcome store (default: a temporary file)")
    args = parser.parse_args()
    os.environ["ROUTER_ML_DEMO_KEY"] = "stub-key"

    from router_ml import artifact
    from router_ml.data import load_bundled
    from router_ml.exceptions import DispatchError
    from router_ml.online.dispatch import Dispatcher
    from router_ml.online.store import OutcomeStore
    from router_ml.route import Router
    from router_ml.routes import load_routes
    from router_ml.testing.stub import StubLLMServer
    from router_ml.training import TrainConfig, train

    if not (artifact.resolve(args.model) / artifact.MANIFEST).is_file():
        print(f"no router at {args.model}: training one on the bundled data first")
        data = load_bundled("train")
        result = train(data, TrainConfig(c_grid=(16.0,), tfidf=(True,)))
        artifact.save(result.model, args.model, threshold=result.threshold, data=data, metrics=result.metrics)

    db = args.db or Path(tempfile.mkdtemp()) / "outcomes.db"
    with StubLLMServer() as stub, OutcomeStore(db) as store:
        table = stub_routes(load_routes(), stub)
        router = Router.load(args.model, table)
        dispatcher = Dispatcher(router, table, store)
        print(f"stub LLM server on {stub.root_url}; outcome log {db}\n")
        for expected, prompt in PROMPTS:
            result = dispatcher.complete(prompt, max_tokens=200)
            o = result.outcome
            mark = "ok" if o.label == expected else f"expected {expected}"
            print(f"[{o.label:<9}] {o.model:<30} conf {o.confidence:.2f} ({mark})")
            print(f"    prompt: {prompt}")
            print(f"    answer: {result.response.choices[0].message.content}\n")
        result = dispatcher.complete("What is the boiling point of water at the top of Everest?", route="demo-fallback")
        tried = " -> ".join(f"{a.model} ({a.error or 'ok'})" for a in result.outcome.attempts)
        print(f"[fallback ] tried {tried}\n")
        try:
            dispatcher.complete("hello", model="openai/fail-primary")
        except DispatchError as exc:
            print(f"[error    ] a clear error when nothing can answer: {exc}\n")
        summary = store.summary()
    print("outcome log summary:")
    for key in ("requests", "route_share", "status", "error_rate", "fallback_rate", "cost_usd"):
        print(f"  {key:<14} {summary[key]}")
    print(f"  routing p50    {summary['routing_ms_p50']:.1f} ms, end to end p50 {summary['latency_ms_p50']:.0f} ms")
    print("\nstub requests by provider path:", ", ".join(sorted(set(stub.requests))))


if __name__ == "__main__":
    main()
