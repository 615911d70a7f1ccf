"""Feedback → export → retrain → promote or refuse, end to end on small data."""

from __future__ import annotations

import json

import pytest

from router_ml import artifact
from router_ml.data import load_bundled, load_file
from router_ml.online.dispatch import Dispatcher
from router_ml.online.drift import drift_report
from router_ml.online.retrain import retrain
from router_ml.online.store import OutcomeStore
from router_ml.router import Router
from router_ml.training import TrainConfig

CONFIG = TrainConfig(c_grid=(4.0,), tfidf=(True,), cv_folds=3)


@pytest.fixture(scope="module")
def pools(small_data):
    """Bundled training prompts not in the small set (feedback material) and a held-out sample (evaluation)."""
    train = load_bundled("train")
    used = set(small_data.texts)
    extra = train.subset([i for i, t in enumerate(train.texts) if t not in used][::12][:240])
    heldout = load_bundled("heldout").subset(range(0, 1400, 7))
    return extra, heldout


def _feedback_file(tmp_path, router, prompts, labels):
    """Log prompts through the dispatcher (decision only), attach corrected labels, export."""
    with OutcomeStore(tmp_path / "o.db") as store:
        dispatcher = Dispatcher(router, store=store)
        ids = [dispatcher.complete(p, decision_only=True).request_id for p in prompts]
        for request_id, label in zip(ids, labels, strict=True):
            store.add_feedback(request_id, label=label)
        counts = store.export(tmp_path / "feedback.jsonl", include=["corrected"])
    assert counts["corrected"] == len(prompts)
    return load_file(tmp_path / "feedback.jsonl")


@pytest.mark.slow
def test_good_feedback_is_promoted(small_artifact, small_data, pools, embedder, tmp_path):
    extra, heldout = pools
    models = tmp_path / "models"
    router = Router.load(small_artifact, embedder=embedder)
    feedback = _feedback_file(tmp_path, router, extra.texts, extra.labels)
    report = retrain(small_artifact, small_data, heldout, feedback=feedback, models_dir=models, config=CONFIG,
                     tolerance=0.02)  # fmt: skip
    assert report.training["base"] == len(small_data) and report.training["feedback"] == len(extra)
    assert report.evaluation["size"] == len(heldout)
    assert report.challenger_score >= report.champion_score - 0.02
    assert report.promoted and report.challenger == str(models / "router-v001")
    assert (models / "CURRENT").read_text().strip() == "router-v001"
    assert (small_artifact / "manifest.json").is_file()  # the old version is kept
    promoted = artifact.load(models, embedder=embedder)  # follows CURRENT
    assert promoted.manifest["training_data"]["size"] == len(small_data) + len(extra)
    saved = json.loads((models / "router-v001" / "retrain-report.json").read_text())
    assert saved["promoted"] and saved["metric"] == "macro_f1"
    assert "PROMOTED" in report.format() and "champion" in report.format()
    d = report.difference
    assert d["n"] == len(heldout) and d["low"] <= d["delta"] <= d["high"]
    assert d["delta"] == pytest.approx(report.challenger_score - report.champion_score, abs=1e-3)
    assert "paired bootstrap 95% interval" in report.format() and saved["difference"] == d


@pytest.mark.slow
def test_bad_feedback_is_refused(small_artifact, small_data, pools, embedder, tmp_path):
    extra, heldout = pools
    models = tmp_path / "models"
    router = Router.load(small_artifact, embedder=embedder)
    feedback = _feedback_file(tmp_path, router, extra.texts, ["creative"] * len(extra))  # all wrong
    report = retrain(small_artifact, small_data, heldout, feedback=feedback, models_dir=models, config=CONFIG)
    assert not report.promoted and report.challenger is None
    assert report.challenger_score < report.champion_score
    assert "below champion" in report.reason and "NOT promoted" in report.format()
    assert report.difference["high"] < 0
    assert ": worse" in report.format()  # all-wrong feedback: the whole interval is below zero
    assert not models.exists()


def test_evaluation_prompts_never_train_the_challenger_and_dry_run_writes_nothing(
    small_artifact, small_data, pools, tmp_path
):
    _, heldout = pools
    leaked = small_data + heldout.subset(range(10))
    models = tmp_path / "models"
    report = retrain(small_artifact, leaked, heldout, models_dir=models, config=CONFIG, dry_run=True)
    assert report.training["dropped_eval_overlap"] == 10 and report.training["size"] == len(small_data)
    assert report.dry_run and not report.promoted and not models.exists()


def test_drift_report_flags_shift_and_uncertain_prompts(small_artifact, small_data, pools, embedder, tmp_path):
    _, heldout = pools
    router = Router.load(small_artifact, embedder=embedder)
    # Pretend the router was trained on code prompts only: then non-code traffic is out of distribution.
    code_train = small_data.subset([i for i, label in enumerate(small_data.labels) if label == "code"])
    code_reference = heldout.subset([i for i, label in enumerate(heldout.labels) if label == "code"])
    recent_prompts = [
        "Write a Python function that parses ISO dates.",
        "Fix this SQL: SELECT name FROM users WHERE id = = 3",
        "Write a bash script that renames every .txt file to .md",
        "How do I sort a dict by value in Python?",
        "Write a JavaScript function that debounces another function.",
        "Compose a sonnet about my grandmother's kitchen.",
        "Bonjour, pouvez-vous m'aider avec ma déclaration d'impôts ?",
        "What were the main causes of the First World War?",
        "Plan a three-day hiking trip in the Dolomites.",
        "Tell me a joke about penguins.",
    ]
    with OutcomeStore(tmp_path / "o.db") as store:
        dispatcher = Dispatcher(router, store=store)
        for prompt in recent_prompts:
            dispatcher.complete(prompt, decision_only=True)
        dispatcher.complete("Write a limerick.", route="creative", decision_only=True)  # forced: not the router's
        recent = store.outcomes()
    report = drift_report(router, recent, code_train, code_reference, label_next=3)
    assert report["recent_requests"] == 10
    assert report["route_share"]["training"]["code"] == 1.0
    assert report["route_share"]["recent"]["code"] == pytest.approx(0.5, abs=0.11)
    assert report["route_share_distance"] == pytest.approx(1 - report["route_share"]["recent"]["code"], abs=1e-3)
    assert 0.1 <= report["nearest_training_similarity"]["out_of_distribution_share"] <= 0.5
    assert len(report["label_next"]) == 3
    report = drift_report(router, recent, code_train, code_reference, label_next=5)
    farthest = [item["text"] for item in report["farthest_from_training"]]
    assert farthest[0] in recent_prompts[5:] and len(set(farthest) & set(recent_prompts[5:])) >= 4  # mostly non-code
    margins = [item["margin"] for item in report["label_next"]]
    assert margins == sorted(margins)
