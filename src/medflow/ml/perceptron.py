"""Classic perceptron exercises from the "Deep learning for medical data" lecture (A. Beam).

Reproduces, in pure computation:

* the by-hand OR table with ``w = (1, -1)``, ``b = -0.5``;
* the lecture's R ``train()`` procedure (full-batch gradient descent on the squared error of a
  sigmoid neuron) on the OR, AND and XOR truth tables;
* the XOR limitation: a single neuron cannot exceed 3/4 accuracy, a one-hidden-layer MLP
  reaches 1.0.

Nothing here touches MLflow or the file system; medflow.stages.classics does that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from medflow.config.section import Section
from medflow.data.sources.gates import INPUTS, TRUTH_TABLES
from medflow.ml.device import torch_threads
from medflow.ml.models import ModelConfig, build_model

# The same truth tables the gates data source prepares.
GATES: dict[str, tuple[int, int, int, int]] = TRUTH_TABLES


@dataclass(frozen=True)
class ClassicsConfig(Section):
    """Settings of the classics exercises: the ``classics`` section (schema ``$defs/classics``,
    whose defaults reproduce the lecture) without ``enabled`` and ``datasets``."""

    SCHEMA: ClassVar[str] = "classics"
    SKIPPED: ClassVar[frozenset[str]] = frozenset({"enabled", "datasets"})

    iterations: int
    lr: float
    w0: tuple[float, float]
    b0: float
    long_iterations: int  # single neuron "after long training" on XOR, same procedure
    mlp_hidden: int
    mlp_activation: str
    mlp_epochs: int
    mlp_lr: float
    seed: int

    def __post_init__(self) -> None:
        # JSON/YAML hands lists over; keep the frozen config hashable and comparable.
        object.__setattr__(self, "w0", tuple(float(v) for v in self.w0))


def gate_table() -> np.ndarray:
    """Inputs of the two-input truth tables, shape (4, 2), in the lecture's row order."""
    return INPUTS.astype(np.float64)


def gate_targets(gate: str) -> np.ndarray:
    """Targets of one gate of :data:`GATES` as a float vector."""
    return np.asarray(GATES[gate], dtype=np.float64)


def sigmoid(h: np.ndarray) -> np.ndarray:
    """Logistic function (R's ``plogis``)."""
    return 1.0 / (1.0 + np.exp(-h))


def or_by_hand(cfg: ClassicsConfig) -> list[dict[str, float | int]]:
    """The lecture's by-hand OR table: weighted sum h, sigmoid p and rounded prediction."""
    X = gate_table()
    y = GATES["OR"]
    h = X @ np.asarray(cfg.w0) + cfg.b0
    p = sigmoid(h)
    return [
        {
            "x1": int(x[0]),
            "x2": int(x[1]),
            "y": int(t),
            "h": float(hi),
            "p": float(pi),
            "pred": _round_prob(float(pi)),
        }
        for x, t, hi, pi in zip(X, y, h, p, strict=True)
    ]


def _round_prob(p: float) -> int:
    # round(p) as in the lecture; p == 0.5 maps to 0 like R's round-half-to-even.
    return int(p > 0.5)


def train_perceptron(
    X: np.ndarray,
    y: np.ndarray,
    w0: tuple[float, float] | list[float] | np.ndarray,
    b0: float,
    iterations: int,
    lr: float,
) -> tuple[list[float], list[float], float]:
    """Vectorised port of the lecture's R ``train()``.

    Full-batch gradient descent on the squared error of a sigmoid neuron, the per-row gradients
    ``(p - y) * p * (1 - p) * x`` summed over rows (the R code drops the factor 2). The error of
    iteration i is the mean of ``(y - p)^2`` with the predictions made *before* that update.

    Returns ``(mse_per_iteration, w, b)``.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.array(w0, dtype=np.float64)
    b = float(b0)
    mse: list[float] = []
    for _ in range(iterations):
        preds = sigmoid(X @ w + b)
        delta = (preds - y) * preds * (1.0 - preds)
        # R updates w[1], w[2] and b from the same preds, so one simultaneous step is exact.
        w = w - lr * (X.T @ delta)
        b = b - lr * float(delta.sum())
        mse.append(float(np.mean((y - preds) ** 2)))
    return mse, [float(v) for v in w], b


def neuron_accuracy(X: np.ndarray, y: np.ndarray, w: list[float], b: float) -> float:
    """Share of rows where the rounded sigmoid output equals the target."""
    p = sigmoid(np.asarray(X, dtype=np.float64) @ np.asarray(w) + b)
    preds = np.array([_round_prob(float(v)) for v in p])
    return float(np.mean(preds == np.asarray(y)))


def build_mlp(hidden: int, activation: str) -> nn.Module:
    """One-hidden-layer MLP 2 -> hidden -> 1 emitting a logit (medflow's mlp architecture)."""
    return build_model(
        ModelConfig.from_schema(arch="mlp", hidden_sizes=(hidden,), activation=activation), (2,), 1
    )


@dataclass(frozen=True)
class XorResult:
    """Outcome of :func:`xor_experiment`; :meth:`to_dict` is the JSON-ready part."""

    single_neuron_accuracy: float
    mlp_accuracy: float
    single_neuron_loss: list[float]
    mlp_loss: list[float]
    mlp: nn.Module  # trained, in eval mode; not JSON-serialisable

    def to_dict(self) -> dict[str, Any]:
        return {
            "single_neuron_accuracy": self.single_neuron_accuracy,
            "mlp_accuracy": self.mlp_accuracy,
            "single_neuron_loss": list(self.single_neuron_loss),
            "mlp_loss": list(self.mlp_loss),
        }


def train_xor_mlp(cfg: ClassicsConfig) -> tuple[nn.Module, list[float], float]:
    """Train the MLP on XOR full batch with Adam and BCE-with-logits.

    Runs all ``cfg.mlp_epochs`` epochs (a fixed-length loss curve, and a margin well past the
    first epoch at 100 % accuracy). Returns ``(model, loss_per_epoch, accuracy)``.
    """
    X = torch.tensor(gate_table(), dtype=torch.float32)
    y = torch.tensor(gate_targets("XOR"), dtype=torch.float32).unsqueeze(1)
    # Seed inside a forked RNG so the caller's global torch RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_mlp(cfg.mlp_hidden, cfg.mlp_activation)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.mlp_lr)
    loss_fn = nn.BCEWithLogitsLoss()
    losses: list[float] = []
    model.train()
    # 1000 epochs on 4x2 tensors: ~1 s on one thread, ~10 s on two on a busy 2-core box.
    with torch_threads(1):
        for _ in range(cfg.mlp_epochs):
            optimiser.zero_grad()
            loss = loss_fn(model(X), y)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.item()))
        model.eval()
        with torch.no_grad():
            preds = (model(X) > 0).float()  # logit > 0  <=>  p > 0.5
    return model, losses, float((preds == y).float().mean().item())


def xor_experiment(cfg: ClassicsConfig) -> XorResult:
    """Single neuron after long training vs. a one-hidden-layer MLP on XOR."""
    X, y = gate_table(), gate_targets("XOR")
    neuron_loss, w, b = train_perceptron(X, y, cfg.w0, cfg.b0, cfg.long_iterations, cfg.lr)
    model, mlp_loss, mlp_acc = train_xor_mlp(cfg)
    return XorResult(
        single_neuron_accuracy=neuron_accuracy(X, y, w, b),
        mlp_accuracy=mlp_acc,
        single_neuron_loss=neuron_loss,
        mlp_loss=mlp_loss,
        mlp=model,
    )


def run_classics(cfg: ClassicsConfig, xor: XorResult | None = None) -> dict[str, Any]:
    """Assemble the JSON-ready classics document (the trained MLP is not included).

    Pass ``xor`` when the caller already ran :func:`xor_experiment` (to log its model).
    """
    X = gate_table()
    training: dict[str, dict[str, Any]] = {}
    for gate in GATES:
        mse, w, b = train_perceptron(X, gate_targets(gate), cfg.w0, cfg.b0, cfg.iterations, cfg.lr)
        training[gate] = {"mse": mse, "w": w, "b": b}
    return {
        "or_by_hand": {"w": list(cfg.w0), "b": cfg.b0, "rows": or_by_hand(cfg)},
        "training": training,
        "xor": (xor or xor_experiment(cfg)).to_dict(),
    }


__all__ = [
    "GATES",
    "ClassicsConfig",
    "XorResult",
    "build_mlp",
    "gate_table",
    "gate_targets",
    "neuron_accuracy",
    "or_by_hand",
    "run_classics",
    "sigmoid",
    "train_perceptron",
    "train_xor_mlp",
]
