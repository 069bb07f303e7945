"""Class imbalance on real torch: balanced loss weights equal a hand computation, the balanced
sampler balances classes and repeats per (seed, epoch), both are sweep dimensions and MLflow
params, and bad settings are one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from medflow.config.load import load_config
from medflow.errors import ConfigError
from medflow.hpo.space import search_space, suggest
from medflow.ml.batches import Batches
from medflow.ml.imbalance import loss_weights, sample_weights
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, evaluate_scores, train
from medflow.ml.models import ModelConfig, build_model
from medflow.ml.monitor import direction
from medflow.ml.optim import OptimConfig
from medflow.ml.task import n_outputs_for
from medflow.stages.common import run_config
from medflow.stats.metrics import compute_metrics
from medflow.tracking.provenance import standard_tags
from medflow.tracking.training import tracked_training

CPU = torch.device("cpu")


def imbalanced(task: str, n: int = 300, seed: int = 0) -> TrainData:
    """Gaussian classes with frequencies 0.7 / 0.2 / 0.1 (binary: 0.85 / 0.15; multilabel:
    three labels of prevalence 0.5, 0.2, 0.05); split 2:1 into train and validation."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, size=(n, 5)).astype(np.float32)
    if task == "multilabel":
        y = (rng.random((n, 3)) < [0.5, 0.2, 0.05]).astype(np.float32)
        x[:, :3] += 1.5 * y
        n_classes = 3
    else:
        p = [0.85, 0.15] if task == "binary" else [0.7, 0.2, 0.1]
        y = rng.choice(len(p), size=n, p=p)
        x[np.arange(n), y] += 1.5
        n_classes = len(p)
    cut = 2 * n // 3
    return TrainData(task, n_classes, *map(torch.from_numpy, (x[:cut], y[:cut], x[cut:], y[cut:])))


def config(epochs: int = 3, **train_kw) -> RunConfig:
    return RunConfig(
        model=ModelConfig.from_schema(
            arch="mlp", hidden_sizes=(16,), activation="relu", dropout=0.0
        ),
        optim=OptimConfig.from_schema(name="adam", lr=1e-2, schedule="constant"),
        train=TrainConfig.from_schema(
            **{"epochs": epochs, "batch_size": 32, "patience": 0, "seed": 0, **train_kw}
        ),
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def hand_loss(task: str, y_train: np.ndarray, y: np.ndarray, z: np.ndarray, weighted: bool):
    """The auto loss written out; balanced: w_c = n / (k * n_c) from the train counts, as
    cross-entropy's weight or BCE's pos_weight = w_1 / w_0 = negatives / positives."""
    if task == "multiclass":
        counts = np.bincount(y_train, minlength=z.shape[1])
        w = len(y_train) / (z.shape[1] * counts) if weighted else np.ones(z.shape[1])
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nll = -logp[np.arange(len(y)), y]
        return float((w[y] * nll).sum() / w[y].sum())  # torch's weighted mean
    if task == "binary":
        z, y_train, y = z.reshape(-1, 1), y_train.reshape(-1, 1), y.reshape(-1, 1)
    pos = y_train.sum(axis=0)
    pos_weight = (len(y_train) - pos) / pos if weighted else 1.0
    p = _sigmoid(z)
    return float((-(pos_weight * y * np.log(p) + (1 - y) * np.log(1 - p))).mean())


def _initial_logits(run: RunConfig, data: TrainData) -> np.ndarray:
    """The logits of the model ``train`` starts from (seeded as it seeds it) on x_train."""
    torch.manual_seed(run.train.seed)
    model = build_model(run.model, data.input_shape, n_outputs_for(data.task, data.n_classes))
    with torch.no_grad():
        return model(data.x_train).double().numpy()


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_balanced_class_weights_give_the_hand_computed_loss(task):
    data = imbalanced(task)
    y_train, y_val = data.y_train.numpy(), data.y_val.numpy()
    # One full batch per epoch: epoch 1's training loss is the initial model's on all of train.
    run = config(epochs=3, class_weight="balanced", batch_size=len(y_train))
    result = train(run, data)
    assert result.status == "finished"
    z0 = _initial_logits(run, data)
    first = result.history[0]["train_loss"]
    assert first == pytest.approx(hand_loss(task, y_train, y_train, z0, True), rel=1e-5)
    assert first != pytest.approx(hand_loss(task, y_train, y_train, z0, False), rel=1e-3)
    # val_loss stays the plain loss, so runs with and without weights compare on one scale.
    logits, _ = evaluate_scores(result.model, data.x_val, task, CPU)
    plain = hand_loss(task, y_train, y_val, logits.double().numpy(), False)
    assert result.best_metrics["val_loss"] == pytest.approx(plain, rel=1e-5)


def test_weights_are_sklearns_balanced_weights_in_the_losss_form():
    data = imbalanced("multiclass")
    y = data.y_train.numpy()
    counts = np.bincount(y)
    np.testing.assert_allclose(
        loss_weights("multiclass", data.y_train, 3, "balanced").numpy(),
        len(y) / (3 * counts),
        rtol=1e-6,
    )
    binary = imbalanced("binary")
    n_pos = int(binary.y_train.sum())
    (pos_weight,) = loss_weights("binary", binary.y_train, 2, "balanced").tolist()
    assert pos_weight == pytest.approx((len(binary.y_train) - n_pos) / n_pos)
    assert loss_weights("binary", binary.y_train, 2, "none") is None


def test_balanced_weights_raise_the_minority_classs_predicted_probability():
    data = imbalanced("binary")
    mean_p = {}
    for mode in ("none", "balanced"):
        result = train(config(epochs=6, class_weight=mode), data)
        _, scores = evaluate_scores(result.model, data.x_val, "binary", CPU)
        mean_p[mode] = float(scores.mean())
    assert mean_p["balanced"] > mean_p["none"] + 0.1, mean_p


def _epoch_labels(batches: Batches, epoch: int) -> torch.Tensor:
    return torch.cat([yb for _, yb in batches.epoch(epoch)])


def _batches(data: TrainData, resident_max_mb: int, mode: str = "balanced") -> Batches:
    weights = sample_weights(data.task, data.y_train, mode)
    return Batches(
        data.x_train,
        data.y_train,
        CPU,
        batch_size=64,
        seed=3,
        resident_max_mb=resident_max_mb,
        sample_weights=weights,
    )


def test_balanced_sampler_balances_classes_and_repeats_per_seed_and_epoch():
    data = imbalanced("multiclass", n=4500)
    n = len(data.y_train)
    assert np.bincount(data.y_train.numpy()).min() < n / 6  # really imbalanced
    resident = _batches(data, resident_max_mb=64)
    streamed = _batches(data, resident_max_mb=0)
    assert resident.resident and not streamed.resident
    first = _epoch_labels(resident, 1)
    assert len(first) == n  # epoch size n_train, drawn with replacement
    freq = np.bincount(first.numpy(), minlength=3) / n
    np.testing.assert_allclose(freq, 1 / 3, atol=0.03)
    assert torch.equal(first, _epoch_labels(resident, 1))  # same (seed, epoch): same draws
    assert not torch.equal(first, _epoch_labels(resident, 2))
    # The DataLoader path draws the very same examples as the device-resident one.
    assert torch.equal(first, _epoch_labels(streamed, 1))
    uniform = _epoch_labels(_batches(data, 64, "uniform"), 1)
    assert torch.equal(uniform.sort().values, data.y_train.sort().values)  # a permutation


def test_multilabel_sampler_draws_by_the_rarest_positive_label():
    data = imbalanced("multilabel", n=3000)
    y = data.y_train.numpy()
    drawn = _epoch_labels(_batches(data, 64), 1).numpy()
    # The rarest label (5% prevalence) is drawn about as often as a quarter of the examples:
    # four groups (three labels, no label) share the draws equally.
    assert y[:, 2].mean() < 0.1
    assert drawn[:, 2].mean() == pytest.approx(0.25, abs=0.04)
    assert (drawn.sum(axis=1) == 0).mean() == pytest.approx(0.25, abs=0.04)


def test_balanced_sampler_training_resumes_exactly(tmp_path):
    data = imbalanced("multiclass")
    cfg = config(epochs=4, sampler="balanced", class_weight="balanced")
    whole = train(cfg, data, checkpoint=tmp_path / "whole.pt")

    class Killed(Exception):
        pass

    def die_after_epoch_2(epoch, metrics):
        if epoch == 2:
            raise Killed

    ckpt = tmp_path / "split.pt"
    with pytest.raises(Killed):
        train(cfg, data, checkpoint=ckpt, on_epoch=die_after_epoch_2)
    resumed = train(cfg, data, checkpoint=ckpt)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in whole.history]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]


def _study_yaml(tmp_path: Path, study: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(
        "datasets:\n  d: {source: gates}\nclassics: {enabled: false}\n"
        f"studies:\n  s:\n    target: d\n    refine: {{modes: [scratch]}}\n{study}"
    )
    return path


def test_sweep_dimensions_set_the_run_config_and_are_logged_as_params(tmp_path, tracker):
    path = _study_yaml(
        tmp_path,
        "    sweep:\n      space:\n        optimizers: [adam]\n        activations: [relu]\n"
        "        class_weight: [none, balanced]\n        sampler: [uniform, balanced]\n",
    )
    study = load_config(path).study("s")
    space = search_space(study)
    assert space.class_weight == ("none", "balanced") and space.sampler == ("uniform", "balanced")
    optuna_study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    seen: dict[str, set[str]] = {"class_weight": set(), "sampler": set()}
    runs = []
    for _ in range(8):
        params = suggest(optuna_study.ask(), space)
        run = run_config(study, params, epochs=2, seed=0)
        assert run.train.class_weight == params["class_weight"]
        assert run.train.sampler == params["sampler"]
        seen["class_weight"].add(params["class_weight"])
        seen["sampler"].add(params["sampler"])
        runs.append(run)
    assert seen == {"class_weight": {"none", "balanced"}, "sampler": {"uniform", "balanced"}}
    run = next(r for r in runs if r.train.class_weight == r.train.sampler == "balanced")
    tags = standard_tags("refine", "s", "abc", run.digest())
    result, run_id = tracked_training(
        run,
        imbalanced("multiclass"),
        tracker,
        experiment="s",
        run_name="r",
        tags=tags,
        log_model=False,
    )
    assert result.status == "finished"
    params = tracker.get_run(run_id).data.params
    assert params["train.class_weight"] == "balanced" and params["train.sampler"] == "balanced"


def test_fixed_settings_default_to_none_and_uniform(tmp_path):
    study = load_config(_study_yaml(tmp_path, "")).study("s")
    assert (study.train["class_weight"], study.train["sampler"]) == ("none", "uniform")
    assert study.sweep["space"]["class_weight"] is None
    fixed = load_config(
        _study_yaml(tmp_path, "    train: {class_weight: balanced, sampler: balanced}\n")
    ).study("s")
    run = run_config(fixed, {}, epochs=1, seed=0)
    assert (run.train.class_weight, run.train.sampler) == ("balanced", "balanced")


@pytest.mark.parametrize(
    ("study", "expected"),
    [
        ("    train: {class_weight: weighted}\n", "studies.s.train.class_weight: 'weighted'"),
        ("    train: {sampler: oversample}\n", "studies.s.train.sampler: 'oversample'"),
        (
            "    sweep: {space: {class_weight: [balanced, inverse]}}\n",
            "studies.s.sweep.space.class_weight",
        ),
        ("    sweep: {space: {sampler: []}}\n", "studies.s.sweep.space.sampler"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(tmp_path, study, expected):
    path = _study_yaml(tmp_path, study)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {expected}"), message
    assert "\n" not in message


def _regression() -> TrainData:
    x = torch.randn(60, 3)
    y = x.sum(dim=1)
    return TrainData("regression", 1, x[:40], y[:40], x[40:], y[40:])


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ({"class_weight": "balanced"}, "train.class_weight"),
        ({"sampler": "balanced"}, "train.sampler"),
    ],
)
def test_regression_refuses_balancing_naming_the_key(setting, key):
    with pytest.raises(ConfigError) as err:
        train(config(epochs=1, monitor="val_loss", **setting), _regression())
    assert str(err.value).startswith(f"{key}: balanced needs class labels"), str(err.value)
    assert "\n" not in str(err.value)


def test_squared_error_loss_refuses_class_weights():
    with pytest.raises(ConfigError, match=r"^train\.class_weight: .*train\.loss squared_error"):
        train(config(epochs=1, class_weight="balanced", loss="squared_error"), imbalanced("binary"))


@pytest.mark.parametrize("monitor", ["val_balanced_accuracy", "val_auc"])
def test_balanced_accuracy_and_auc_are_maximised_monitors(monitor):
    assert direction(monitor) == "maximize" and direction("val_loss") == "minimize"
    data = imbalanced("multiclass")
    result = train(config(epochs=5, monitor=monitor, sampler="balanced"), data)
    values = [h[monitor] for h in result.history]
    assert result.best_value == max(values) and values[result.best_epoch - 1] == max(values)
    _, scores = evaluate_scores(result.model, data.x_val, data.task, CPU)
    again = compute_metrics(data.task, data.y_val.numpy(), scores.numpy())[monitor[4:]]
    assert again == pytest.approx(result.best_value)
