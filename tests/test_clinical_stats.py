"""Clinical evaluation maths: the hierarchical bootstrap's coverage (against today's
seeds-only t-interval), operating points chosen on validation, calibration, and DeLong's
test checked against R's pROC."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, confusion_matrix, recall_score, roc_curve

from medflow.config.schema import validate_section
from medflow.errors import ConfigError
from medflow.stats.calibration import apply_temperature, calibration_metrics, fit_temperature
from medflow.stats.clinical import ScoredRun, delong_comparison, intervals, split_per_class
from medflow.stats.delong import delong_test
from medflow.stats.hierarchical import hierarchical_summary, resample_runs, seed_draws
from medflow.stats.intervals import aggregate_over_seeds
from medflow.stats.operating_point import choose_threshold, confusion, operating_metrics


def ones(n: int) -> np.ndarray:
    return np.ones((1, n))


# --------------------------------------------------------------------------- coverage


def _accuracy_stat(correct: np.ndarray):
    return lambda w: {"accuracy": w @ correct / w.sum(axis=1)}


def _coverage(reps: int, n_test: int, n_seeds: int, true_acc: float, seed_sd: float):
    """Fraction of simulated studies whose interval holds the true accuracy: hierarchical
    bootstrap and the seeds-only t-interval. Each study draws a fresh test set and fresh
    seeds; seed s has true accuracy true_acc + seed effect and gets example i right when
    the example's difficulty u_i < its accuracy, so seeds share their mistakes (as trained
    models do): the seeds-only interval then sees almost no spread."""
    rng = np.random.default_rng(2024)
    hits_h = hits_t = 0
    widths = []
    for _ in range(reps):
        acc_s = true_acc + seed_sd * rng.standard_normal(n_seeds)
        u = rng.random(n_test)
        correct = (u[None, :] < acc_s[:, None]).astype(float)  # (seeds, examples)
        stats = {s: _accuracy_stat(correct[s]) for s in range(n_seeds)}
        replicates = resample_runs(stats, n_test, 1000, rng)
        point = {s: {"accuracy": correct[s].mean()} for s in range(n_seeds)}
        draws = seed_draws(rng, n_seeds, 1000)
        ci = hierarchical_summary(point, replicates, draws)["accuracy"]
        hits_h += ci["ci_low"] <= true_acc <= ci["ci_high"]
        widths.append(ci["ci_high"] - ci["ci_low"])
        t = aggregate_over_seeds(correct.mean(axis=1), bounds=(0.0, 1.0))
        hits_t += t["ci_low"] <= true_acc <= t["ci_high"]
    return hits_h / reps, hits_t / reps, float(np.mean(widths))


def test_hierarchical_interval_covers_true_accuracy_and_seeds_only_does_not() -> None:
    # breast_cancer-like: 143 test patients, 3 seeds, accuracy 0.95, small seed effect
    hier, seeds_only, width = _coverage(
        reps=500, n_test=143, n_seeds=3, true_acc=0.95, seed_sd=0.005
    )
    print(
        f"coverage: hierarchical {hier:.3f} (mean width {width:.3f}), seeds-only {seeds_only:.3f}"
    )
    assert 0.92 <= hier <= 0.98
    assert not 0.92 <= seeds_only <= 0.98
    assert width == pytest.approx(2 * 1.96 * math.sqrt(0.95 * 0.05 / 143), rel=0.25)


def test_hierarchical_interval_covers_when_seeds_vary_more_than_examples() -> None:
    hier, seeds_only, _ = _coverage(reps=200, n_test=300, n_seeds=5, true_acc=0.8, seed_sd=0.03)
    print(
        f"coverage with a large seed effect: hierarchical {hier:.3f}, seeds-only {seeds_only:.3f}"
    )
    assert 0.92 <= hier <= 0.98
    assert seeds_only < 0.92


def test_paired_gain_of_a_mode_with_itself_is_exactly_zero() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    runs = [
        ScoredRun(mode, s, np.clip(0.3 * y + 0.7 * rng.random(120), 0, 1), [0.5])
        for s in (0, 1, 2)
        for mode in ("finetune",)
    ]
    twins = [ScoredRun("scratch", r.seed, r.scores, r.thresholds) for r in runs]
    found = intervals("binary", y, runs + twins, n_boot=300)
    gain, _ = split_per_class(found.gain("finetune", "scratch"))
    for name in ("accuracy", "auc", "sensitivity", "brier"):
        assert (gain[name]["mean"], gain[name]["ci_low"], gain[name]["ci_high"]) == (0, 0, 0)
    fine, per_class = split_per_class(found.mode("finetune"))
    assert fine["accuracy"]["ci_low"] < fine["accuracy"]["mean"] < fine["accuracy"]["ci_high"]
    assert list(per_class) == [0] and set(per_class[0]) >= {"sensitivity", "ppv", "prevalence"}


# --------------------------------------------------------------------------- operating point


def test_thresholds_follow_their_rule_on_validation() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400) == 1
    s = np.clip(0.25 * y + 0.75 * rng.random(400), 0, 1)
    thr = roc_curve(y, s)[2]
    youden = choose_threshold(y, s, "youden", None)
    best = max(((s >= t)[y].mean() - (s >= t)[~y].mean()) for t in thr[1:])
    assert (s >= youden)[y].mean() - (s >= youden)[~y].mean() == pytest.approx(best)
    sens = choose_threshold(y, s, "sensitivity", 0.9)
    assert (s >= sens)[y].mean() >= 0.9
    assert (s >= np.nextafter(sens, 2))[y].mean() < 0.9  # the highest threshold reaching it
    spec = choose_threshold(y, s, "specificity", 0.8)
    assert (s < spec)[~y].mean() >= 0.8
    assert choose_threshold(np.ones(5, bool), s[:5], "youden", None) == 0.5


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_operating_metrics_match_sklearn(task: str) -> None:
    rng = np.random.default_rng(4)
    n = 300
    if task == "binary":
        y = rng.integers(0, 2, n)
        scores, thresholds = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), [0.42]
        truth, pred = [y], [(scores >= 0.42).astype(int)]
    elif task == "multiclass":
        y = rng.integers(0, 3, n)
        scores = rng.dirichlet(np.ones(3), n) + 0.5 * np.eye(3)[y]
        scores /= scores.sum(axis=1, keepdims=True)
        thresholds = None
        truth = [(y == k).astype(int) for k in range(3)]
        pred = [(scores.argmax(1) == k).astype(int) for k in range(3)]
    else:
        y = (rng.random((n, 2)) < [0.4, 0.1]).astype(int)
        scores, thresholds = np.clip(0.3 * y + 0.7 * rng.random((n, 2)), 0, 1), [0.5, 0.6]
        truth = [y[:, 0], y[:, 1]]
        pred = [(scores[:, 0] >= 0.5).astype(int), (scores[:, 1] >= 0.6).astype(int)]
    got = operating_metrics(task, y, scores, thresholds, ones(n))
    for k, (t, p) in enumerate(zip(truth, pred, strict=True)):
        assert got[f"class/{k}/sensitivity"][0] == pytest.approx(recall_score(t, p))
        assert got[f"class/{k}/specificity"][0] == pytest.approx(recall_score(1 - t, 1 - p))
        assert got[f"class/{k}/ppv"][0] == pytest.approx(recall_score(p, t))
        assert got[f"class/{k}/prevalence"][0] == pytest.approx(t.mean())
    if task != "multiclass":
        assert got["sensitivity"][0] == pytest.approx(
            np.mean([recall_score(t, p) for t, p in zip(truth, pred, strict=True)])
        )
    else:
        assert "sensitivity" not in got
    matrices = confusion(task, y, scores, thresholds)
    if task == "binary":
        assert matrices == [confusion_matrix(truth[0], pred[0]).tolist()]
    elif task == "multiclass":
        assert matrices == [confusion_matrix(y, scores.argmax(1)).tolist()]
    else:
        assert len(matrices) == 2 and matrices[1] == confusion_matrix(truth[1], pred[1]).tolist()


def test_operating_point_schema_needs_a_target_for_sensitivity() -> None:
    section = validate_section({}, "evaluate", source="t")
    assert section["operating_point"] == {"rule": "youden", "target": None}
    assert section["calibration"] == "none" and section["ece_bins"] == 15
    with pytest.raises(ConfigError, match=r"operating_point\.target"):
        validate_section({"operating_point": {"rule": "sensitivity"}}, "evaluate", source="t")
    with pytest.raises(ConfigError, match="calibration"):
        validate_section({"calibration": "platt"}, "evaluate", source="t")


# --------------------------------------------------------------------------- calibration


def test_brier_and_ece_match_sklearn() -> None:
    rng = np.random.default_rng(5)
    n = 500
    y = rng.integers(0, 2, n)
    p = np.clip(0.2 * y + 0.8 * rng.random(n), 0, 1)
    got = calibration_metrics("binary", y, p, ones(n), n_bins=15)
    assert got["brier"][0] == pytest.approx(brier_score_loss(y, p))
    observed, predicted = calibration_curve(y, p, n_bins=15, strategy="uniform")
    counts = np.histogram(p, bins=np.linspace(0, 1, 16))[0]
    counts = counts[counts > 0]
    assert got["ece"][0] == pytest.approx(np.sum(counts * np.abs(observed - predicted)) / n)

    k = rng.integers(0, 3, n)
    probs = rng.dirichlet(np.ones(3), n)
    multi = calibration_metrics("multiclass", k, probs, ones(n), n_bins=10)
    assert multi["brier"][0] == pytest.approx(np.mean(((probs - np.eye(3)[k]) ** 2).sum(1)))


def test_temperature_scaling_fixes_overconfidence() -> None:
    rng = np.random.default_rng(6)

    def overconfident(n: int):
        y = rng.integers(0, 2, n)
        logit = 1.5 * (2 * y - 1) + rng.normal(size=n) * 1.5
        return y, 1 / (1 + np.exp(-3 * logit))  # three times too sharp

    y_val, s_val = overconfident(2000)
    y_test, s_test = overconfident(2000)
    temperature = fit_temperature("binary", y_val, s_val)
    assert temperature > 1.5  # softens the too-sharp scores
    after = apply_temperature("binary", s_test, temperature)
    assert np.all(np.diff(after[np.argsort(s_test)]) >= 0)  # a monotone map: ranks kept
    before_ece = calibration_metrics("binary", y_test, s_test, ones(2000), 15)["ece"][0]
    after_ece = calibration_metrics("binary", y_test, after, ones(2000), 15)["ece"][0]
    assert after_ece < 0.5 * before_ece


# --------------------------------------------------------------------------- DeLong


def _fixed_data(case: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + case)
    n = (60, 150, 41)[case]
    y = rng.integers(0, 2, n)
    a = (0.9 * y + rng.normal(size=n)).round(1)  # rounding makes ties
    b = (0.5 * y + 0.6 * a + rng.normal(size=n)).round(2)  # correlated with a
    return y, a, b


PROC = """
suppressMessages(library(pROC))
d <- read.csv(commandArgs(TRUE)[1])
r1 <- roc(d$y, d$a, levels = c(0, 1), direction = "<", quiet = TRUE)
r2 <- roc(d$y, d$b, levels = c(0, 1), direction = "<", quiet = TRUE)
t <- roc.test(r1, r2, method = "delong")
cat(sprintf("%.12g %.12g %.12g %.12g", t$statistic, t$p.value, auc(r1), auc(r2)))
"""


def _proc_available() -> str | None:
    if shutil.which("Rscript") is None:
        return (
            "R is not installed (Debian: r-base-core r-cran-proc; tests/system/install-packages.sh)"
        )
    check = subprocess.run(
        ["Rscript", "-e", "library(pROC)"], capture_output=True, text=True, check=False
    )
    return None if check.returncode == 0 else "R's pROC is not installed (Debian: r-cran-proc)"


@pytest.mark.parametrize("case", [0, 1, 2])
def test_delong_matches_proc(tmp_path, case: int) -> None:
    reason = _proc_available()
    if reason:
        pytest.skip(reason)
    y, a, b = _fixed_data(case)
    data = tmp_path / "data.csv"
    np.savetxt(data, np.column_stack([y, a, b]), delimiter=",", header="y,a,b", comments="")
    script = tmp_path / "delong.R"
    script.write_text(PROC)
    out = subprocess.run(
        ["Rscript", str(script), str(data)], capture_output=True, text=True, check=True
    )
    z, p, auc_a, auc_b = map(float, out.stdout.split())
    ours = delong_test(y == 1, a, b)
    print(f"case {case}: pROC z={z:.6f} p={p:.6f}; ours z={ours['z']:.6f} p={ours['p_value']:.6f}")
    assert ours["auc_a"] == pytest.approx(auc_a, abs=1e-10)
    assert ours["auc_b"] == pytest.approx(auc_b, abs=1e-10)
    assert ours["z"] == pytest.approx(z, rel=1e-8)
    assert ours["p_value"] == pytest.approx(p, rel=1e-8)


def test_delong_edge_cases_and_comparison() -> None:
    y, a, b = _fixed_data(1)
    same = delong_test(y, a, a)
    assert (same["diff"], same["z"], same["p_value"]) == (0.0, 0.0, 1.0)
    assert math.isnan(delong_test(np.ones(5), a[:5], b[:5])["p_value"])
    strong = delong_test(y, y + 0.01 * a, b)
    assert strong["diff"] > 0 and strong["p_value"] < 0.05
    result = delong_comparison("binary", y, {0: a, 1: y + 0.01 * a}, {0: b, 1: b})
    assert [e["seed"] for e in result["per_seed"]] == [0, 1]
    assert result["p_value"] == max(e["p_value"] for e in result["per_seed"])
