"""Tests for medflow.ml.optim: optimisers converge and schedules follow their formulas."""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler

from medflow.config.schema import defaults
from medflow.errors import ConfigError
from medflow.ml.optim import OPTIMIZERS, OptimConfig, build_optimizer, build_scheduler
from medflow.ml.task import build_loss

# --- optimisers ----------------------------------------------------------------------------

# A learning rate per optimiser that makes clear progress in 50 full-batch steps.
LRS = {
    "sgd": 1.0,
    "momentum": 0.1,
    "nesterov": 0.1,
    "adagrad": 0.3,
    "rmsprop": 0.01,
    "adam": 0.1,
    "adamw": 0.1,
}


def _separable_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x @ torch.randn(5, generator=g) > 0).long()
    return x, y


def test_every_optimizer_has_a_tested_lr() -> None:
    assert set(LRS) == set(OPTIMIZERS)


@pytest.mark.parametrize("name", sorted(LRS))
def test_optimizer_halves_logistic_loss(name: str) -> None:
    torch.manual_seed(0)
    x, y = _separable_data()
    w = torch.zeros(5, 1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = build_optimizer(
        OptimConfig.from_schema(name=name, lr=LRS[name], weight_decay=1e-4), [w, b]
    )
    loss_fn = build_loss("binary")
    initial = loss_fn(x @ w + b, y).item()
    assert initial == pytest.approx(math.log(2))
    for _ in range(50):
        opt.zero_grad()
        loss_fn(x @ w + b, y).backward()
        opt.step()
    assert loss_fn(x @ w + b, y).item() < 0.5 * initial


@pytest.mark.parametrize(
    ("name", "cls", "momentum", "nesterov"),
    [
        ("sgd", torch.optim.SGD, 0.0, False),
        ("momentum", torch.optim.SGD, 0.8, False),
        ("nesterov", torch.optim.SGD, 0.8, True),
        ("rmsprop", torch.optim.RMSprop, 0.8, None),
        ("adagrad", torch.optim.Adagrad, None, None),
        ("adam", torch.optim.Adam, None, None),
        ("adamw", torch.optim.AdamW, None, None),
    ],
)
def test_optimizer_settings(
    name: str, cls: type, momentum: float | None, nesterov: bool | None
) -> None:
    cfg = OptimConfig.from_schema(name=name, lr=0.05, weight_decay=0.01, momentum=0.8)
    opt = build_optimizer(cfg, [torch.zeros(2, requires_grad=True)])
    group = opt.param_groups[0]
    assert type(opt) is cls
    assert (group["lr"], group["weight_decay"]) == (0.05, 0.01)
    if momentum is not None:
        assert group["momentum"] == momentum
    if nesterov is not None:
        assert group["nesterov"] is nesterov


def test_unknown_optimizer_is_rejected_with_known_names() -> None:
    with pytest.raises(ConfigError, match=r"name: 'lbfgs' is not one of: sgd.*adamw"):
        OptimConfig.from_schema(name="lbfgs")
    unknown = dataclasses.replace(OptimConfig.from_schema(), name="lbfgs")
    with pytest.raises(ValueError, match=r"unknown optimizer 'lbfgs'.*sgd.*adamw"):
        build_optimizer(unknown, [torch.zeros(1, requires_grad=True)])


def test_optim_config_from_schema() -> None:
    cfg = OptimConfig.from_schema(name="adamw", lr=3e-4)
    assert cfg == OptimConfig.from_section({**defaults("optim"), "name": "adamw", "lr": 3e-4})
    with pytest.raises(TypeError, match=r"unknown keys \['betas', 'lr_max'\]"):
        OptimConfig.from_schema(lr_max=1.0, betas=[0.9, 0.99])


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": 0.0}, {"momentum": 1.0}, {"gamma": 0.0}, {"warmup_epochs": -1}, {"step_size": 0}],
)
def test_invalid_optim_values_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        OptimConfig.from_schema(**kwargs)


# --- schedules -----------------------------------------------------------------------------


def _make(cfg: OptimConfig, epochs: int) -> tuple[torch.optim.Optimizer, LRScheduler]:
    opt = build_optimizer(cfg, [torch.zeros(1, requires_grad=True)])
    return opt, build_scheduler(opt, cfg, epochs)


def _lrs(opt: torch.optim.Optimizer, sched: LRScheduler, epochs: int) -> list[float]:
    """The lr used in each epoch, stepping the scheduler once per epoch."""
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_constant_schedule() -> None:
    cfg = OptimConfig.from_schema(name="sgd", lr=0.5, schedule="constant")
    assert _lrs(*_make(cfg, 5), 5) == pytest.approx([0.5] * 5)


def test_warmup_rises_linearly_then_holds() -> None:
    cfg = OptimConfig.from_schema(name="sgd", lr=1.0, warmup_epochs=3, schedule="constant")
    assert _lrs(*_make(cfg, 6), 6) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_cosine_anneals_to_zero() -> None:
    epochs = 10
    cfg = OptimConfig.from_schema(name="sgd", lr=1.0, schedule="cosine")
    opt, sched = _make(cfg, epochs)
    expected = [0.5 * (1 + math.cos(math.pi * e / epochs)) for e in range(epochs)]
    assert _lrs(opt, sched, epochs) == pytest.approx(expected)
    assert expected[-1] < 0.03
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_cosine_after_warmup() -> None:
    epochs, warmup = 10, 2
    cfg = OptimConfig.from_schema(name="sgd", lr=1.0, schedule="cosine", warmup_epochs=warmup)
    lrs = _lrs(*_make(cfg, epochs), epochs)
    cosine = [0.5 * (1 + math.cos(math.pi * k / (epochs - warmup))) for k in range(8)]
    assert lrs == pytest.approx([1 / 3, 2 / 3, *cosine])


def test_step_schedule_drops_by_gamma() -> None:
    cfg = OptimConfig.from_schema(name="sgd", lr=1.0, schedule="step", step_size=3, gamma=0.1)
    expected = [1.0] * 3 + [0.1] * 3 + [0.01] * 2
    assert _lrs(*_make(cfg, 8), 8) == pytest.approx(expected)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
@pytest.mark.parametrize("warmup", [0, 2])
@pytest.mark.parametrize("resume_at", [1, 4])
def test_schedule_resumes_from_state_dict(schedule: str, warmup: int, resume_at: int) -> None:
    epochs = 9
    cfg = OptimConfig.from_schema(
        name="momentum", lr=0.2, schedule=schedule, warmup_epochs=warmup, step_size=2, gamma=0.5
    )
    opt, sched = _make(cfg, epochs)
    _lrs(opt, sched, resume_at)
    # Round-trip through bytes the way a checkpoint would, with the safe loader.
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    reference = _lrs(opt, sched, epochs - resume_at)

    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2, sched2 = _make(cfg, epochs)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    resumed = _lrs(opt2, sched2, epochs - resume_at)
    assert resumed == pytest.approx(reference)
    assert len(set(reference)) > 1 or schedule == "constant"  # the comparison is not vacuous


def test_unknown_schedule_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"schedule: 'linear' is not one of: constant, cosine"):
        OptimConfig.from_schema(schedule="linear")
    cfg = dataclasses.replace(OptimConfig.from_schema(), schedule="linear")
    opt = build_optimizer(cfg, [torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match=r"unknown schedule 'linear'.*cosine"):
        build_scheduler(opt, cfg, 3)


def test_scheduler_needs_epochs() -> None:
    opt = build_optimizer(OptimConfig.from_schema(), [torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match="epochs"):
        build_scheduler(opt, OptimConfig.from_schema(schedule="cosine"), 0)
