"""Your own model: ``model.arch: "package.module:factory"`` resolved by import path.

medflow calls ``factory(input_shape, n_outputs, **model.options)`` (plus
``activation=<name>`` when the factory has a parameter called ``activation``) and checks the
result on a batch of two zero inputs. What the factory may return:

- a :class:`~medflow.ml.models.Classifier` (``backbone`` giving ``(N, feature_dim)``
  features, then a linear ``head``): used as it is;
- any ``nn.Module`` with an ``nn.Linear`` attribute ``head`` (or ``fc``, as torchvision
  names it) that its ``forward`` applies last: medflow takes that layer as the head and the
  module, with the layer replaced by ``nn.Identity``, as the backbone;
- any other ``nn.Module`` mapping ``(N, *input_shape)`` to ``(N, n_outputs)`` logits: it
  trains from scratch, but finetune and linear_probe (which replace the head and freeze
  the backbone) refuse it.

Every problem is one ConfigError naming ``model.arch``, raised when the model is built.
"""

from __future__ import annotations

import inspect
import logging
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from medflow.errors import ConfigError
from medflow.ml.models import Classifier

log = logging.getLogger(__name__)

# Attributes taken as the replaceable head, in this order.
HEAD_NAMES = ("head", "fc")
# Arguments medflow passes itself; options may not set them.
_RESERVED = ("input_shape", "n_outputs", "activation")
_PROBE_BATCH = 2


class WholeModel(nn.Module):
    """A user's model without a backbone/head split: trains from scratch only.

    ``backbone`` is the whole module (what the first-layer analysis looks into).
    """

    def __init__(self, net: nn.Module, n_outputs: int) -> None:
        super().__init__()
        self.net = net
        self.n_outputs = n_outputs
        self.backbone_frozen = False
        self.weights_used = "random"

    @property
    def backbone(self) -> nn.Module:
        return self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def is_user_arch(arch: str) -> bool:
    """An import path (the schema allows ``:`` only there), not a built-in name."""
    return ":" in arch


def resolve_factory(arch: str) -> Callable[..., Any]:
    """The callable ``arch`` names; importing it runs the user's module (no eval)."""
    try:
        factory = pkgutil.resolve_name(arch)
    except Exception as exc:  # ImportError, AttributeError, or whatever the module raised
        raise ConfigError(f"model.arch: cannot import {arch!r}: {_one_line(exc)}") from None
    if not callable(factory):
        raise ConfigError(
            f"model.arch: {arch!r} is a {type(factory).__name__}, not a callable factory"
        )
    return factory


def takes_activation(factory: Callable[..., Any]) -> bool:
    try:
        return "activation" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def build_user_model(
    arch: str,
    options: Mapping[str, Any],
    activation: str,
    input_shape: tuple[int, ...],
    n_outputs: int,
) -> Classifier | WholeModel:
    """Build, check and (where the protocol allows) split the user's model."""
    reserved = sorted(set(options) & set(_RESERVED))
    if reserved:
        raise ConfigError(
            f"model.options.{reserved[0]}: medflow passes {reserved[0]} to {arch!r} itself; "
            "remove it from options (the activation is model.activation or the sweep's)"
        )
    factory = resolve_factory(arch)
    kwargs = dict(options)
    if takes_activation(factory):
        kwargs["activation"] = activation
    else:
        log.warning(
            "model.arch %s takes no activation argument, so the activation (%s) is not "
            "applied; list one activation in space.activations to avoid identical runs",
            arch,
            activation,
        )
    try:
        net = factory(tuple(input_shape), n_outputs, **kwargs)
    except Exception as exc:
        raise ConfigError(
            f"model.arch: {arch!r} raised {_one_line(exc)} when called with "
            f"input_shape={tuple(input_shape)}, n_outputs={n_outputs}, options={dict(options)}"
        ) from None
    if not isinstance(net, nn.Module):
        raise ConfigError(
            f"model.arch: {arch!r} returned a {type(net).__name__}, not a torch.nn.Module"
        )
    _check_outputs(arch, net, input_shape, n_outputs)
    if isinstance(net, Classifier):
        return net
    model = _split(arch, net, input_shape)
    if model is None:
        log.info(
            "model.arch %s has no head attribute (nn.Linear head or fc): it trains from "
            "scratch only, not in finetune or linear_probe",
            arch,
        )
        return WholeModel(net, n_outputs)
    return model


def _probe(net: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """The module's output for a zero batch, in eval mode, without gradients."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return net(torch.zeros((_PROBE_BATCH, *input_shape)))
    finally:
        net.train(was_training)


def _check_outputs(arch: str, net: nn.Module, input_shape: tuple[int, ...], n_outputs: int) -> None:
    try:
        out = _probe(net, input_shape)
    except Exception as exc:
        raise ConfigError(
            f"model.arch: {arch!r} fails on a batch of inputs of shape "
            f"{(_PROBE_BATCH, *input_shape)}: {_one_line(exc)}"
        ) from None
    expected = (_PROBE_BATCH, n_outputs)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != expected:
        raise ConfigError(
            f"model.arch: {arch!r} returns outputs of shape {shape} for inputs of shape "
            f"{(_PROBE_BATCH, *input_shape)}, but the task needs {expected} "
            f"(one logit per output, n_outputs={n_outputs})"
        )


def _split(arch: str, net: nn.Module, input_shape: tuple[int, ...]) -> Classifier | None:
    """A Classifier around ``net``'s own head layer, or None if it has none."""
    name = next((n for n in HEAD_NAMES if isinstance(getattr(net, n, None), nn.Linear)), None)
    if name is None:
        return None
    head: nn.Linear = getattr(net, name)
    setattr(net, name, nn.Identity())
    features = _probe(net, input_shape)
    if tuple(features.shape) != (_PROBE_BATCH, head.in_features):
        raise ConfigError(
            f"model.arch: {arch!r} has an nn.Linear {name!r}, but without it the model "
            f"returns {tuple(features.shape)}, not the head's input "
            f"{(_PROBE_BATCH, head.in_features)}; forward must end with self.{name}(features)"
        )
    return Classifier(net, head.in_features, head.out_features, head=head)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
