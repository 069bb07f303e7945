"""The training loop: ``train(cfg, data, tracker) -> Result``.

Design points:
- Data that fit in device memory are held there and batched by index with a
  permutation seeded by (seed, epoch) (:mod:`medflow.ml.batches`). Larger data stream
  through a DataLoader. ``train.sampler: balanced`` replaces the permutation with seeded
  draws inverse to class frequency; ``train.class_weight: balanced`` weights the training
  loss (:mod:`medflow.ml.imbalance`), never ``val_loss``.
- Validation every epoch, early stopping on ``monitor``; the returned model is the
  best epoch's, not the last.
- A checkpoint is written atomically after every epoch (:mod:`medflow.ml.checkpoint`); a
  run started again with the same config resumes from it and ends exactly as an
  uninterrupted run (CPU).
- A NaN or infinite loss ends the run with status "diverged" instead of an exception.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from medflow.config.section import Section
from medflow.data.format import PreparedDataset
from medflow.errors import MedflowError
from medflow.ml.batches import Batches, augment
from medflow.ml.checkpoint import TrainState, resume, save_checkpoint
from medflow.ml.device import autocast, memory_format, pick_device, use_bf16, use_channels_last
from medflow.ml.imbalance import loss_weights, sample_weights
from medflow.ml.models import Classifier, ModelConfig, build_model
from medflow.ml.monitor import MINIMISED
from medflow.ml.optim import OptimConfig, build_optimizer, build_scheduler
from medflow.ml.task import LossFn, build_loss, loss_targets, n_outputs_for, predict_scores
from medflow.runtime.digest import config_hash
from medflow.stats.counted import plain_metrics

log = logging.getLogger(__name__)

Status = Literal["finished", "diverged"]
# Input values per evaluation batch: 1024 28x28 images, 190 28^3 or 16 64^3 volumes.
EVAL_BATCH_VALUES = 1 << 22


@dataclass(frozen=True)
class TrainConfig(Section):
    """Loop settings: the study's ``train`` section (schema ``$defs/train``, which documents
    each field) plus ``seed``, which the stage sets (the sweep's seed or a refine seed)."""

    SCHEMA: ClassVar[str] = "train"

    epochs: int
    batch_size: int
    patience: int  # epochs without improvement before stopping; 0 disables
    monitor: str
    seed: int
    device: str
    loss: str
    augment: str
    resident_max_mb: int
    amp: bool | str  # auto | true | false (medflow.ml.device.use_bf16)
    class_weight: str  # none | balanced (medflow.ml.imbalance)
    sampler: str  # uniform | balanced


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
        """The ``config_hash`` tag of the run: a checkpoint resumes only under the same one."""
        return config_hash(self.to_dict())


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
        # Read straight into float32: no raw copy of the split beside it (64^3 volumes).
        (x_train, train), (x_val, val) = ds.load_normalised("train"), ds.load_normalised("val")
        return cls(
            task=ds.meta["task"],
            n_classes=ds.meta["n_classes"],
            x_train=torch.from_numpy(x_train),
            y_train=torch.from_numpy(train.y),
            x_val=torch.from_numpy(x_val),
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
    precision: str = "float32"  # bfloat16 when trained under autocast (train.amp)

    @property
    def best_metrics(self) -> dict[str, float]:
        return self.history[self.best_epoch - 1] if self.best_epoch else {}


def _improved(monitor: str, value: float, best: float) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value < best if monitor in MINIMISED else value > best


@torch.no_grad()
def evaluate_scores(
    model: nn.Module, x: torch.Tensor, task: str, device: torch.device, batch: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and scores for ``x`` in eval mode (CPU tensors out), in batches of at most
    ``batch`` examples and EVAL_BATCH_VALUES input values (so that 64^3 volumes are scored a
    few at a time, not 1024 at once)."""
    model.eval()
    batch = max(1, min(batch, EVAL_BATCH_VALUES // max(math.prod(x.shape[1:]), 1)))
    logits = []
    for start in range(0, len(x), batch):
        xb = x[start : start + batch].to(device)
        # bf16 on CUDA only: on a CPU the scores stay float32, so that ROC curves are not
        # cut into the few hundred distinct values that bf16 logits would give.
        with autocast(device, device.type == "cuda"):
            logits.append(model(xb).float().cpu())
    out = torch.cat(logits)
    return out, predict_scores(task, out)


def validation_metrics(
    model: nn.Module, data: TrainData, loss_fn: LossFn, device: torch.device, task: str
) -> dict[str, float]:
    """val_loss and val_<metric> of compute_metrics on the validation split."""
    logits, scores = evaluate_scores(model, data.x_val, task, device)
    val_loss = float(loss_fn(logits, loss_targets(task, data.y_val)))
    metrics = plain_metrics(task, data.y_val.numpy(), scores.numpy())
    return {"val_loss": val_loss, **{f"val_{k}": v for k, v in metrics.items()}}


@dataclass
class _Fit:
    """What one run trains with: the model on its device and the objects that update it."""

    run: RunConfig
    model: Classifier
    device: torch.device
    bf16: bool  # train.amp resolved for this device and model
    channels_last: bool
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    loss_fn: LossFn  # what training minimises (class-weighted with train.class_weight)
    val_loss_fn: LossFn  # never weighted: val_loss compares runs of any class_weight
    batches: Batches
    aug_gen: torch.Generator
    state: TrainState


def _setup(
    run: RunConfig,
    data: TrainData,
    model: Classifier,
    device: torch.device,
    checkpoint: Path | None,
) -> _Fit:
    """Move ``model`` to ``device``, build its optimiser and schedule, resume if a checkpoint
    of this config exists, and put the training data where the batches come from."""
    cfg = run.train
    model.to(device)
    bf16 = use_bf16(cfg.amp, device, model, data.input_shape, cfg.batch_size)
    channels_last = use_channels_last(model, device, bf16, data.input_shape)
    if channels_last:
        model.to(memory_format=memory_format(data.input_shape))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(run.optim, params)
    scheduler = build_scheduler(optimizer, run.optim, cfg.epochs)
    # Class and sampling weights from the train split only; they change what training
    # minimises, not val_loss, so that a sweep over class_weight ranks trials on one scale.
    weight = loss_weights(data.task, data.y_train, data.n_classes, cfg.class_weight)
    loss_fn = build_loss(data.task, cfg.loss, None if weight is None else weight.to(device))
    val_loss_fn = build_loss(data.task, cfg.loss)
    state = TrainState()
    if checkpoint is not None and checkpoint.exists():
        state = resume(checkpoint, run.digest(), model, optimizer, scheduler)
    batches = Batches(
        data.x_train,
        loss_targets(data.task, data.y_train),
        device,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        resident_max_mb=cfg.resident_max_mb,
        sample_weights=sample_weights(data.task, data.y_train, cfg.sampler),
    )
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 17)
    return _Fit(
        run=run,
        model=model,
        device=device,
        bf16=bf16,
        channels_last=channels_last,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        val_loss_fn=val_loss_fn,
        batches=batches,
        aug_gen=aug_gen,
        state=state,
    )


def _train_epoch(fit: _Fit, epoch: int) -> tuple[float, int]:
    """One pass over the training batches: the mean training loss and the examples seen."""
    cfg = fit.run.train
    fit.aug_gen.manual_seed(cfg.seed * 7919 + epoch)
    fit.model.train()
    losses, sizes = [], []
    for xb, yb in fit.batches.epoch(epoch):
        if fit.channels_last:
            xb = xb.contiguous(memory_format=memory_format(tuple(xb.shape[1:])))
        xb = augment(xb, cfg.augment, fit.aug_gen)
        try:
            with autocast(fit.device, fit.bf16):
                logits = fit.model(xb)
            loss = fit.loss_fn(logits.float(), yb)  # bf16 logits cast; float32 ones as they are
            fit.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            fit.optimizer.step()
        except torch.OutOfMemoryError:
            raise _batch_too_large(fit, xb) from None
        losses.append(loss.detach())
        sizes.append(len(yb))
    # one device sync per epoch: the batch losses weighted by batch size, summed at the end
    seen = sum(sizes)
    weights = torch.tensor(sizes, dtype=torch.float32, device=fit.device)
    return float(torch.stack(losses).float() @ weights) / seen, seen


def _batch_too_large(fit: _Fit, xb: torch.Tensor) -> MedflowError:
    """The one-line error for a training batch that does not fit in device memory."""
    shape = "x".join(map(str, xb.shape[1:]))
    return MedflowError(
        f"train.batch_size: a batch of {len(xb)} inputs of {shape} does not fit in the memory "
        f"of {fit.device} with model.arch {fit.run.model.arch!r}; lower train.batch_size (the "
        "sweep's space.batch_sizes and pretrain.batch_size where they set it)"
    )


def _record_epoch(fit: _Fit, epoch: int, metrics: dict[str, float], checkpoint: Path | None):
    """Add the epoch to the history, update early stopping, write the checkpoint; returns
    the monitored value."""
    cfg, state = fit.run.train, fit.state
    state.epoch = epoch
    state.train_seconds += metrics["epoch_time_s"]
    state.history.append(metrics)
    value = metrics.get(cfg.monitor, math.nan)
    if _improved(cfg.monitor, value, state.best_value):
        state.best_value, state.best_epoch, state.bad_epochs = value, epoch, 0
        state.best_state = {k: v.detach().cpu().clone() for k, v in fit.model.state_dict().items()}
    else:
        state.bad_epochs += 1
    if checkpoint is not None:
        save_checkpoint(
            checkpoint,
            fit.run.to_dict(),
            fit.run.digest(),
            fit.model,
            fit.optimizer,
            fit.scheduler,
            state,
        )
    return value


def _finish(fit: _Fit, status: Status, reason: str | None) -> Result:
    """The best epoch's model, on the CPU in eval mode, and the run's outcome."""
    model, state, monitor = fit.model, fit.state, fit.run.train.monitor
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.to("cpu")
    if fit.channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    if status == "finished" and state.best_epoch == 0:
        status, reason = "diverged", f"{monitor} was never a number"
    return Result(
        status=status,
        monitor=monitor,
        best_value=state.best_value,
        best_epoch=state.best_epoch,
        epochs_run=state.epoch,
        history=state.history,
        model=model,
        reason=reason,
        train_seconds=state.train_seconds,
        precision="bfloat16" if fit.bf16 else "float32",
    )


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
    fit = _setup(run, data, model, device, checkpoint)
    state = fit.state
    status: Status = "finished"
    reason = None
    while state.epoch < cfg.epochs and not (cfg.patience and state.bad_epochs >= cfg.patience):
        epoch = state.epoch + 1
        started = time.perf_counter()
        train_loss, seen = _train_epoch(fit, epoch)
        if not math.isfinite(train_loss):
            status, reason = "diverged", f"training loss became {train_loss} in epoch {epoch}"
            log.warning("run diverged: %s", reason)
            break
        lr = fit.optimizer.param_groups[0]["lr"]
        fit.scheduler.step()
        metrics = {
            "train_loss": train_loss,
            **validation_metrics(fit.model, data, fit.val_loss_fn, device, data.task),
        }
        elapsed = time.perf_counter() - started
        metrics.update(lr=lr, epoch_time_s=elapsed, samples_per_s=seen / elapsed)
        value = _record_epoch(fit, epoch, metrics, checkpoint)
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
    return _finish(fit, status, reason)
