"""Artifact load time and size: the old pickled head against the data-only format, measured in the same run.

Each load runs in a fresh Python process (imports done before the clock starts, so both sides pay the same
import cost outside the measurement), several times; the median is reported. What is timed is everything loading
does except building the embedder, which is the same for both formats:

- old (schema 1): read ``manifest.json``, ``joblib.load("head.joblib")`` (unpickle the fitted estimator);
- new (schema 2): read and check ``manifest.json``, check the directory and every listed file's size and
  SHA-256, decode and check ``head.json`` + ``head.safetensors``, rebuild the fitted head.

The old artifact is written by this script from the new one's head, with joblib, as router-ml used to save it.

Usage::

    python scripts/artifact_bench.py                       # trains a router on 1,000 bundled prompts first
    python scripts/artifact_bench.py --model artifacts/router --runs 7
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_OLD = """
import json, sys, time
from pathlib import Path
import joblib
import router_ml.artifact
path = Path(sys.argv[1])
started = time.perf_counter()
manifest = json.loads((path / "manifest.json").read_text())
head = joblib.load(path / "head.joblib")
assert head.classes_.tolist() == manifest["labels"]
print(time.perf_counter() - started)
"""

_NEW = """
import sys, time
from pathlib import Path
import router_ml.artifact
from router_ml.artifact.head_format import decode_head
from router_ml.artifact.integrity import check_files
from router_ml.artifact.manifest import read_manifest
path = Path(sys.argv[1])
started = time.perf_counter()
manifest = read_manifest(path)
checked = check_files(path, manifest["files"], keep=("head.json", "head.safetensors"))
head = decode_head(checked["head.json"], checked["head.safetensors"])
assert head.classes_.tolist() == manifest["labels"]
print(time.perf_counter() - started)
"""


def _train(folder: Path, size: int) -> Path:
    """A router trained on ``size`` prompts spread over the bundled training split, saved in ``folder``."""
    from router_ml import artifact
    from router_ml.data import load_bundled
    from router_ml.route_table import bundled_routes_path
    from router_ml.training import TrainConfig, train

    data = load_bundled("train")
    step = max(1, len(data) // size)
    subset = data.subset(list(range(0, len(data), step))[:size])
    print(f"training a router on {len(subset)} prompts (one-off, for the benchmark)...", file=sys.stderr)
    result = train(subset, TrainConfig(c_grid=(8.0,), tfidf=(True,), cv_folds=3))
    path = folder / "new"
    artifact.save(result.model, path, threshold=result.threshold, data=subset, routes_file=bundled_routes_path())
    return path


def _write_old(new: Path, folder: Path) -> Path:
    """The same router as a schema 1 artifact: the head pickled with joblib, as router-ml used to save it."""
    import joblib

    from router_ml import artifact

    loaded = artifact.load(new, embedder=_Stub(new))
    old = folder / "old"
    old.mkdir()
    joblib.dump(loaded.model.head_, old / "head.joblib")
    if (new / "routes.toml").is_file():
        shutil.copyfile(new / "routes.toml", old / "routes.toml")
    manifest = dict(loaded.manifest)
    manifest.pop("files")
    manifest |= {"schema_version": 1, "head": {"class": "EmbeddingClassifier", "file": "head.joblib"}}
    (old / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return old


class _Stub:
    """An embedder that only answers the manifest's checks (the benchmark never embeds)."""

    backend = "torch"

    def __init__(self, path: Path) -> None:
        saved = json.loads((path / "manifest.json").read_text())["embedder"]
        self.name, self.dim, self.fingerprint = saved["name"], saved["dim"], saved["fingerprint"]


def _time(code: str, path: Path, runs: int) -> float:
    """Median seconds of ``code`` on ``path`` over ``runs`` fresh processes."""
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def _size(path: Path, names: list[str]) -> int:
    return sum((path / name).stat().st_size for name in names)


def main(argv: list[str] | None = None) -> None:
    """Print load time and size of the old and new head formats, and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a data-only artifact (default: train one on --train-size)")
    parser.add_argument("--train-size", type=int, default=1000, help="prompts to train on without --model")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per format (median reported)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="artifact-bench-") as tmp:
        folder = Path(tmp)
        new = args.model if args.model is not None else _train(folder, args.train_size)
        old = _write_old(new, folder)
        old_s, new_s = _time(_OLD, old, args.runs), _time(_NEW, new, args.runs)
        old_b = _size(old, ["head.joblib"])
        new_b = _size(new, ["head.json", "head.safetensors"])
        vocabulary = sum(len(v["vocabulary"]) for v in json.loads((new / "head.json").read_bytes())["vectorizers"])
    print(f"head of {new}: {vocabulary:,} TF-IDF terms; median of {args.runs} fresh processes each")
    print(f"{'format':<34}{'load ms':>10}{'bytes':>14}")
    print(f"{'old: head.joblib (pickle)':<34}{old_s * 1000:>10.1f}{old_b:>14,}")
    print(f"{'new: head.json + head.safetensors':<34}{new_s * 1000:>10.1f}{new_b:>14,}")
    print(f"new / old: load time {new_s / old_s:.2f}x, size {new_b / old_b:.2f}x")


if __name__ == "__main__":
    main()
