"""Data path: medflow's training loop vs two DataLoader loops, same model, data and epochs.

Contenders, run interleaved (``bench.common.interleaved_many``), all starting from the same
uint8 images (as MedMNIST ships them) and training the same seeded model with the same
optimiser, loss, batch size (128, MedMNIST's getting-started value) and validation work:

- ``medflow``: ``medflow.ml.loop.train`` on the images normalised once per case, before
  timing, as a job does once (device-resident tensors, batches by index, one device sync
  per epoch).
- ``dataloader``: the same normalised tensors, then the textbook loop over
  ``DataLoader(TensorDataset(x, y), shuffle=True)``: per-sample indexing and collation.
- ``medmnist_ref``: MedMNIST's getting-started style: a Dataset holding the uint8 images whose
  ``__getitem__`` does ``PIL.Image.fromarray`` + ``ToTensor()`` + ``Normalize([.5], [.5])``
  per sample, ``DataLoader(batch_size=128, shuffle=True)``, ``targets.squeeze().long()``.

Ratios are loop time over medflow's loop time (medflow's speed-up). A per-phase breakdown
(waiting for the batch, forward + loss, backward + step, validation) shows where the time goes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import transforms

from bench.common import Options, interleaved_many, row, write_json
from medflow.ml.batches import Batches
from medflow.ml.device import use_channels_last
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, train, validation_metrics
from medflow.ml.models import ModelConfig, build_model
from medflow.ml.optim import OptimConfig, build_optimizer
from medflow.ml.task import build_loss, predict_scores
from medflow.stats.metrics import compute_metrics

N_CLASSES = 10
TASK = "multiclass"
GOAL = ">= 3"
LOOP_GOAL = "<= 1.10"  # medflow epoch time over the bare steps on pre-made batches
GOAL_MIN_PX = 28  # the goal is for MedMNIST-sized images; smaller ones are reported only


@dataclass(frozen=True)
class Case:
    arch: str
    size: int
    n_train: int
    width: int = 16
    epochs: int = 2
    batch: int = 128

    @property
    def name(self) -> str:
        model = f"cnn w{self.width}" if self.arch == "cnn" else self.arch
        return f"{model} {self.size}x{self.size}"

    def run_config(self) -> RunConfig:
        return RunConfig(
            model=ModelConfig.from_schema(
                arch=self.arch, width=self.width, depth=2, hidden_sizes=(64,)
            ),
            # MedMNIST's getting-started optimiser: SGD, lr 0.001, momentum 0.9.
            optim=OptimConfig.from_schema(
                name="momentum", lr=0.001, momentum=0.9, schedule="constant"
            ),
            train=TrainConfig.from_schema(
                epochs=self.epochs,
                batch_size=self.batch,
                patience=0,
                device="cpu",
                seed=0,
                amp=False,  # the data paths compared in float32; bench.cpu_bf16 measures bf16
            ),
        )


CASES = (
    Case("mlp", 28, 2048),
    Case("cnn", 28, 1024, width=16),
    Case("cnn", 8, 2048, width=32),  # the default digits study's model and image size
)
QUICK_CASES = (Case("mlp", 28, 256, epochs=1), Case("cnn", 8, 256, width=4, epochs=1))


@dataclass(frozen=True)
class Images:
    """uint8 images (N, H, W) and MedMNIST-style (N, 1) labels, train and validation."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray

    @cached_property
    def data(self) -> TrainData:
        """The normalised float tensors medflow and the DataLoader loop train on, made once
        per case: a medflow job normalises its prepared uint8 data once, not per run, so
        the timed loops (like the bare steps' pre-made batches) start from them."""
        return train_data(self)

    @classmethod
    def random(cls, n_train: int, size: int, seed: int = 0) -> Images:
        rng = np.random.default_rng(seed)
        n_val = max(64, n_train // 8)
        x = rng.integers(0, 256, size=(n_train + n_val, size, size), dtype=np.uint8)
        y = rng.integers(0, N_CLASSES, size=(n_train + n_val, 1), dtype=np.uint8)
        return cls(x[n_val:], y[n_val:], x[:n_val], y[:n_val])


def normalise(images: np.ndarray) -> torch.Tensor:
    """``ToTensor()`` then ``Normalize([.5], [.5])`` for a whole uint8 array at once.

    The same float32 operations in the same order, so the values equal the per-sample ones.
    """
    return torch.from_numpy(images).unsqueeze(1).float().div(255).sub_(0.5).div_(0.5)


def labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(y[:, 0].astype(np.int64))


class MedMNISTStyle(Dataset):
    """``medmnist.dataset.MedMNIST2D.__getitem__``: array -> PIL image -> transform."""

    def __init__(self, imgs: np.ndarray, targets: np.ndarray, transform: Callable) -> None:
        self.imgs, self.labels, self.transform = imgs, targets, transform

    def __len__(self) -> int:
        return len(self.imgs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, np.ndarray]:
        img, target = self.imgs[index], self.labels[index].astype(int)
        return self.transform(Image.fromarray(img)), target


REFERENCE_TRANSFORM = transforms.Compose(
    [transforms.ToTensor(), transforms.Normalize(mean=[0.5], std=[0.5])]
)


# --------------------------------------------------------------------------- one loop, timed


class Phases:
    """Seconds per phase of a training run, accumulated with perf_counter (CPU is synchronous)."""

    NAMES = ("data", "forward_loss", "backward_step", "validation")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.NAMES, 0.0)
        self.started = time.perf_counter()

    def timed_batches(self, batches: Iterable) -> Iterator:
        """Yield from ``batches``, charging the wait for each batch to ``data``."""
        iterator = iter(batches)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.seconds["data"] += time.perf_counter() - t0
            yield batch

    def total(self) -> dict[str, float]:
        total = time.perf_counter() - self.started
        return {**self.seconds, "other": total - sum(self.seconds.values()), "total": total}


def textbook_loop(
    run: RunConfig,
    input_shape: tuple[int, ...],
    train_batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    validate: Callable[[nn.Module], object],
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """The loop every tutorial writes, with per-phase timers; returns the phase seconds."""
    phases = Phases()
    torch.manual_seed(run.train.seed)
    model = build_model(run.model, input_shape, N_CLASSES)
    if prepare is not None:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(run.optim, model.parameters())
    loss_fn = build_loss(TASK)
    for epoch in range(1, run.train.epochs + 1):
        model.train()
        for xb, yb in phases.timed_batches(train_batches(epoch)):
            t0 = time.perf_counter()
            if prepare is not None:
                xb = prepare(xb)
            loss = loss_fn(model(xb), yb)
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            phases.seconds["forward_loss"] += t1 - t0
            phases.seconds["backward_step"] += time.perf_counter() - t1
        t0 = time.perf_counter()
        validate(model)
        phases.seconds["validation"] += time.perf_counter() - t0
    return phases.total()


def loader_validation(loader: DataLoader, y_val: torch.Tensor) -> Callable[[nn.Module], None]:
    """medflow's validation work (loss, accuracy, AUC, F1) over a validation DataLoader."""
    loss_fn = build_loss(TASK)

    def validate(model: nn.Module) -> None:
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(xb) for xb, _ in loader])
        loss_fn(logits, y_val)
        compute_metrics(TASK, y_val.numpy(), predict_scores(TASK, logits).numpy())

    return validate


# --------------------------------------------------------------------------- contenders


def train_data(images: Images) -> TrainData:
    return TrainData(
        TASK,
        N_CLASSES,
        normalise(images.train_x),
        labels(images.train_y),
        normalise(images.val_x),
        labels(images.val_y),
    )


def run_medflow(run: RunConfig, images: Images) -> None:
    train(run, images.data)


def run_dataloader(run: RunConfig, images: Images) -> dict[str, float]:
    data = images.data
    loader = DataLoader(
        TensorDataset(data.x_train, data.y_train), batch_size=run.train.batch_size, shuffle=True
    )
    val = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=2 * run.train.batch_size)
    return textbook_loop(
        run, data.input_shape, lambda _: loader, loader_validation(val, data.y_val)
    )


def _squeezed(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for inputs, targets in loader:
        yield inputs, targets.squeeze(1).long()  # MedMNIST: targets.squeeze().long()


def run_reference(run: RunConfig, images: Images) -> dict[str, float]:
    train_set = MedMNISTStyle(images.train_x, images.train_y, REFERENCE_TRANSFORM)
    val_set = MedMNISTStyle(images.val_x, images.val_y, REFERENCE_TRANSFORM)
    loader = DataLoader(train_set, batch_size=run.train.batch_size, shuffle=True)
    val = DataLoader(val_set, batch_size=2 * run.train.batch_size)
    size = images.train_x.shape[-1]
    return textbook_loop(
        run,
        (1, size, size),
        lambda _: _squeezed(loader),
        loader_validation(val, labels(images.val_y)),
    )


def medflow_phases(run: RunConfig, images: Images) -> dict[str, float]:
    """medflow's loop replayed step by step (its batcher, layout and validation), timed."""
    data = images.data
    device = torch.device("cpu")
    probe = build_model(run.model, data.input_shape, N_CLASSES)
    channels_last = use_channels_last(probe, device, False, data.input_shape)
    batches = Batches(
        data.x_train,
        data.y_train,
        device,
        batch_size=run.train.batch_size,
        seed=run.train.seed,
        resident_max_mb=run.train.resident_max_mb,
    )
    loss_fn = build_loss(TASK)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    return textbook_loop(
        run,
        data.input_shape,
        batches.epoch,
        lambda model: validation_metrics(model, data, loss_fn, device, TASK),
        prepare if channels_last else None,
    )


@dataclass(frozen=True)
class PremadeBatches:
    """The training batches cut once, before timing, in the layout medflow trains in."""

    train: list[tuple[torch.Tensor, torch.Tensor]]
    x_val: torch.Tensor
    y_val: torch.Tensor

    @classmethod
    def cut(cls, run: RunConfig, images: Images) -> PremadeBatches:
        data = images.data
        probe = build_model(run.model, data.input_shape, N_CLASSES)
        layout = (
            torch.channels_last
            if use_channels_last(probe, torch.device("cpu"), False, data.input_shape)
            else torch.contiguous_format
        )
        order = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(0))
        x, y = data.x_train[order].contiguous(memory_format=layout), data.y_train[order]
        size = run.train.batch_size
        train = [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]
        return cls(train, data.x_val.contiguous(memory_format=layout), data.y_val)


def bare_steps(run: RunConfig, batches: PremadeBatches) -> None:
    """The floor of a training loop: forward, loss, backward and step over pre-made batches,
    then one validation forward and loss; no shuffling, metrics or bookkeeping."""
    torch.manual_seed(run.train.seed)
    model = build_model(run.model, tuple(batches.x_val.shape[1:]), N_CLASSES)
    if batches.x_val.is_contiguous(memory_format=torch.channels_last):
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(run.optim, model.parameters())
    loss_fn = build_loss(TASK)
    for _ in range(run.train.epochs):
        model.train()
        for xb, yb in batches.train:
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            loss_fn(model(batches.x_val), batches.y_val)


CONTENDERS: dict[str, Callable[[RunConfig, Images], Any]] = {
    "medflow": run_medflow,
    "dataloader": run_dataloader,
    "medmnist_ref": run_reference,
    "medflow_replica": medflow_phases,  # for the phase breakdown; its time checks the replica
}
PHASED = {"dataloader": "dataloader", "medmnist_ref": "medmnist_ref", "medflow_replica": "medflow"}
LABELS = {"dataloader": "DataLoader(TensorDataset)", "medmnist_ref": "MedMNIST reference loop"}


def bench_case(case: Case, rounds: int) -> dict[str, Any]:
    run, images = case.run_config(), Images.random(case.n_train, case.size)
    timings: dict[str, list[dict[str, float]]] = {name: [] for name in PHASED}

    def contender(name: str) -> Callable[[], None]:
        def once() -> None:
            out = CONTENDERS[name](run, images)
            if name in PHASED:
                timings[name].append(out)

        return once

    premade = PremadeBatches.cut(run, images)
    contenders = {name: contender(name) for name in CONTENDERS}
    contenders["bare_steps"] = lambda: bare_steps(run, premade)
    result = interleaved_many(contenders, rounds, "medflow")
    # Median per phase over the rounds (the warm-up call is left out).
    phases = {
        PHASED[name]: {k: statistics.median(t[k] for t in runs[1:]) for k in runs[0]}
        for name, runs in timings.items()
    }
    samples = case.epochs * case.n_train
    return {
        "case": case.name,
        "config": {
            "arch": case.arch,
            "image": [1, case.size, case.size],
            "width": case.width if case.arch == "cnn" else None,
            "hidden_sizes": [64] if case.arch == "mlp" else None,
            "n_train": case.n_train,
            "n_val": len(images.val_y),
            "epochs": case.epochs,
            "batch_size": case.batch,
            "optimizer": "SGD lr 0.001 momentum 0.9",
            "dataloader_workers": 0,
        },
        "images_per_s": {name: samples / s for name, s in result["median_s"].items()},
        "speedup_of_medflow": result["ratio_over_baseline"],
        "cpu_speedup_of_medflow": result["cpu_ratio_over_baseline"],
        "phase_seconds": phases,
        "phase_note": "median over rounds; medflow's from medflow_replica, its loop step by step",
        **result,
    }


def run(options: Options) -> list[dict[str, Any]]:
    cases = QUICK_CASES if options.quick else CASES
    results = [bench_case(case, options.rounds) for case in cases]
    rows = []
    for result, case in zip(results, cases, strict=True):
        phases = result["phase_seconds"]
        goal = GOAL if case.size >= GOAL_MIN_PX else None
        for name, label in LABELS.items():
            ratio = result["speedup_of_medflow"][name]
            cpu = result["cpu_speedup_of_medflow"][name]["median"]
            note = (
                f"range {ratio['min']:.2f}-{ratio['max']:.2f}, cpu-time {cpu:.2f}; "
                + _phase_note(phases[name], phases["medflow"])
            )
            case_name = f"data path {case.name}: {label} / medflow"
            rows.append(row(case_name, ratio["median"], goal, note))
        # loop efficiency: medflow's time over the bare steps' (the inverse of their ratio)
        bare = result["speedup_of_medflow"]["bare_steps"]
        rows.append(
            row(
                f"loop efficiency {case.name}: medflow / bare fwd+bwd+step",
                1 / bare["median"],
                LOOP_GOAL if case.size >= GOAL_MIN_PX else None,
                f"range {1 / bare['max']:.2f}-{1 / bare['min']:.2f}; bare: the same model, "
                "optimiser and pre-made batches, validation forward + loss only",
            )
        )
    write_json(
        "data_path",
        {
            "description": __doc__,
            "quick": options.quick,
            "goal": f"{GOAL} for images of {GOAL_MIN_PX}x{GOAL_MIN_PX} and larger",
            "cases": results,
            "rows": rows,
        },
        options,
    )
    return rows


def _phase_note(other: dict[str, float], medflow: dict[str, float]) -> str:
    """Seconds per phase, the other loop vs medflow, and what the data phase bounds."""
    compute = ("forward_loss", "backward_step")
    # Amdahl: the other loop's speed-up if fetching its batches cost nothing at all.
    bound = other["total"] / (other["total"] - other["data"])
    return (
        f"data {other['data']:.2f}s vs {medflow['data']:.2f}s "
        f"({other['data'] / max(medflow['data'], 1e-4):.0f}x), "
        f"fwd+bwd {sum(other[k] for k in compute):.2f}s vs "
        f"{sum(medflow[k] for k in compute):.2f}s, "
        f"val {other['validation']:.2f}s vs {medflow['validation']:.2f}s; "
        f"bound if its data were free {bound:.2f}x"
    )
