"""``router-ml explain``: why the router sends a prompt where it does (see :meth:`router_ml.router.Router.explain`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .group import cli
from .options import backend_option, model_option, routes_option

if TYPE_CHECKING:
    from ..router import Explanation

__all__ = ["explain", "format_explanation"]

_SHOWN_CHARS = 90


def _one_line(text: str, width: int = _SHOWN_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _prompt(text: str) -> str | list[Any]:
    """A messages list when ``text`` is a JSON list, else ``text`` itself."""
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return text
        if isinstance(value, list):
            return value
    return text


def format_explanation(explanation: Explanation) -> str:
    """An explanation as text: the decision and margin, the nearest training prompts, each route's top terms."""
    d = explanation.decision
    abstained = f" (abstained: {d.predicted} was below the threshold)" if d.abstained else ""
    lines = [
        f"route {d.label} → {d.model}, confidence {d.confidence:.3f}, margin {explanation.margin:.3f}{abstained}",
    ]
    if d.probabilities:  # none without a category head
        ranked_labels = sorted(d.probabilities.items(), key=lambda x: -x[1])
        lines.append("probabilities: " + ", ".join(f"{r} {p:.3f}" for r, p in ranked_labels))
    if d.success is not None:  # a quality route: each candidate's predicted success, the pick's expected cost
        ranked = sorted(d.success.items(), key=lambda x: -x[1])
        lines.append("predicted success: " + ", ".join(f"{m} {p:.3f}" for m, p in ranked))
        lines.append(f"expected cost ${d.expected_cost or 0:.6f}; fallbacks: {', '.join(d.fallbacks) or 'none'}")
    if explanation.nearest:
        lines += ["", "nearest training prompts:", f"  {'similarity':>10}  {'label':<10}  prompt"]
        lines += [f"  {n.similarity:>10.3f}  {n.label:<10}  {_one_line(n.text)}" for n in explanation.nearest]
    if explanation.terms:
        lines += ["", "route scores (score = embedding + n-grams + intercept):"]
    for route, s in explanation.terms.items():
        lines.append(
            f"  {route:<10} {s.score:+7.2f} = embedding {s.embedding:+.2f} + n-grams {s.ngrams:+.2f} "
            f"+ intercept {s.intercept:+.2f}"
        )
        if s.terms:
            lines.append("             top terms: " + ", ".join(f"{t.term} {t.contribution:+.2f}" for t in s.terms))
    lines += [f"\nnote: {note}" for note in explanation.notes]
    return "\n".join(lines)


@cli.command()
@click.argument("prompt")
@model_option("Trained router artifact directory.")
@routes_option()
@click.option("--k", "k", type=click.IntRange(0, 100), default=5, show_default=True, help="Nearest training prompts.")
@click.option(
    "--terms", "top_terms", type=click.IntRange(0, 100), default=5, show_default=True, help="Top terms per route."
)
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as one JSON object.")
@backend_option()
def explain(
    prompt: str, model_dir: Path, routes: Path | None, k: int, top_terms: int, as_json: bool, backend: str | None
) -> None:
    """Explain where PROMPT goes and why: the decision and its margin over the runner-up, the nearest training
    prompts kept in the artifact (with their similarity and label), and the words that added most to each route's
    score, next to the embedding's share.

    A PROMPT that is a JSON list is read as an OpenAI-style messages list.
    """
    from ..router import Router

    router = Router.load(model_dir, routes, backend=backend)
    explanation = router.explain(_prompt(prompt), k=k, top_terms=top_terms)
    if as_json:
        click.echo(json.dumps(explanation.to_dict(), ensure_ascii=False))
    else:
        click.echo(format_explanation(explanation))
