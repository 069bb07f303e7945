"""Model architectures: perceptron, MLP, small CNN and torchvision ResNets.

Every model is a :class:`Classifier`: a ``backbone`` mapping the input to a flat feature
vector of size ``feature_dim`` and a linear ``head`` producing logits. The split is what
transfer learning needs: pretrain, then :func:`replace_head` / :func:`freeze_backbone`.
Models always output logits; sigmoid/softmax belong to the loss and to prediction.
A user's own model (``arch: "package.module:factory"``) is built by medflow.ml.user_model.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from medflow.config.section import Section
from medflow.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "ACTIVATIONS",
    "ARCHS",
    "RESNET_ARCHS",
    "SMALL_INPUT_PX",
    "WEIGHTS",
    "Classifier",
    "ModelConfig",
    "build_model",
    "count_parameters",
    "freeze_backbone",
    "has_head_split",
    "imagenet_weights_path",
    "make_activation",
    "replace_head",
    "unfreeze_backbone",
]

ACTIVATIONS: Mapping[str, Callable[[], nn.Module]] = MappingProxyType(
    {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
        "elu": nn.ELU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
    }
)

# ResNet-family constructors of torchvision: they share the conv1/bn1/relu/maxpool/
# layer1-4/avgpool/fc layout the stem adaptation relies on. Spelled out rather than listed
# from torchvision so that importing medflow does not import torchvision (~2.5 s per job);
# tests/test_models.py checks the list against torchvision's.
RESNET_ARCHS: tuple[str, ...] = (
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
    "wide_resnet101_2",
    "wide_resnet50_2",
)
# Sequence models (medflow.ml.sequence_models), spelled out so importing this module stays light.
SEQUENCE_ARCHS: tuple[str, ...] = ("lstm", "gru", "cnn1d", "resnet1d", "inception_time")
# Volume models (medflow.ml.volume_models), likewise.
VOLUME_ARCHS: tuple[str, ...] = ("cnn3d", "resnet18_3d")
ARCHS: tuple[str, ...] = (
    "perceptron",
    "mlp",
    "cnn",
    *RESNET_ARCHS,
    *SEQUENCE_ARCHS,
    *VOLUME_ARCHS,
)
WEIGHTS: tuple[str | None, ...] = (None, "imagenet", "imagenet_if_cached")

# Below this input size the ImageNet stem (7x7/2 conv + max-pool) would shrink e.g. 28x28 to
# 7x7 before layer1; use the CIFAR-style 3x3/1 stem without max-pool as MedMNIST does.
SMALL_INPUT_PX = 64
# The CNN halves the spatial size only while it is at least this big, so 8x8 inputs work
# with any depth (8 -> 4 -> 2 -> 2 ...).
_MIN_POOL_PX = 4


def make_activation(name: str) -> nn.Module:
    """Return a new activation module for ``name`` (see :data:`ACTIVATIONS`)."""
    try:
        factory = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; known activations: {', '.join(ACTIVATIONS)}"
        ) from None
    return factory()


@dataclass(frozen=True)
class ModelConfig(Section):
    """Architecture hyper-parameters: the study's ``model`` section (schema ``$defs/model``).

    ``hidden_sizes`` is used by ``mlp``; ``width``/``depth`` by ``cnn``; ``weights`` by the
    torchvision ResNets only; ``options`` by a user's model (``arch`` an import path).
    ``dropout`` is applied after each hidden layer of the MLP and after the pooled features
    of the CNN/ResNets; the perceptron ignores it and ``activation`` (it outputs ``w.x + b``
    logits).
    """

    SCHEMA: ClassVar[str] = "model"

    arch: str
    # Keyword arguments of a user's factory; a dict is not hashable, so hash() skips it.
    options: dict[str, Any] = dataclasses.field(hash=False)
    activation: str
    hidden_sizes: tuple[int, ...]
    dropout: float
    width: int
    depth: int
    bidirectional: bool  # lstm/gru only
    weights: str | None

    def __post_init__(self) -> None:
        # Accept lists (YAML/JSON) but store a tuple so the config stays hashable.
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))


class Classifier(nn.Module):
    """``head(backbone(x))`` where the backbone returns ``(N, feature_dim)`` features.

    While the backbone is frozen (:func:`freeze_backbone`), :meth:`train` keeps it in eval
    mode so BatchNorm running statistics and dropout of the feature extractor stay fixed.
    """

    def __init__(
        self, backbone: nn.Module, feature_dim: int, n_outputs: int, head: nn.Linear | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, n_outputs) if head is None else head
        self.backbone_frozen = False
        # What the weights were before any training: "imagenet" or "random" (MLflow param).
        self.weights_used = "random"

    @property
    def n_outputs(self) -> int:
        return self.head.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_outputs: int) -> Classifier:
    """Build ``cfg.arch`` for inputs of ``input_shape`` (no batch dim) and ``n_outputs`` logits.

    ``input_shape`` is ``(features,)`` for tabular data, ``(C, H, W)`` for images, ``(C, T)``
    for series or ``(C, D, H, W)`` for volumes; the perceptron and MLP flatten any input. A
    user's model may lack the backbone/head split (medflow.ml.user_model.WholeModel: scratch
    only, see :func:`has_head_split`).
    """
    input_shape = tuple(int(s) for s in input_shape)
    if not input_shape or any(s < 1 for s in input_shape):
        raise ValueError(f"input_shape must be non-empty and positive, got {input_shape}")
    if n_outputs < 1:
        raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
    if ":" in cfg.arch:  # an import path (the schema allows ":" nowhere else)
        from medflow.ml.user_model import build_user_model

        model = build_user_model(cfg.arch, cfg.options, cfg.activation, input_shape, n_outputs)
        return model  # type: ignore[return-value]  # a WholeModel has no head split
    if cfg.arch == "perceptron":
        backbone, feature_dim = nn.Flatten(), math.prod(input_shape)
    elif cfg.arch == "mlp":
        backbone, feature_dim = _mlp_backbone(cfg, math.prod(input_shape))
    elif cfg.arch == "cnn":
        backbone, feature_dim = _cnn_backbone(cfg, _image_shape(cfg.arch, input_shape))
    elif cfg.arch in SEQUENCE_ARCHS:
        from medflow.ml.sequence_models import sequence_backbone

        backbone, feature_dim = sequence_backbone(cfg, input_shape)
    elif cfg.arch in VOLUME_ARCHS:
        from medflow.ml.volume_models import volume_backbone

        backbone, feature_dim = volume_backbone(cfg, input_shape)
    else:
        net, weights_used = _resnet(cfg)
        backbone, feature_dim = _resnet_backbone(cfg, net, _image_shape(cfg.arch, input_shape))
        model = Classifier(backbone, feature_dim, n_outputs)
        model.weights_used = weights_used
        return model
    return Classifier(backbone, feature_dim, n_outputs)


def has_head_split(model: nn.Module) -> bool:
    """Whether ``model`` has the replaceable head finetune and linear_probe need."""
    return isinstance(model, Classifier)


def _image_shape(arch: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"arch {arch!r} needs image inputs (C, H, W), got {input_shape}")
    c, h, w = input_shape
    return c, h, w


def _mlp_backbone(cfg: ModelConfig, in_features: int) -> tuple[nn.Module, int]:
    # Named layers keep state_dict keys independent of whether dropout is used.
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width = in_features
    for i, hidden in enumerate(cfg.hidden_sizes):
        layers[f"fc{i}"] = nn.Linear(width, hidden)
        layers[f"act{i}"] = make_activation(cfg.activation)
        if cfg.dropout > 0:
            layers[f"drop{i}"] = nn.Dropout(cfg.dropout)
        width = hidden
    return nn.Sequential(layers), width


def _cnn_backbone(cfg: ModelConfig, shape: tuple[int, int, int]) -> tuple[nn.Module, int]:
    channels, size = shape[0], min(shape[1:])
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(cfg.depth):
        out = cfg.width * 2**i
        # No conv bias: the following BatchNorm has its own shift.
        layers[f"conv{i}"] = nn.Conv2d(channels, out, 3, padding=1, bias=False)
        layers[f"bn{i}"] = nn.BatchNorm2d(out)
        layers[f"act{i}"] = make_activation(cfg.activation)
        if size >= _MIN_POOL_PX:
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            size //= 2
        channels = out
    layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    if cfg.dropout > 0:
        layers["dropout"] = nn.Dropout(cfg.dropout)
    return nn.Sequential(layers), channels


def imagenet_weights_path(arch: str) -> Path:
    """Where torch hub caches the ImageNet checkpoint of torchvision ``arch``."""
    import torchvision

    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _load_imagenet_weights(net: nn.Module, arch: str) -> None:
    path = imagenet_weights_path(arch)
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for {arch} not found at {path}; medflow does not download "
            "weights unless asked, put the file in the torch hub cache first"
        )
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _resnet(cfg: ModelConfig) -> tuple[nn.Module, str]:
    """The torchvision model with the weights ``cfg.weights`` asks for, and which were used."""
    import torchvision

    net = torchvision.models.get_model(cfg.arch, weights=None)
    if cfg.weights == "imagenet_if_cached" and not imagenet_weights_path(cfg.arch).is_file():
        log.warning(
            "model.weights imagenet_if_cached: no ImageNet weights for %s at %s; "
            "random initialisation (nothing is downloaded)",
            cfg.arch,
            imagenet_weights_path(cfg.arch),
        )
        return net, "random"
    if cfg.weights in ("imagenet", "imagenet_if_cached"):
        _load_imagenet_weights(net, cfg.arch)
        return net, "imagenet"
    return net, "random"


def _resnet_backbone(
    cfg: ModelConfig, net: nn.Module, shape: tuple[int, int, int]
) -> tuple[nn.Module, int]:
    in_channels, size = shape[0], min(shape[1:])
    if size < SMALL_INPUT_PX:
        net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 3, 1, 1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = _adapt_stem_channels(net.conv1, in_channels)
    _replace_relus(net, cfg.activation)
    feature_dim = net.fc.in_features
    layers = OrderedDict((name, module) for name, module in net.named_children() if name != "fc")
    layers["flatten"] = nn.Flatten()
    if cfg.dropout > 0:
        layers["dropout"] = nn.Dropout(cfg.dropout)
    return nn.Sequential(layers), feature_dim


def _adapt_stem_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Copy of the 7x7 stem conv for ``in_channels`` inputs, reusing its RGB filters.

    One channel gets the RGB mean times 3 (i.e. the sum), so a grey image gives the same
    response as that image replicated to RGB; other counts tile the RGB filters, scaled by
    3 / in_channels to keep the activation scale. Without pretrained weights this merely
    derives the new filters from the random ones, which is as good an init as any.
    """
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        rgb = conv.weight
        if in_channels == 1:
            new.weight.copy_(rgb.mean(dim=1, keepdim=True) * 3)
        else:
            repeats = math.ceil(in_channels / rgb.shape[1])
            new.weight.copy_(rgb.repeat(1, repeats, 1, 1)[:, :in_channels] * 3 / in_channels)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _replace_relus(module: nn.Module, activation: str) -> None:
    """Swap every nn.ReLU below ``module`` for a new ``activation`` module, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, make_activation(activation))
        else:
            _replace_relus(child, activation)


def replace_head(model: Classifier, n_outputs: int) -> None:
    """Give ``model`` a freshly initialised head with ``n_outputs`` logits."""
    _require_split(model)
    old = model.head
    model.head = nn.Linear(model.feature_dim, n_outputs).to(
        device=old.weight.device, dtype=old.weight.dtype
    )


def freeze_backbone(model: Classifier) -> None:
    """Stop training the backbone: no gradients, BatchNorm/dropout kept in eval mode."""
    _require_split(model)
    model.backbone.requires_grad_(False)
    model.backbone_frozen = True
    model.train(model.training)  # re-applies the mode so the backbone switches to eval


def unfreeze_backbone(model: Classifier) -> None:
    """Undo :func:`freeze_backbone`; the backbone follows the model's train/eval mode again."""
    model.backbone.requires_grad_(True)
    model.backbone_frozen = False
    model.train(model.training)


def _require_split(model: nn.Module) -> None:
    if not has_head_split(model):
        raise ConfigError(
            "model.arch: this model has no backbone/head split; give it an nn.Linear "
            "attribute head applied last in forward, or return a medflow Classifier"
        )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
