"""Sequence models and augmentations: every arch is a Classifier with a backbone/head split
that takes (N, C, T), uses the configured activation, trains with the real loop on
synthetic ECG-like signals, and transfers (freeze / replace head) like the image models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medflow.analysis.representation import saliency
from medflow.config.schema import validate_section
from medflow.data.sources.synthetic_signals import load as load_signals
from medflow.ml.batches import augment
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, train
from medflow.ml.models import (
    ACTIVATIONS,
    SEQUENCE_ARCHS,
    Classifier,
    ModelConfig,
    build_model,
    freeze_backbone,
    replace_head,
)
from medflow.ml.optim import OptimConfig
from medflow.ml.sequence_augment import SEQUENCE_AUGMENTS


def small(arch: str, **kw) -> ModelConfig:
    return ModelConfig.from_schema(arch=arch, width=8, depth=1, **kw)


@pytest.mark.parametrize("arch", SEQUENCE_ARCHS)
@pytest.mark.parametrize("shape", [(1, 40), (3, 17)])
def test_sequence_arch_is_a_classifier_of_n_c_t(arch, shape):
    model = build_model(small(arch, activation="elu"), shape, 4)
    assert isinstance(model, Classifier)
    x = torch.randn(5, *shape)
    features = model.backbone(x)
    assert features.shape == (5, model.feature_dim)
    assert model(x).shape == (5, 4)
    # The sweep's activation is the one built in; the default relu appears nowhere.
    assert any(isinstance(m, nn.ELU) for m in model.modules())
    assert not any(isinstance(m, ACTIVATIONS["relu"]) for m in model.modules())


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_recurrent_layers_and_bidirectional(arch):
    one = build_model(small(arch), (2, 30), 3)
    two = build_model(
        ModelConfig.from_schema(arch=arch, width=8, depth=2, bidirectional=True), (2, 30), 3
    )
    assert two.feature_dim == 2 * one.feature_dim == 16
    assert two.backbone.rnn.num_layers == 2 and two.backbone.rnn.bidirectional
    assert two(torch.randn(4, 2, 30)).shape == (4, 3)


def test_sequence_arch_refuses_images():
    with pytest.raises(ValueError, match=r"needs sequence inputs \(C, T\)"):
        build_model(small("cnn1d"), (1, 8, 8), 2)


@pytest.mark.parametrize("arch", SEQUENCE_ARCHS)
def test_linear_probe_trains_only_the_new_head(arch):
    model = build_model(small(arch), (1, 32), 8)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    freeze_backbone(model)
    replace_head(model, 2)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    loss = nn.functional.cross_entropy(model(torch.randn(6, 1, 32)), torch.arange(6) % 2)
    loss.backward()
    optimizer.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included


def signal_data(n: int = 480, length: int = 64) -> TrainData:
    opts = validate_section(
        {
            "n_series": n,
            "length": length,
            "classes": ["sinus", "t_inversion", "bundle_branch_block"],
        },
        "synthetic_signals_options",
        source="test",
    )
    part = load_signals(opts, 0).splits["all"]
    x = part.x - part.x.mean(axis=(0, 2), keepdims=True)
    x = (x / x.std(axis=(0, 2), keepdims=True)).astype(np.float32)
    cut = n * 3 // 4
    return TrainData(
        "multiclass", 3, *map(torch.from_numpy, (x[:cut], part.y[:cut], x[cut:], part.y[cut:]))
    )


@pytest.mark.parametrize(
    ("arch", "augment_kind"), [("cnn1d", "sequence"), ("resnet1d", "none"), ("gru", "jitter")]
)
def test_sequence_models_learn_synthetic_rhythms(arch, augment_kind):
    cfg = RunConfig(
        model=ModelConfig.from_schema(arch=arch, width=16, depth=2 if arch == "cnn1d" else 1),
        optim=OptimConfig.from_schema(name="adam", lr=5e-3, schedule="constant"),
        train=TrainConfig.from_schema(
            epochs=8, batch_size=32, augment=augment_kind, monitor="val_accuracy", seed=0
        ),
    )
    result = train(cfg, signal_data())
    assert result.status == "finished"
    assert result.best_value > 0.55  # chance is 1/3


@pytest.mark.parametrize("kind", SEQUENCE_AUGMENTS)
def test_sequence_augmentations_are_seeded_and_change_the_batch(kind):
    x = torch.randn(16, 2, 50)

    def run(seed: int) -> torch.Tensor:
        return augment(x, kind, torch.Generator().manual_seed(seed))

    first, again, other = run(0), run(0), run(1)
    assert first.shape == x.shape
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, x)


def test_time_shift_moves_series_without_wrapping():
    x = torch.arange(40, dtype=torch.float32).repeat(8, 1, 1)
    shifted = augment(x, "time_shift", torch.Generator().manual_seed(0))
    steps = shifted.diff(dim=-1)
    assert ((steps == 0) | (steps == 1)).all()  # a shifted ramp, edges held, no jump back
    assert (shifted[:, 0, 0] != 0).any() or (shifted[:, 0, -1] != 39).any()


def test_image_augmentations_leave_series_alone_and_vice_versa():
    series, images = torch.randn(4, 1, 20), torch.randn(4, 1, 6, 6)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(augment(series, "flip", gen), series)
    assert torch.equal(augment(images, "jitter", gen), images)


class _LastSampleModel(torch.nn.Module):
    """Logits from the last time step only: the saliency must be zero everywhere else."""

    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(2, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x[:, :, -1])


@pytest.mark.parametrize("outputs", [1, 3])
def test_saliency_is_where_the_prediction_looks(outputs: int) -> None:
    torch.manual_seed(0)
    model = _LastSampleModel(outputs)
    x = torch.randn(5, 2, 16)
    sal, predicted = saliency(model, x)
    assert sal.shape == (5, 16) and predicted.shape == (5,)
    assert np.all(sal[:, :-1] == 0) and np.all(sal[:, -1] > 0)
    logits = model(x).detach()
    expected = (logits.reshape(-1) > 0).long() if outputs == 1 else logits.argmax(dim=1)
    assert predicted.tolist() == expected.tolist()
