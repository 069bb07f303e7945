"""The classic perceptron exercises: OR by hand, a single neuron's training, XOR."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from medflow.render.blocks import Block, figure, fmt, heading, note, p, table
from medflow.render.context import ReportContext, read_json


def build(ctx: ReportContext) -> list[Block]:
    path = ctx.layout.classics_json()
    data = read_json(path)
    if data is None:
        state = "enabled" if ctx.cfg.classics.enabled else "disabled in the config"
        return [note(f"No classics results ({path} missing; {state}).")]
    blocks: list[Block] = []
    if "or_by_hand" in data:
        blocks += [heading("OR by hand", 3), *_or_table(data["or_by_hand"])]
    if "training" in data:
        blocks += [heading("Training a single neuron", 3), _mse_figure(data["training"])]
    if "xor" in data:
        blocks += [heading("XOR: one neuron versus an MLP", 3), _xor_figure(data["xor"])]
    return blocks or [note(f"{path.name} holds none of the expected results.")]


def _or_table(by_hand: Mapping[str, Any]) -> list[Block]:
    df = pd.DataFrame(by_hand.get("rows") or [])
    for column in ("h", "p"):
        if column in df.columns:
            df[column] = df[column].map(lambda v: f"{float(v):.2f}")
    w, b = by_hand.get("w"), by_hand.get("b")
    return [p(f"w = {w}, b = {b}; h = w·x + b, p = sigmoid(h), pred = [p ≥ 0.5]."), table(df)]


def _mse_figure(training: Mapping[str, Any]) -> Block:
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for gate, result in training.items():
        mse = result.get("mse") or []
        ax.plot(range(1, len(mse) + 1), mse, marker="o", label=gate)
    ax.set(xlabel="iteration", ylabel="MSE")
    ax.legend()
    return figure(fig, "Squared error of a sigmoid neuron per iteration.", "MSE curves")


def _xor_figure(xor: Mapping[str, Any]) -> Block:
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    single, mlp = xor.get("single_neuron_loss") or [], xor.get("mlp_loss") or []
    left.plot(range(1, len(single) + 1), single, color="tab:red")
    left.set(xlabel="iteration", ylabel="MSE", title="single neuron")
    right.plot(range(1, len(mlp) + 1), mlp, color="tab:green")
    right.set(xlabel="epoch", ylabel="BCE", yscale="log", title="one-hidden-layer MLP")
    caption = (
        f"XOR: single-neuron accuracy {fmt(xor.get('single_neuron_accuracy'), 2)}, "
        f"MLP accuracy {fmt(xor.get('mlp_accuracy'), 2)}."
    )
    return figure(fig, caption, "XOR loss curves")
