"""Tests for medflow.ml.models: every architecture can learn, and the backbone/head split holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from medflow.config.schema import defaults
from medflow.errors import ConfigError
from medflow.ml.models import (
    ACTIVATIONS,
    Classifier,
    ModelConfig,
    build_model,
    count_parameters,
    freeze_backbone,
    imagenet_weights_path,
    make_activation,
    replace_head,
    unfreeze_backbone,
)

MAIN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu")


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    if logits.shape[1] == 1:  # single-logit binary model
        return ((logits[:, 0] > 0).long() == y).float().mean().item()
    return (logits.argmax(dim=1) == y).float().mean().item()


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.float())
    return F.cross_entropy(logits, y)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, max_steps: int) -> float:
    """Full-batch Adam until the training accuracy is 1.0; returns the last accuracy."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(max_steps):
        logits = model(x)
        acc = _accuracy(logits, y)
        if acc == 1.0:
            return acc
        opt.zero_grad()
        _loss(logits, y).backward()
        opt.step()
    with torch.no_grad():
        return _accuracy(model(x), y)


def _random_batch(shape: tuple[int, ...], n: int, n_classes: int) -> tuple[torch.Tensor, ...]:
    return torch.randn(n, *shape), torch.randint(0, n_classes, (n,))


# --- learning ------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", MAIN_ACTIVATIONS)
def test_perceptron_fits_linearly_separable_batch(activation: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 10)
    y = (x @ torch.randn(10) > 0).long()
    model = build_model(ModelConfig.from_schema(arch="perceptron", activation=activation), (10,), 1)
    assert _accuracy(model(x), y) < 1.0  # the fit below must do the work
    assert _fit(model, x, y, lr=0.2, max_steps=300) == 1.0


@pytest.mark.parametrize("activation", tuple(ACTIVATIONS))
def test_mlp_overfits_random_labels(activation: str) -> None:
    torch.manual_seed(0)
    x, y = _random_batch((10,), 32, 4)
    model = build_model(ModelConfig.from_schema(arch="mlp", activation=activation), (10,), 4)
    assert _fit(model, x, y, lr=1e-2, max_steps=400) == 1.0


@pytest.mark.parametrize("activation", tuple(ACTIVATIONS))
def test_cnn_overfits_random_labels(activation: str) -> None:
    torch.manual_seed(0)
    x, y = _random_batch((3, 8, 8), 32, 4)
    model = build_model(
        ModelConfig.from_schema(arch="cnn", activation=activation, width=8), (3, 8, 8), 4
    )
    assert _fit(model, x, y, lr=1e-2, max_steps=300) == 1.0


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_resnet18_overfits_random_labels(activation: str) -> None:
    torch.manual_seed(0)
    x, y = _random_batch((1, 28, 28), 6, 3)  # tiny: a 28x28 ResNet step is slow on CPU
    model = build_model(
        ModelConfig.from_schema(arch="resnet18", activation=activation), (1, 28, 28), 3
    )
    assert _fit(model, x, y, lr=1e-3, max_steps=30) == 1.0


# --- structure -----------------------------------------------------------------------------

SHAPES = [
    ("perceptron", (10,), 10),
    ("perceptron", (1, 8, 8), 64),  # images are flattened
    ("mlp", (10,), 16),
    ("mlp", (2, 8, 8), 16),
    ("cnn", (1, 8, 8), 8 * 2),  # width 8, depth 2 -> 16 channels
    ("cnn", (3, 16, 16), 8 * 2),
]


@pytest.mark.parametrize(("arch", "shape", "feature_dim"), SHAPES)
def test_backbone_head_split(arch: str, shape: tuple[int, ...], feature_dim: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.from_schema(arch=arch, hidden_sizes=(32, 16), width=8, depth=2)
    model = build_model(cfg, shape, 3).eval()
    x = torch.randn(5, *shape)
    assert isinstance(model, Classifier)
    assert model.feature_dim == feature_dim
    assert isinstance(model.head, nn.Linear)
    assert (model.head.in_features, model.head.out_features) == (feature_dim, 3)
    features = model.backbone(x)
    assert features.shape == (5, feature_dim)
    torch.testing.assert_close(model(x), model.head(features))


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_cnn_works_on_8x8_inputs(depth: int) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_schema(arch="cnn", width=4, depth=depth), (2, 8, 8), 3)
    assert model(torch.randn(2, 2, 8, 8)).shape == (2, 3)
    assert model.feature_dim == 4 * 2 ** (depth - 1)
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)


def test_mlp_layers_and_dropout() -> None:
    cfg = ModelConfig.from_schema(arch="mlp", activation="tanh", hidden_sizes=(7, 5), dropout=0.3)
    model = build_model(cfg, (4,), 2)
    linears = [m for m in model.backbone.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 7), (7, 5)]
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 2
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet_small_input_uses_3x3_stem(channels: int) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_schema(arch="resnet18"), (channels, 28, 28), 5).eval()
    conv1 = model.backbone.conv1
    assert (conv1.in_channels, conv1.kernel_size, conv1.stride) == (channels, (3, 3), (1, 1))
    assert isinstance(model.backbone.maxpool, nn.Identity)
    assert model.feature_dim == 512
    assert not any(isinstance(m, nn.Linear) for m in model.backbone.modules())
    features = model.backbone(torch.randn(2, channels, 28, 28))
    assert features.shape == (2, 512)
    assert model.head(features).shape == (2, 5)


def test_resnet_large_input_keeps_imagenet_stem() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_schema(arch="resnet18"), (1, 64, 64), 2)
    conv1 = model.backbone.conv1
    assert (conv1.in_channels, conv1.kernel_size, conv1.stride) == (1, (7, 7), (2, 2))
    assert isinstance(model.backbone.maxpool, nn.MaxPool2d)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 2)


def test_resnet_activation_replaces_every_relu() -> None:
    model = build_model(ModelConfig.from_schema(arch="resnet18", activation="gelu"), (3, 28, 28), 2)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    # stem + one module per BasicBlock (8 blocks) - torchvision reuses it within a block
    assert sum(isinstance(m, nn.GELU) for m in model.modules()) == 9


def test_freeze_backbone_trains_only_the_head() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_schema(arch="cnn", width=4), (1, 8, 8), 3)
    x, y = _random_batch((1, 8, 8), 16, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)  # built before freezing, on purpose
    assert model.training  # fresh modules start in train mode
    freeze_backbone(model)
    assert not model.backbone.training  # BatchNorm must not update its running stats
    model.eval().train()
    assert model.training
    assert not model.backbone.training  # train() keeps a frozen backbone in eval
    assert count_parameters(model, trainable_only=True) == count_parameters(model.head)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for name, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, backbone_before[name], msg=f"{name} changed")
    assert not torch.equal(model.head.weight, head_before)

    unfreeze_backbone(model)
    assert model.backbone.training
    assert all(p.requires_grad for p in model.backbone.parameters())
    model.eval()
    assert not model.backbone.training


def test_replace_head_changes_outputs_keeps_backbone() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_schema(arch="mlp", hidden_sizes=(8,)), (6,), 3)
    backbone = model.backbone
    old_head = model.head
    replace_head(model, 7)
    assert model.backbone is backbone
    assert model.head is not old_head
    assert (model.head.in_features, model.n_outputs) == (8, 7)
    assert model(torch.randn(4, 6)).shape == (4, 7)


def test_count_parameters() -> None:
    model = build_model(ModelConfig.from_schema(arch="perceptron"), (10,), 3)
    assert count_parameters(model) == 10 * 3 + 3
    mlp = build_model(ModelConfig.from_schema(arch="mlp", hidden_sizes=(4,)), (2,), 1)
    assert count_parameters(mlp) == (2 * 4 + 4) + (4 + 1)


# --- configuration and errors --------------------------------------------------------------


def test_make_activation_returns_new_instances() -> None:
    assert isinstance(make_activation("leaky_relu"), nn.LeakyReLU)
    assert make_activation("relu") is not make_activation("relu")
    assert {"sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu"} <= set(ACTIVATIONS)


def test_unknown_activation_is_rejected_with_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*sigmoid.*gelu"):
        make_activation("swish")
    with pytest.raises(ConfigError, match="activation: 'swish' is not one of"):
        ModelConfig.from_schema(arch="mlp", activation="swish")


def test_unknown_arch_is_rejected_with_known_names() -> None:
    with pytest.raises(ConfigError, match=r"arch: 'vgg16' is not one of: perceptron.*resnet18"):
        ModelConfig.from_schema(arch="vgg16")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"arch": "mlp", "dropout": 1.0},
        {"arch": "cnn", "depth": 0},
        {"arch": "mlp", "hidden_sizes": (8, 0)},
        {"arch": "resnet18", "weights": "places365"},
    ],
)
def test_invalid_config_values_are_rejected_by_the_schema(kwargs: dict) -> None:
    # weights on a non-ResNet arch is a cross-key check of the study (tests/test_config.py).
    with pytest.raises(ConfigError):
        ModelConfig.from_schema(**kwargs)


def test_image_archs_reject_tabular_inputs() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_model(ModelConfig.from_schema(arch="cnn"), (10,), 2)


def test_model_config_from_section() -> None:
    section = {**defaults("model"), "hidden_sizes": [32, 16], "activation": "elu"}
    cfg = ModelConfig.from_section(section)
    assert cfg == ModelConfig.from_schema(arch="mlp", hidden_sizes=(32, 16), activation="elu")
    assert isinstance(cfg.hidden_sizes, tuple)
    hash(cfg)  # frozen configs can key caches / sweeps
    with pytest.raises(TypeError, match=r"unknown keys \['hidden', 'lr'\]"):
        ModelConfig.from_schema(arch="mlp", hidden=[3], lr=0.1)


# --- ImageNet weights (never downloaded) ---------------------------------------------------


@pytest.fixture
def hub_dir(tmp_path: Path) -> Iterator[Path]:
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        yield tmp_path
    finally:
        torch.hub.set_dir(old)


def test_imagenet_weights_missing_raises_with_path(hub_dir: Path) -> None:
    expected = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    assert imagenet_weights_path("resnet18") == expected
    cfg = ModelConfig.from_schema(arch="resnet18", weights="imagenet")
    with pytest.raises(FileNotFoundError, match="does not download") as err:
        build_model(cfg, (3, 28, 28), 2)
    assert str(expected) in str(err.value)
    assert not expected.exists()


def _cache_fake_weights(arch: str) -> nn.Module:
    """Save a random torchvision model where the ImageNet checkpoint would be cached."""
    reference = torchvision.models.get_model(arch, weights=None)
    path = imagenet_weights_path(arch)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    return reference


@pytest.mark.usefixtures("hub_dir")
def test_imagenet_weights_are_loaded_from_cache() -> None:
    torch.manual_seed(0)
    reference = _cache_fake_weights("resnet18")
    cfg = ModelConfig.from_schema(arch="resnet18", weights="imagenet")
    cases: list[tuple[tuple[int, ...], Callable[[torch.Tensor], torch.Tensor] | None]] = [
        ((3, 64, 64), lambda w: w),  # unchanged stem
        ((1, 64, 64), lambda w: w.sum(dim=1, keepdim=True)),  # grey = RGB summed
        ((6, 64, 64), lambda w: torch.cat([w, w], dim=1) / 2),  # tiled, rescaled
        ((3, 28, 28), None),  # fresh 3x3 stem
    ]
    for shape, expected_conv1 in cases:
        backbone = build_model(cfg, shape, 2).backbone
        torch.testing.assert_close(
            backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight
        )
        torch.testing.assert_close(backbone.bn1.running_var, reference.bn1.running_var)
        if expected_conv1 is None:
            assert backbone.conv1.kernel_size == (3, 3)
        else:
            torch.testing.assert_close(
                backbone.conv1.weight, expected_conv1(reference.conv1.weight)
            )


def test_resnet_arch_list_matches_torchvision():
    import torchvision

    from medflow.ml.models import RESNET_ARCHS

    listed = torchvision.models.list_models(module=torchvision.models)
    expected = sorted(n for n in listed if n.startswith(("resnet", "resnext", "wide_resnet")))
    assert sorted(RESNET_ARCHS) == expected
