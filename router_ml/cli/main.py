"""``router-ml`` command line: thin commands that parse arguments, call the public API and print."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from ..exceptions import RouterMLError

__all__ = ["cli"]

EXAMPLE_PROMPTS = [
    "Write a Python function that merges two sorted lists in linear time.",
    "Compose a short poem about autumn leaves falling on a quiet lake.",
    "A train leaves at 3pm going 60 mph; another leaves at 4pm going 80 mph. When does the second catch up?",
    "Classify the sentiment of this review as positive or negative: 'The battery died after two days.'",
]


class _Group(click.Group):
    """Turns router-ml errors into one clear line and exit code 2, instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RouterMLError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


def _backend_option(func: Any) -> Any:
    from ..embed import EMBEDDERS

    return click.option(
        "--backend",
        type=click.Choice(EMBEDDERS),
        default=None,
        help="Embedder backend (default: the one the router was trained with; onnx-int8 needs `router-ml backends`).",
    )(func)


def _data_options(func: Any) -> Any:
    func = click.option("--text-column", default="text", show_default=True, help="Column holding the prompt.")(func)
    func = click.option("--label-column", default="label", show_default=True, help="Column holding the label.")(func)
    return func


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="router-ml")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def cli(verbose: bool) -> None:
    """router-ml: route each LLM request to the right specialist model with a local, trained classifier.

    Typical flow: `router-ml train --out router/`, `router-ml eval router/`, `router-ml route --model router/ "..."`.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path), help="Artifact directory to write."
)
@click.option(
    "--routes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Route table TOML to save with the router (default: bundled data/routes.toml).",
)
@click.option(
    "--embedder", default=None, help="sentence-transformers model name or path (default: bundled all-MiniLM-L6-v2)."
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Abstain below this confidence (default: chosen for --target-precision).",
)
@click.option(
    "--target-precision",
    type=float,
    default=0.9,
    show_default=True,
    help="Out-of-fold precision the answered decisions must reach when choosing the threshold.",
)
@click.option(
    "--calibration",
    type=click.Choice(["temperature", "sigmoid", "isotonic", "none"]),
    default="temperature",
    show_default=True,
)
@click.option("--min-per-label", type=int, default=10, show_default=True, help="Refuse labels with fewer examples.")
@click.option("--overwrite", is_flag=True, help="Replace an existing artifact directory.")
@_data_options
def train(
    files: tuple[Path, ...],
    out: Path,
    routes: Path | None,
    embedder: str | None,
    threshold: float | None,
    target_precision: float,
    calibration: str,
    min_per_label: int,
    overwrite: bool,
    text_column: str,
    label_column: str,
) -> None:
    """Train a router on labelled prompts and save it as an artifact directory.

    FILES are JSONL or CSV files with a text and a label column. With no FILES, trains on the bundled dataset's
    training split (the held-out split is kept for `router-ml eval`).
    """
    from .. import artifact
    from ..data import load_bundled, load_files
    from ..embed import DEFAULT_MODEL
    from ..routes import bundled_routes_path, load_routes
    from ..training import TrainConfig
    from ..training import train as fit

    data = load_files(files, text_column=text_column, label_column=label_column) if files else load_bundled("train")
    routes_file = routes or bundled_routes_path()
    load_routes(routes_file).check_labels(data.classes)
    config = TrainConfig(
        embedder=embedder or DEFAULT_MODEL,
        threshold=threshold,
        target_precision=target_precision,
        calibration=calibration,
        min_per_label=min_per_label,
    )
    click.echo(
        f"training on {len(data)} prompts {data.counts()}"
        + (f", {len(data.duplicates)} exact duplicates" if data.duplicates else "")
    )
    result = fit(data, config)
    artifact.save(
        result.model,
        out,
        threshold=result.threshold,
        data=data,
        metrics=result.metrics,
        routes_file=routes_file,
        overwrite=overwrite,
    )
    m = result.metrics
    click.echo(
        f"chosen {m['best_params']}: "
        f"cross-validated macro-F1 {m['cv_macro_f1']:.3f}, ECE {m['oof_ece']:.3f}, threshold {result.threshold:.2f}"
    )
    click.echo(f"trained in {m['train_seconds']:.1f}s (embedding {m['embed_seconds']:.1f}s); saved to {out}")


@cli.command(name="eval")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--data",
    "data_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Labelled JSONL/CSV to evaluate on (repeatable; default: the bundled held-out split).",
)
@click.option(
    "--routes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Route table for prices and the default route (default: the artifact's).",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write report.json and the PNG plots (default: MODEL_DIR/eval).",
)
@click.option(
    "--baselines/--no-baselines",
    default=True,
    show_default=True,
    help="Score nearest-centroid, kNN, top-k vote and TF-IDF baselines (fitted on the bundled training split).",
)
@click.option(
    "--cv",
    "cv_folds",
    type=int,
    default=0,
    help="Also compare router vs baselines by K-fold cross-validation on the evaluation data itself.",
)
@_backend_option
@_data_options
def eval_command(
    model_dir: Path,
    data_files: tuple[Path, ...],
    routes: Path | None,
    report_dir: Path | None,
    baselines: bool,
    cv_folds: int,
    backend: str | None,
    text_column: str,
    label_column: str,
) -> None:
    """Evaluate a trained router: accuracy, macro-F1, per-class scores, confusion matrix, calibration, cost.

    Writes report.json, confusion_matrix.png and reliability.png to --report-dir.
    """
    from ..data import load_bundled, load_files
    from ..embed import embed_texts
    from ..evaluation import cross_validate_methods, evaluate
    from ..plots import write_plots
    from ..route import Router

    router = Router.load(model_dir, routes, backend=backend)
    model = router.artifact.model
    if data_files:
        data = load_files(data_files, text_column=text_column, label_column=label_column)
        name = ", ".join(str(f) for f in data_files)
    else:
        data, name = load_bundled("heldout"), "bundled held-out split"
    assert model.embedder is not None
    X = embed_texts(model.embedder, data.texts)
    train_data = load_bundled("train") if baselines else None
    report = evaluate(
        model,
        data,
        router.routes,
        threshold=router.threshold,
        default_route=router.default_route,
        dataset=name,
        train=train_data,
        train_embeddings=None if train_data is None else embed_texts(model.embedder, train_data.texts),
        embeddings=X,
    )
    click.echo(report.format())
    out = report_dir or model_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    payload = report.to_dict()
    if cv_folds:
        cv = cross_validate_methods(data.texts, data.labels, X, model.head_, folds=cv_folds)
        payload["cross_validation"] = {"folds": cv_folds, "methods": cv}
        click.echo(f"\n{cv_folds}-fold cross-validation on {name} (macro-F1 mean ± std):")
        for method, s in cv.items():
            click.echo(f"  {method:<22}{s['macro_f1_mean']:.3f} ± {s['macro_f1_std']:.3f}")
    (out / "report.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plots = write_plots(report.report, report.calibration, out)
    click.echo(f"\nwrote {out / 'report.json'}, " + ", ".join(str(p) for p in plots))


@cli.command()
@click.argument("prompts", nargs=-1)
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Trained router artifact directory.",
)
@click.option(
    "--routes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Route table TOML (default: the artifact's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON decision per line.")
@click.option("--threshold", type=float, default=None, help="Override the artifact's abstention threshold.")
@_backend_option
def route(
    prompts: tuple[str, ...],
    model_dir: Path,
    routes: Path | None,
    as_json: bool,
    threshold: float | None,
    backend: str | None,
) -> None:
    """Route PROMPTS (or, with none given, each non-empty line of standard input) to a model.

    A line of stdin that is a JSON list is read as an OpenAI-style messages list.
    """
    from ..route import Router

    router = Router.load(model_dir, routes, threshold=threshold, backend=backend)
    items: list[Any] = list(prompts)
    if not items:
        for line in sys.stdin:
            if line.strip():
                stripped = line.strip()
                items.append(json.loads(stripped) if stripped.startswith("[") else stripped)
    if not items:
        raise click.UsageError("no prompts: pass them as arguments or one per line on standard input")
    for item, decision in zip(items, router.route_batch(items), strict=True):
        if as_json:
            click.echo(json.dumps(decision.to_dict(), ensure_ascii=False))
        else:
            shown = item if isinstance(item, str) else json.dumps(item)[:60]
            flag = " (abstained)" if decision.abstained else ""
            click.echo(f"{decision.label:<10} {decision.confidence:.2f}{flag}  {decision.model:<32} {shown[:70]}")


@cli.command()
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("artifacts/router"),
    show_default=True,
    help="Artifact directory.",
)
@click.option(
    "--dev",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("../shared/eval/dev.jsonl"),
    show_default=True,
    help="Extra labelled file to evaluate on when it exists.",
)
@click.pass_context
def demo(ctx: click.Context, out: Path, dev: Path) -> None:
    """The main job: train on the bundled data, evaluate (held-out split, and DEV if present), route examples."""
    ctx.invoke(
        train,
        files=(),
        out=out,
        routes=None,
        embedder=None,
        threshold=None,
        target_precision=0.9,
        calibration="temperature",
        min_per_label=10,
        overwrite=True,
        text_column="text",
        label_column="label",
    )
    click.echo("")
    ctx.invoke(
        eval_command,
        model_dir=out,
        data_files=(),
        routes=None,
        report_dir=None,
        baselines=True,
        cv_folds=0,
        backend=None,
        text_column="text",
        label_column="label",
    )
    if dev.is_file():
        click.echo("")
        ctx.invoke(
            eval_command,
            model_dir=out,
            data_files=(dev,),
            routes=None,
            report_dir=out / "eval-dev",
            baselines=True,
            cv_folds=5,
            backend=None,
            text_column="text",
            label_column="label",
        )
    from .serving import backends

    click.echo("\nfaster embedder backends, measured against torch on the same data:")
    ctx.invoke(backends, model_dir=out, data_files=(), backends=())
    if dev.is_file():
        ctx.invoke(backends, model_dir=out, data_files=(dev,), backends=())
    click.echo("\nexample routing decisions:")
    ctx.invoke(
        route,
        prompts=tuple(EXAMPLE_PROMPTS),
        model_dir=out,
        routes=None,
        as_json=False,
        threshold=None,
        backend=None,
    )
