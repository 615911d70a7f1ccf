"""End-to-end demo of the original three-specialist example against a local stub LLM server.

Starts the stub on 127.0.0.1 (it speaks the OpenAI, Anthropic and Gemini wire formats), points the route table's
models at it (default: examples/seed_agents.toml: Claude for code with "You are an expert engineer. Write bugs?
You are fired.", Gemini for creative work with "You are a creative writer. Be weird.", GPT for facts and
reasoning, the mini model for simple work), and sends prompts through the trained router and the dispatcher. For
each it prints the route, the model, and the instructions that model received (as the stub recorded them); then
a follow-up turn that stays on its conversation's pinned model, a fallback, and the outcome-log summary.

    python scripts/demo_dispatch.py [--model artifacts/router] [--routes examples/seed_agents.toml] [--db FILE]

No traffic leaves this machine: every model's api_base is the loopback stub.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", type=Path, default=Path("artifacts/router"), help="router artifact (trained if missing)"
    )
    parser.add_argument("--routes", type=Path, default=None, help="route table (default: examples/seed_agents.toml)")
    parser.add_argument("--db", type=Path, default=None, help="outcome store (default: a temporary file)")
    args = parser.parse_args()

    from router_ml import artifact
    from router_ml.data import load_bundled
    from router_ml.testing.demo import run_dispatch_demo
    from router_ml.training import TrainConfig, train

    if not (artifact.resolve(args.model) / artifact.MANIFEST).is_file():
        print(f"no router at {args.model}: training one on the bundled data first")
        data = load_bundled("train")
        result = train(data, TrainConfig(c_grid=(16.0,), tfidf=(True,)))
        artifact.save(result.model, args.model, threshold=result.threshold, data=data, metrics=result.metrics)
    run_dispatch_demo(args.model, args.db or Path(tempfile.mkdtemp()) / "outcomes.db", args.routes)


if __name__ == "__main__":
    main()
