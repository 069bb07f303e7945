"""Test-set evaluation: bootstrap CIs, per-class tables, seed aggregates (medflow.stats),
figures (medflow.plots) and prediction CSVs."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from medflow.plots.classification import confusion_figure, reliability_figure, roc_figure
from medflow.stats.bootstrap import bootstrap_metrics
from medflow.stats.counted import plain_metrics, resampled_metrics
from medflow.stats.intervals import aggregate_over_seeds, paired_difference
from medflow.stats.metrics import compute_metrics
from medflow.stats.predictions import save_predictions
from medflow.stats.summary import per_class_metrics, summarize_modes

METRICS = {"accuracy", "balanced_accuracy", "auc", "f1"}


def binary_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable-ish: positives score higher on average, with overlap."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1).round(2)  # rounding makes ties


def multiclass_data(n: int, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    logits = rng.normal(size=(n, k)).round(1)
    logits[np.arange(n), y] += 1.0
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def multilabel_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < [0.5, 0.2, 0.05]).astype(int)  # a rare label
    return y, np.clip(0.3 * y + 0.7 * rng.random((n, 3)), 0, 1).round(2)


def regression_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    return y, y + 0.5 * rng.normal(size=n)


DATA = {
    "binary": binary_data,
    "multiclass": multiclass_data,
    "multilabel": multilabel_data,
    "regression": regression_data,
}


# --------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("task", list(DATA))
@pytest.mark.parametrize("n", [4, 40])
def test_vectorised_resamples_equal_compute_metrics(task: str, n: int) -> None:
    """The fast path must reproduce compute_metrics on each resample, edge cases included."""
    y, scores = DATA[task](n, seed=n)
    rng = np.random.default_rng(n)
    draws = rng.integers(0, n, size=(25, n))
    weights = np.stack([np.bincount(d, minlength=n) for d in draws]).astype(float)
    fast = resampled_metrics(task, y, scores, weights)
    for b, idx in enumerate(draws):
        if task == "regression" and np.ptp(y[idx]) == 0:
            continue  # sklearn's r2 on constant y depends on float noise; ours is 0 or 1
        for name, expected in compute_metrics(task, y[idx], scores[idx]).items():
            got = fast[name][b]
            if math.isnan(expected):
                assert math.isnan(got), (name, b)
            else:
                assert got == pytest.approx(expected, abs=1e-9), (name, b)


@pytest.mark.parametrize("task", list(DATA))
def test_plain_metrics_the_training_loop_logs_equal_scikit_learns(task: str) -> None:
    for n, seed in ((40, 0), (300, 1), (5, 2)):
        y, scores = DATA[task](n, seed=seed)
        expected = compute_metrics(task, y, scores)
        got = plain_metrics(task, y, scores)
        assert set(got) == set(expected)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-12, nan_ok=True), (task, n, name)


def test_ci_contains_point_estimate_and_narrows_with_more_data() -> None:
    small = bootstrap_metrics("binary", *binary_data(100), n_boot=500)
    large = bootstrap_metrics("binary", *binary_data(2000), n_boot=500)
    assert set(small) == METRICS
    for result in (small, large):
        for stats in result.values():
            assert stats["ci_low"] <= stats["value"] <= stats["ci_high"]
            assert stats["n_skipped"] == 0
    for name in METRICS:
        small_width = small[name]["ci_high"] - small[name]["ci_low"]
        large_width = large[name]["ci_high"] - large[name]["ci_low"]
        assert large_width < 0.5 * small_width, name  # ~ 1/sqrt(20) expected


def test_bootstrap_is_deterministic_per_seed() -> None:
    y, scores = binary_data(200)
    first = bootstrap_metrics("binary", y, scores, n_boot=300, seed=7)
    assert bootstrap_metrics("binary", y, scores, n_boot=300, seed=7) == first
    other = bootstrap_metrics("binary", y, scores, n_boot=300, seed=8)
    assert other != first
    assert other["auc"]["value"] == first["auc"]["value"]  # only the CI depends on the seed


def test_perfect_classifier_has_degenerate_ci() -> None:
    y = np.arange(200) % 2
    result = bootstrap_metrics("binary", y, np.where(y == 1, 0.9, 0.1), n_boot=200)
    for name in METRICS:
        assert (result[name]["ci_low"], result[name]["value"], result[name]["ci_high"]) == (
            1.0,
            1.0,
            1.0,
        )


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "regression"])
def test_other_tasks_give_ordered_finite_intervals(task: str) -> None:
    y, scores = DATA[task](300)
    result = bootstrap_metrics(task, y, scores, n_boot=200)
    assert set(result) == set(compute_metrics(task, y, scores))
    for stats in result.values():
        assert all(math.isfinite(stats[k]) for k in ("value", "ci_low", "ci_high"))
        assert stats["ci_low"] <= stats["value"] <= stats["ci_high"]


def test_auc_undefined_resamples_are_skipped_not_zero() -> None:
    # One positive among 20: about (19/20)^20 = 36% of resamples miss it and have no AUC.
    y = np.zeros(20, dtype=int)
    y[3] = 1
    scores = np.linspace(0.0, 0.4, 20)
    scores[3] = 0.95  # ranked first: AUC is 1 whenever it is defined
    result = bootstrap_metrics("binary", y, scores, n_boot=1000)
    assert 250 < result["auc"]["n_skipped"] < 470
    assert result["auc"]["ci_low"] == 1.0  # counting skipped resamples as 0 would give 0 here
    assert result["accuracy"]["n_skipped"] == 0


def test_undefined_point_estimate_gives_nan_interval() -> None:
    y = np.ones(30, dtype=int)  # one class only: AUC undefined on the full set
    result = bootstrap_metrics("binary", y, np.linspace(0, 1, 30), n_boot=50)
    assert math.isnan(result["auc"]["value"]) and math.isnan(result["auc"]["ci_low"])
    assert result["auc"]["n_skipped"] == 50
    assert math.isfinite(result["accuracy"]["ci_low"])


def test_bootstrap_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="as many scores"):
        bootstrap_metrics("binary", np.zeros(5, dtype=int), np.zeros(4))
    with pytest.raises(ValueError, match="labels must lie"):
        bootstrap_metrics("multiclass", np.array([0, 3]), np.full((2, 3), 1 / 3))


# --------------------------------------------------------------------------- per class


def test_per_class_metrics_multiclass_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    scores = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.8 + 0.2 / 3  # preds 0,1,1,1,2,0
    rows = per_class_metrics("multiclass", y, scores, ["a", "b", "c"])
    assert [r["class"] for r in rows] == ["a", "b", "c"]
    assert [r["support"] for r in rows] == [2, 2, 2]
    assert rows[0]["precision"] == pytest.approx(0.5) and rows[0]["recall"] == pytest.approx(0.5)
    assert rows[1]["precision"] == pytest.approx(2 / 3) and rows[1]["recall"] == 1.0
    assert rows[2]["precision"] == 1.0 and rows[2]["f1"] == pytest.approx(2 / 3)
    assert all(0 <= r["auc"] <= 1 for r in rows)


def test_per_class_metrics_multilabel_has_per_label_auc() -> None:
    y, scores = multilabel_data(200)
    y[:, 2] = 0  # a label never present: AUC undefined
    rows = per_class_metrics("multilabel", y, scores, ["x", "y", "z"])
    assert [r["support"] for r in rows] == y.sum(axis=0).tolist()
    assert rows[0]["auc"] > 0.7 and math.isnan(rows[2]["auc"])
    with pytest.raises(ValueError, match="class names"):
        per_class_metrics("multilabel", y, scores, ["x"])


# --------------------------------------------------------------------------- over seeds


def test_aggregate_over_seeds_matches_hand_t_interval() -> None:
    result = aggregate_over_seeds([0.8, 0.85, 0.9])
    # t(0.975, df=2) = 4.302653; sd = 0.05; half width = 4.302653 * 0.05 / sqrt(3)
    assert result["n"] == 3
    assert result["mean"] == pytest.approx(0.85)
    assert result["sd"] == pytest.approx(0.05)
    assert result["ci_low"] == pytest.approx(0.725793, abs=1e-6)
    assert result["ci_high"] == pytest.approx(0.974207, abs=1e-6)


def test_aggregate_single_seed_and_nan() -> None:
    assert aggregate_over_seeds([0.7]) == {
        "mean": 0.7,
        "sd": 0.0,
        "ci_low": 0.7,
        "ci_high": 0.7,
        "n": 1,
    }
    assert aggregate_over_seeds([0.8, math.nan, 0.9])["n"] == 2
    assert math.isnan(aggregate_over_seeds([])["mean"])


def test_paired_difference_excludes_zero() -> None:
    result = paired_difference([0.9, 0.92, 0.91], [0.8, 0.83, 0.8])
    # differences 0.10, 0.09, 0.11: mean 0.1, sd 0.01, half width 4.302653 * 0.01 / sqrt(3)
    assert result["mean"] == pytest.approx(0.1)
    assert result["ci_low"] == pytest.approx(0.075159, abs=1e-6)
    assert result["ci_high"] == pytest.approx(0.124841, abs=1e-6)
    assert result["ci_low"] > 0
    assert result["unpaired_mean"] == pytest.approx(0.1)
    # pairing removes the shared seed effect: the paired interval is the narrower one
    assert result["unpaired_ci_high"] - result["unpaired_ci_low"] > (
        result["ci_high"] - result["ci_low"]
    )
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([0.9, 0.8], [0.7])


def test_summarize_modes_pairs_shared_seeds() -> None:
    per_seed = {
        "finetune": {0: {"auc": 0.9}, 1: {"auc": 0.92}, 2: {"auc": 0.91}},
        "scratch": {0: {"auc": 0.8}, 1: {"auc": 0.83}, 2: {"auc": 0.8}, 9: {"auc": 0.1}},
        "linear_probe": {0: {"auc": 0.85}},
    }
    summary = summarize_modes(per_seed)
    assert set(summary) == {"finetune", "scratch", "linear_probe", "transfer_gain"}
    assert summary["finetune"]["auc"]["mean"] == pytest.approx(0.91)
    assert summary["scratch"]["auc"]["n"] == 4
    gain = summary["transfer_gain"]["auc"]
    assert gain["n"] == 3  # seed 9 has no finetune partner
    assert gain["mean"] == pytest.approx(0.1)
    assert gain == paired_difference([0.9, 0.92, 0.91], [0.8, 0.83, 0.8])
    assert "transfer_gain" not in summarize_modes({"scratch": per_seed["scratch"]})


# --------------------------------------------------------------------------- figures


@pytest.mark.parametrize(
    ("task", "names", "n_curves"),
    [
        ("binary", ["neg", "pos"], 1),
        ("multiclass", ["a", "b", "c", "d"], 5),  # one per class + macro
        ("multilabel", ["x", "y", "z"], 4),
    ],
)
def test_roc_figure_has_curves_and_saves(tmp_path, task, names, n_curves) -> None:
    y, scores = DATA[task](200)
    fig = roc_figure(task, y, scores, names)
    (ax,) = fig.axes
    labelled = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert len(labelled) == n_curves
    assert all(len(line.get_xdata()) > 2 for line in labelled)
    assert "AUC" in ax.get_legend().get_texts()[0].get_text()
    out = tmp_path / f"roc_{task}.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confusion_figure_shows_normalised_counts(tmp_path) -> None:
    y = np.array([0, 0, 0, 1, 1, 2])
    scores = np.eye(3)[[0, 0, 1, 1, 1, 2]]
    fig = confusion_figure("multiclass", y, scores, ["a", "b", "c"])
    image = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(image, [[2 / 3, 1 / 3, 0], [0, 1, 0], [0, 0, 1]])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "2\n67%" in texts
    fig.savefig(tmp_path / "confusion.png")
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_multilabel_confusion_has_one_matrix_per_label(tmp_path) -> None:
    y, scores = multilabel_data(100)
    fig = confusion_figure("multilabel", y, scores, ["x", "y", "z"])
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 3 and all(im.get_array().shape == (2, 2) for im in images)
    fig.savefig(tmp_path / "confusion_ml.png")


def test_binary_confusion_uses_the_operating_point() -> None:
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.35, 0.3, 0.9])
    counts = lambda fig: [t.get_text().split("\n")[0] for t in fig.axes[0].texts]  # noqa: E731
    assert counts(confusion_figure("binary", y, scores)) == ["2", "0", "1", "1"]
    at_point = confusion_figure("binary", y, scores, thresholds=[0.3])
    assert counts(at_point) == ["1", "1", "0", "2"]
    assert "operating point 0.3" in at_point.axes[0].get_title()


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_reliability_figure_draws_before_and_after(tmp_path, task) -> None:
    y, scores = DATA[task](300)
    fig = reliability_figure(task, y, scores, 10, calibrated=scores)
    top = fig.axes[0]
    labels = [line.get_label() for line in top.get_lines()]
    assert labels == ["before", "after temperature scaling", "perfect calibration"]
    assert all(0 <= v <= 1 for v in top.get_lines()[0].get_ydata())
    fig.savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 1000


# --------------------------------------------------------------------------- predictions


def test_save_predictions_round_trips_multiclass(tmp_path) -> None:
    y, scores = multiclass_data(30, k=3)
    path = save_predictions(
        tmp_path / "out" / "pred.csv",
        y,
        scores,
        index=np.arange(100, 130),
        label_names=["a", "b", "c"],
    )
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["index", "y", "score_a", "score_b", "score_c", "pred"]
    assert frame["index"].tolist() == list(range(100, 130))
    np.testing.assert_array_equal(frame["y"], y)
    np.testing.assert_array_equal(frame[["score_a", "score_b", "score_c"]].to_numpy(), scores)
    np.testing.assert_array_equal(frame["pred"], scores.argmax(axis=1))
    assert [p.name for p in path.parent.iterdir()] == ["pred.csv"]  # no temp file left


def test_save_predictions_binary_and_multilabel(tmp_path) -> None:
    y, scores = binary_data(25)
    frame = pd.read_csv(save_predictions(tmp_path / "b.csv", y, scores))
    assert list(frame.columns) == ["index", "y", "score", "pred"]
    np.testing.assert_array_equal(frame["pred"], (scores >= 0.5).astype(int))

    y, scores = multilabel_data(25)
    frame = pd.read_csv(save_predictions(tmp_path / "m.csv", y, scores))
    assert [c for c in frame.columns if c.startswith("y_")] == ["y_0", "y_1", "y_2"]
    np.testing.assert_array_equal(frame[["y_0", "y_1", "y_2"]].to_numpy(), y)
    np.testing.assert_array_equal(frame[["score_0", "score_1", "score_2"]].to_numpy(), scores)
    np.testing.assert_array_equal(frame[["pred_0", "pred_1", "pred_2"]], scores >= 0.5)


# --------------------------------------------------------------------------- the stage

BINARY_STUDY = {
    "datasets": {"cancer": {"source": "sklearn_breast_cancer"}},
    "classics": {"enabled": False},
    "studies": {
        "cancer": {
            "target": "cancer",
            "model": {"arch": "mlp", "hidden_sizes": [8]},
            "train": {"epochs": 4, "batch_size": 32, "patience": 0},
            "sweep": {"space": {"optimizers": ["adam"], "activations": ["relu"]}},
            "refine": {"modes": ["scratch"], "seeds": [0, 1]},
            "evaluate": {
                "bootstrap": 200,
                "operating_point": {"rule": "sensitivity", "target": 0.9},
                "calibration": "temperature",
            },
        }
    },
}


def test_binary_study_reports_operating_point_calibration_and_card(tmp_path) -> None:
    """A real binary study: thresholds chosen on validation, rates with intervals that carry
    test sampling, temperature scaling, the model card and the MLflow evaluate run."""
    from medflow.config.schema import validate_config
    from medflow.config.types import MedflowConfig
    from medflow.data.format import PreparedDataset
    from medflow.layout import Layout
    from medflow.ml.loop import evaluate_scores
    from medflow.ml.transfer import load_model_file
    from medflow.stages import evaluate, refine
    from medflow.stages.context import StageContext
    from medflow.stages.prepare import prepare_dataset
    from medflow.tracking.client import Tracker, find_runs

    cfg = MedflowConfig.from_validated(validate_config(BINARY_STUDY), "test")
    layout = Layout(tmp_path / "results")
    prepare_dataset(cfg.dataset("cancer"), layout.prepared("cancer"))
    layout.sweep("cancer").mkdir(parents=True)
    best = {"params": {"optimizer": "adam", "activation": "relu", "lr": 0.01}, "number": 0}
    layout.sweep_best("cancer").write_text(json.dumps(best))
    ctx = StageContext(layout=layout, tracking=cfg.tracking)
    study = cfg.study("cancer")
    refine.run(ctx, study, "scratch", (0, 1))
    doc = evaluate.run(ctx, study)

    assert json.loads(layout.evaluate_metrics("cancer").read_text())["summary"] == doc["summary"]
    scratch = doc["summary"]["scratch"]
    op = scratch["operating_point"]
    assert (op["rule"], op["target"], op["positive_class"]) == ("sensitivity", 0.9, "malignant")
    # each seed's threshold reaches the target sensitivity on its validation predictions
    dataset = PreparedDataset.open(layout.prepared("cancer"))
    val = dataset.load("val")
    model, _ = load_model_file(layout.refine_model("cancer", "scratch", 0))
    x_val = torch.from_numpy(dataset.normalise(val.x))
    val_scores = evaluate_scores(model, x_val, "binary", torch.device("cpu"))[1].numpy()
    (threshold,) = op["thresholds_by_seed"]["0"]
    assert (val_scores >= threshold)[val.y == 1].mean() >= 0.9
    for name in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "brier", "ece"):
        stats = scratch[name]
        assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"], name
    acc = scratch["accuracy"]
    assert acc["ci_high"] - acc["ci_low"] > 0.03  # ~143 test patients: never ±0.000
    assert "brier_calibrated" in scratch and doc["calibration"]["method"] == "temperature"
    assert all(r["temperature"] > 0 for r in doc["runs"])
    assert sum(map(sum, op["confusion"][0])) == doc["n_test"]
    assert op["per_class"][0]["class"] == "malignant"

    card = layout.evaluate_model_card("cancer").read_text()
    for part in ("Positive class", "**malignant**", "class_weight = none", "sampler = uniform"):
        assert part in card, part
    assert layout.evaluate_reliability("cancer").stat().st_size > 1000

    tracker = Tracker.for_results(layout.results)
    (run,) = [r for r in find_runs(tracker, "medflow/cancer") if r.data.tags["stage"] == "evaluate"]
    assert run.data.metrics["scratch.test_sensitivity_ci_low"] == scratch["sensitivity"]["ci_low"]
    artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id)}
    assert {"model_card.md", "metrics.json", "reliability.png"} <= artifacts


# --------------------------------------------------------------------------- imports


def test_evaluation_maths_and_figures_do_not_import_torch() -> None:
    """stats/ and plots/ work on numpy arrays: the report and analysis code need no torch."""
    modules = [
        *("bootstrap", "intervals", "metrics", "predictions", "scores", "summary"),
        *("hierarchical", "operating_point", "calibration", "delong", "clinical"),
    ]
    code = "; ".join(
        [f"import medflow.stats.{m}" for m in modules]
        + ["import medflow.plots.classification, medflow.plots.training, sys"]
        + ["print('torch' in sys.modules)"]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_undefined_metrics_are_written_as_json_null(tmp_path):
    """A multi-class AUC on a split that lacks a class is NaN; every result file the stages
    write takes it as null instead of failing after the work is done."""
    from medflow.runtime.io import write_json_atomic

    y = np.array([0, 1, 1, 0])  # class 2 of 3 never occurs
    auc = plain_metrics("multiclass", y, np.full((4, 3), 1 / 3))["auc"]
    assert math.isnan(auc)
    path = write_json_atomic(
        {"best_val_auc": auc, "n": np.int64(4), "history": [np.float32("inf"), 0.5]},
        tmp_path / "result.json",
    )
    assert json.loads(path.read_text()) == {"best_val_auc": None, "n": 4, "history": [None, 0.5]}
