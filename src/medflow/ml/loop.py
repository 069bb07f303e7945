"""The training loop: ``train(cfg, data, tracker) -> Result``.

Design points:
- Data that fit in device memory are held there and batched by index with a
  permutation seeded by (seed, epoch): no DataLoader, no per-sample Python. Larger
  data stream through a DataLoader.
- Validation every epoch, early stopping on ``monitor``; the returned model is the
  best epoch's, not the last.
- A checkpoint is written atomically after every epoch; a run started again with the
  same config resumes from it and ends exactly as an uninterrupted run (CPU), because
  the shuffle depends only on (seed, epoch) and the global RNG state is saved too.
- A NaN or infinite loss ends the run with status "diverged" instead of an exception.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from medflow.config.strict import reject_unknown_keys
from medflow.data.format import PreparedDataset
from medflow.ml.models import Classifier, ModelConfig, build_model
from medflow.ml.monitor import MINIMISED
from medflow.ml.optim import (
    OptimConfig,
    build_loss,
    build_optimizer,
    build_scheduler,
    n_outputs_for,
    predict_scores,
)
from medflow.stats.metrics import compute_metrics

log = logging.getLogger(__name__)

Status = Literal["finished", "diverged"]


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings; the model and optimiser have their own configs."""

    epochs: int = 30
    batch_size: int = 64
    patience: int = 10  # epochs without improvement before stopping; 0 disables
    monitor: str = "val_loss"  # val_loss, val_accuracy, val_auc, val_f1, ...
    seed: int = 0
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    loss: str = "auto"  # or squared_error (the lecture's)
    augment: str = "none"  # none | flip | noise, applied to whole batches
    resident_max_mb: int = 2048  # larger data stream through a DataLoader
    amp: bool = True  # bf16 autocast (and channels_last) on CUDA

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 0:
            raise ValueError("epochs and batch_size must be >= 1, patience >= 0")
        if self.augment not in ("none", "flip", "noise"):
            raise ValueError(f"augment must be none, flip or noise, not {self.augment!r}")
        if not self.monitor.startswith("val_"):
            raise ValueError(f"monitor must be a validation metric (val_*), not {self.monitor!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        reject_unknown_keys(cls, d)
        return cls(**d)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run."""

    model: ModelConfig
    optim: OptimConfig
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": dataclasses.asdict(self.model),
            "optim": dataclasses.asdict(self.optim),
            "train": dataclasses.asdict(self.train),
        }

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class TrainData:
    """Normalised train and validation tensors (CPU). The test split is never here."""

    task: str
    n_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    dataset_hash: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.x_train, self.x_val))

    @classmethod
    def from_prepared(cls, ds: PreparedDataset) -> TrainData:
        train, val = ds.load("train"), ds.load("val")
        return cls(
            task=ds.meta["task"],
            n_classes=ds.meta["n_classes"],
            x_train=torch.from_numpy(ds.normalise(train.x)),
            y_train=torch.from_numpy(train.y),
            x_val=torch.from_numpy(ds.normalise(val.x)),
            y_val=torch.from_numpy(val.y),
            dataset_hash=ds.content_hash,
        )


class EpochTracker(Protocol):
    """Receives each epoch's metrics (an MLflow run, an Optuna trial, a progress bar)."""

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...


@dataclass
class Result:
    status: Status
    monitor: str
    best_value: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]]
    model: Classifier
    reason: str | None = None
    train_seconds: float = 0.0

    @property
    def best_metrics(self) -> dict[str, float]:
        return self.history[self.best_epoch - 1] if self.best_epoch else {}


@dataclass
class _State:
    """What a checkpoint restores."""

    epoch: int = 0
    best_value: float = math.nan
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch ops on ``n`` intra-op threads, restoring the caller's setting afterwards.

    Tiny models (the lecture's XOR MLP, test models) run faster on one thread: thread
    hand-offs cost more than their arithmetic, and collapse when the machine is busy.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _improved(monitor: str, value: float, best: float) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value < best if monitor in MINIMISED else value > best


def _epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    # Depends only on (seed, epoch), so a resumed run shuffles exactly as an uninterrupted one.
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen).to(device)


def _augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    if kind == "none" or x.dim() != 4:
        return x
    if kind == "flip":
        flip = torch.rand(x.shape[0], generator=gen, device=gen.device) < 0.5
        return torch.where(flip[:, None, None, None], x.flip(-1), x)
    noise = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype)
    return x + 0.1 * noise


class _Batches:
    """Index batches over device-resident tensors, or a DataLoader for large data."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.resident = x.element_size() * x.nelement() <= cfg.resident_max_mb * 2**20
        if self.resident:
            self.x, self.y = x.to(device), y.to(device)
        else:
            self.x, self.y = x, y
            log.info(
                "data exceed resident_max_mb=%d: streaming through a DataLoader",
                cfg.resident_max_mb,
            )

    def epoch(self, epoch: int):
        n, bs = len(self.y), self.cfg.batch_size
        if self.resident:
            order = _epoch_permutation(n, self.cfg.seed, epoch, self.device)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                # index_select: a plain row gather, ~3x faster on CPU than x[idx] indexing.
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)
            return
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(self.x, self.y),
            batch_size=bs,
            shuffle=True,
            generator=gen,
            pin_memory=self.device.type == "cuda",
        )
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)


def _targets(task: str, y: torch.Tensor) -> torch.Tensor:
    return y.float() if task in ("multilabel", "regression") else y


@torch.no_grad()
def evaluate_scores(
    model: nn.Module, x: torch.Tensor, task: str, device: torch.device, batch: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and scores for ``x`` in eval mode (CPU tensors out)."""
    model.eval()
    logits = []
    for start in range(0, len(x), batch):
        xb = x[start : start + batch].to(device)
        with _autocast(device, True):
            logits.append(model(xb).float().cpu())
    out = torch.cat(logits)
    return out, predict_scores(task, out)


def use_channels_last(
    model: nn.Module, device: torch.device, cfg: TrainConfig, input_shape: tuple[int, ...]
) -> bool:
    """Train images in channels_last: with bf16 on CUDA, and on CPU for models with convs.

    On CPU, oneDNN's channels_last convolution, batch norm and max-pool kernels made a
    small CNN's training step ~1.6x faster at 28x28 (bench.data_path); models without
    convolutions gain nothing.
    """
    if len(input_shape) != 3:
        return False
    if device.type == "cuda":
        return cfg.amp
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"
    )


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _checkpoint_payload(run: RunConfig, model, optimizer, scheduler, state: _State) -> dict:
    return {
        "config": run.to_dict(),
        "config_digest": run.digest(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "epoch": state.epoch,
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "best_state": state.best_state,
        "history": state.history,
        "train_seconds": state.train_seconds,
    }


def _resume(path: Path, run: RunConfig, model, optimizer, scheduler) -> _State:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("config_digest") != run.digest():
        log.warning("checkpoint %s belongs to another config; starting afresh", path)
        return _State()
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    log.info("resuming from %s after epoch %d", path, payload["epoch"])
    return _State(
        epoch=payload["epoch"],
        best_value=payload["best_value"],
        best_epoch=payload["best_epoch"],
        bad_epochs=payload["bad_epochs"],
        best_state=payload["best_state"],
        history=payload["history"],
        train_seconds=payload["train_seconds"],
    )


def _validation_metrics(model, data: TrainData, loss_fn, device, task: str) -> dict[str, float]:
    logits, scores = evaluate_scores(model, data.x_val, task, device)
    val_loss = float(loss_fn(logits, _targets(task, data.y_val)))
    metrics = compute_metrics(task, data.y_val.numpy(), scores.numpy())
    return {"val_loss": val_loss, **{f"val_{k}": v for k, v in metrics.items()}}


def train(
    run: RunConfig,
    data: TrainData,
    tracker: EpochTracker | None = None,
    *,
    model: Classifier | None = None,
    checkpoint: Path | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> Result:
    """Train ``model`` (or a fresh, seeded one built from ``run.model``) on ``data``.

    ``on_epoch`` may raise to stop early (e.g. optuna.TrialPruned); the checkpoint of the
    finished epoch is already on disk by then.
    """
    cfg = run.train
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    if model is None:
        model = build_model(run.model, data.input_shape, n_outputs_for(data.task, data.n_classes))
    model.to(device)
    channels_last = use_channels_last(model, device, cfg, data.input_shape)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(run.optim, params)
    scheduler = build_scheduler(optimizer, run.optim, cfg.epochs)
    loss_fn = build_loss(data.task, cfg.loss)
    state = _State()
    if checkpoint is not None and checkpoint.exists():
        state = _resume(checkpoint, run, model, optimizer, scheduler)
    batches = _Batches(data.x_train, _targets(data.task, data.y_train), cfg, device)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 17)
    status: Status = "finished"
    reason = None

    while state.epoch < cfg.epochs and not (cfg.patience and state.bad_epochs >= cfg.patience):
        epoch = state.epoch + 1
        aug_gen.manual_seed(cfg.seed * 7919 + epoch)
        started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for xb, yb in batches.epoch(epoch):
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            xb = _augment(xb, cfg.augment, aug_gen)
            with _autocast(device, cfg.amp):
                loss = loss_fn(model(xb).float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(yb)
            seen += len(yb)
        train_loss = float(loss_sum) / seen  # one device sync per epoch
        if not math.isfinite(train_loss):
            status, reason = "diverged", f"training loss became {train_loss} in epoch {epoch}"
            log.warning("run diverged: %s", reason)
            break
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        metrics = {
            "train_loss": train_loss,
            **_validation_metrics(model, data, loss_fn, device, data.task),
        }
        elapsed = time.perf_counter() - started
        metrics.update(lr=lr, epoch_time_s=elapsed, samples_per_s=seen / elapsed)
        state.epoch = epoch
        state.train_seconds += elapsed
        state.history.append(metrics)
        value = metrics.get(cfg.monitor, math.nan)
        if _improved(cfg.monitor, value, state.best_value):
            state.best_value, state.best_epoch, state.bad_epochs = value, epoch, 0
            state.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state.bad_epochs += 1
        if checkpoint is not None:
            _save_checkpoint(
                checkpoint, _checkpoint_payload(run, model, optimizer, scheduler, state)
            )
        if tracker is not None:
            tracker.log_epoch(epoch, metrics)
        log.debug(  # the progress record (logger medflow.progress) is the per-epoch line
            "epoch %d/%d train_loss %.4f %s %.4f (%.2fs)",
            epoch,
            cfg.epochs,
            train_loss,
            cfg.monitor,
            value,
            elapsed,
        )
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.to("cpu")
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    if status == "finished" and state.best_epoch == 0:
        status, reason = "diverged", f"{cfg.monitor} was never a number"
    return Result(
        status=status,
        monitor=cfg.monitor,
        best_value=state.best_value,
        best_epoch=state.best_epoch,
        epochs_run=state.epoch,
        history=state.history,
        model=model,
        reason=reason,
        train_seconds=state.train_seconds,
    )
