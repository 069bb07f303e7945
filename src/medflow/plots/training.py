"""Figures of a training run: the learning curve (loss and the monitored metric per epoch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from medflow.ml.loop import Result


def learning_curve_figure(result: Result, title: str = "") -> Figure:
    """Train and validation loss, and the monitored metric with the best epoch marked."""
    # Imported here: sweep workers, which draw none, save matplotlib's 0.3 s import.
    from matplotlib.figure import Figure

    epochs = range(1, len(result.history) + 1)
    fig = Figure(figsize=(9, 3.4))
    loss_ax, metric_ax = fig.subplots(1, 2)
    for key in ("train_loss", "val_loss"):
        loss_ax.plot(epochs, [h[key] for h in result.history], label=key)
    loss_ax.set(xlabel="epoch", ylabel="loss")
    loss_ax.legend()
    metric = result.monitor if result.monitor != "val_loss" else "val_accuracy"
    if result.history and metric in result.history[0]:
        metric_ax.plot(epochs, [h[metric] for h in result.history], color="tab:green")
        metric_ax.axvline(result.best_epoch, color="grey", linestyle=":", label="best epoch")
        metric_ax.set(xlabel="epoch", ylabel=metric)
        metric_ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig
