"""Transfer learning: self-describing model files and the three refine modes.

A model file holds the state dict plus what is needed to rebuild the module
(architecture config, input shape, outputs), so it loads with
``torch.load(weights_only=True)`` and no pickled code. A user's model is stored as its
import path and options (``model_config``) and rebuilt by calling its factory again.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any, Literal

import torch

from medflow.config.schema import defaults
from medflow.errors import ConfigError, MedflowError
from medflow.ml.models import (
    Classifier,
    ModelConfig,
    build_model,
    freeze_backbone,
    has_head_split,
    replace_head,
)
from medflow.ml.torch_files import load_weights_file
from medflow.runtime.io import atomic_write_bytes

Mode = Literal["finetune", "linear_probe", "scratch"]
MODES: tuple[Mode, ...] = ("finetune", "linear_probe", "scratch")


def save_model_file(
    path: Path, model: Classifier, cfg: ModelConfig, input_shape: tuple[int, ...], **extra: Any
) -> None:
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": dataclasses.asdict(cfg),
        "input_shape": list(input_shape),
        "n_outputs": model.n_outputs,
        "weights_used": model.weights_used,
        **extra,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_model_file(path: Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the model saved at ``path``; returns it (eval mode) and the payload."""
    try:
        payload = load_weights_file(
            path, f"delete {Path(path).parent} and run the job that wrote it again"
        )
    except FileNotFoundError:
        raise MedflowError(f"model file not found: {path}") from None
    # Keys added to the schema since the file was written take their defaults. The saved
    # state dict replaces every weight, so no ImageNet file is read (or warned about) again.
    section = {**defaults("model"), **payload["model_config"], "weights": None}
    cfg = ModelConfig.from_section(section)
    model = build_model(cfg, tuple(payload["input_shape"]), payload["n_outputs"])
    model.load_state_dict(payload["state_dict"])
    model.weights_used = payload.get("weights_used", "random")
    model.eval()
    return model, payload


def initial_model(
    mode: Mode,
    cfg: ModelConfig,
    input_shape: tuple[int, ...],
    n_outputs: int,
    pretrained: Path | None,
    seed: int,
) -> Classifier:
    """The model a refine run or trial starts from.

    finetune: pretrained backbone, new head, all trainable; linear_probe: the same with
    the backbone frozen; scratch: a fresh model with the same architecture.
    """
    torch.manual_seed(seed)  # the new head (or whole model) is initialised from the seed
    if mode == "scratch":
        return build_model(cfg, input_shape, n_outputs)
    if pretrained is None:
        raise MedflowError(f"mode {mode} needs a pretrained backbone, and none was given")
    model, payload = load_model_file(pretrained)
    if not has_head_split(model):
        raise ConfigError(
            f"model.arch: {cfg.arch!r} has no backbone/head split, which mode {mode} needs "
            "(README: Your own model): give it an nn.Linear attribute head applied last in "
            "forward, or return medflow.ml.models.Classifier(backbone, feature_dim, n_outputs)"
        )
    if tuple(payload["input_shape"]) != tuple(input_shape):
        raise MedflowError(
            f"pretrained backbone {pretrained} expects inputs {tuple(payload['input_shape'])}, "
            f"but the target data are {tuple(input_shape)}; prepare the source at the target's size"
        )
    if payload["model_config"]["activation"] != cfg.activation:
        raise MedflowError(
            f"pretrained backbone {pretrained} uses activation "
            f"{payload['model_config']['activation']}, not {cfg.activation}"
        )
    replace_head(model, n_outputs)
    model.train()
    if mode == "linear_probe":
        freeze_backbone(model)
    return model


def check_transferable(cfg: ModelConfig, input_shape: tuple[int, ...], n_outputs: int) -> None:
    """Refuse, before pretraining, a user's model that finetune and linear_probe could not
    use (built-in archs always split); building it also surfaces every model.arch error."""
    if ":" not in cfg.arch:
        return
    if not has_head_split(build_model(cfg, input_shape, n_outputs)):
        raise ConfigError(
            f"model.arch: {cfg.arch!r} has no backbone/head split, which pretraining (for "
            "finetune and linear_probe) needs (README: Your own model): give it an nn.Linear "
            "attribute head applied last in forward, or return a medflow Classifier"
        )
