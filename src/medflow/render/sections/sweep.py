"""The sweep section: best trial, trial states, the optimizer x activation heatmap,
fANOVA importances (from the analyze stage), learning curves (MLflow), every trial."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from medflow.config.types import StudyConfig
from medflow.render.blocks import NONE, Block, figure, fmt, heading, note, p, table
from medflow.render.context import ReportContext, read_json, read_trials

TOP_TRIALS = 5


def build(ctx: ReportContext, study: StudyConfig) -> list[Block]:
    layout = ctx.layout
    trials = read_trials(layout.sweep_trials(study.name))
    best = read_json(layout.sweep_best(study.name))
    if trials is None or best is None:
        folder = layout.sweep(study.name)
        return [note(f"No sweep summary in {folder} (trials.csv / best_params.json missing).")]
    metric, direction = best.get("metric", study.train["monitor"]), best.get("direction")
    lower = direction == "minimize"
    params = ", ".join(f"{k}={_fmt_param(v)}" for k, v in (best.get("params") or {}).items())
    return [
        p(
            f"{len(trials)} trials; metric {metric} on the validation split, "
            f"{'lower' if lower else 'higher'} is better (direction {direction}). Best trial "
            f"#{best.get('number')}: {metric} = {fmt(best.get('value'), 4)} with {params}."
        ),
        heading("Trial states"),
        *_state_counts(trials),
        heading("Best validation metric per optimizer \u00d7 activation"),
        _heatmap(study, trials, metric, lower),
        heading("Parameter importances (fANOVA)"),
        _importances(read_json(layout.analysis_importances(study.name))),
        heading("Learning curves of the best trials"),
        _trial_curves(ctx, trials, metric, lower),
        heading("All trials"),
        *_trials_table(ctx, trials, lower),
    ]


def _fmt_param(value: Any) -> str:
    return fmt(value, 4) if isinstance(value, float) else str(value)


def _ranked(trials: pd.DataFrame, lower: bool, states: Sequence[str]) -> pd.DataFrame:
    chosen = trials[trials["state"].isin(states) & trials["value"].notna()]
    return chosen.sort_values("value", ascending=lower)


def _state_counts(trials: pd.DataFrame) -> list[Block]:
    counts = trials["state"].value_counts()
    states = ["COMPLETE", "PRUNED", "FAIL", *sorted(set(counts.index) - {"COMPLETE", "PRUNED"})]
    rows = {s.lower(): int(counts.get(s, 0)) for s in dict.fromkeys(states)}
    return [
        table(pd.DataFrame([rows])),
        p(
            "Failed trials were retried with the same parameters; the budget counts completed "
            "and pruned trials."
        ),
    ]


def _heatmap(study: StudyConfig, trials: pd.DataFrame, metric: str, lower: bool) -> Block:
    if not {"optimizer", "activation"} <= set(trials.columns):
        return note("trials.csv has no optimizer/activation columns.")
    done = _ranked(trials, lower, ("COMPLETE", "PRUNED"))
    if done.empty:
        return note("No finished trial has a value.")
    space = study.sweep["space"]
    rows = list(dict.fromkeys([*space["optimizers"], *done["optimizer"]]))
    cols = list(dict.fromkeys([*space["activations"], *done["activation"]]))
    grouped = done.groupby(["optimizer", "activation"])["value"]
    best = (grouped.min() if lower else grouped.max()).unstack().reindex(index=rows, columns=cols)
    n = grouped.size().unstack().reindex(index=rows, columns=cols)
    values = best.to_numpy(dtype=float)
    fig = Figure(figsize=(1.6 + 1.3 * len(cols), 1.2 + 0.5 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis_r" if lower else "viridis"].with_extremes(bad="white")
    vmin, vmax, extend = _robust_limits(values[np.isfinite(values)], lower)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("activation")
    ax.set_ylabel("optimizer")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if not math.isnan(values[i, j]):
                ax.text(
                    j,
                    i,
                    f"{values[i, j]:.3g}\n(n={int(n.iat[i, j])})",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black",
                    bbox={"facecolor": "white", "alpha": 0.6, "lw": 0, "pad": 1},
                )
    label = f"{metric} ({'lower' if lower else 'higher'} is better)"
    fig.colorbar(image, ax=ax, label=label, extend=extend)
    caption = (
        f"Best {metric} over completed and pruned trials per cell (the "
        f"{'lowest' if lower else 'highest'} value; a pruned trial counts with the last value it "
        "reported). Blank cells: no trial."
    )
    return figure(fig, caption, f"heatmap of best {metric}")


def _robust_limits(finite: np.ndarray, lower: bool) -> tuple[float, float, str]:
    """Colour limits that one diverged cell (a loss of 24 beside 0.07) cannot wash out:
    the worst quarter of cells saturates; the annotations keep the exact values."""
    if finite.size < 4:
        return float(finite.min()), float(finite.max()), "neither"
    if lower:
        return float(finite.min()), float(np.quantile(finite, 0.75)), "max"
    return float(np.quantile(finite, 0.25)), float(finite.max()), "min"


def _importances(found: Mapping[str, Any] | None) -> Block:
    if found is None:
        return note("No parameter importances (the analyze stage has not run).")
    importances = found.get("importances")
    if not importances:
        return note(found.get("note") or "Parameter importances not available.")
    names = list(importances)[::-1]
    fig = Figure(figsize=(6, 0.6 + 0.45 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, [importances[k] for k in names], color="#3b6ea5")
    ax.set_xlabel("importance (fraction of explained variance)")
    n_complete = found.get("n_complete")
    caption = f"fANOVA importances from {n_complete} completed trials (seed {found.get('seed')})."
    if n_complete is not None and n_complete < 10:
        caption += " With so few trials they are a rough indication only."
    return figure(fig, caption, "parameter importances")


def _trial_curves(ctx: ReportContext, trials: pd.DataFrame, metric: str, lower: bool) -> Block:
    top = _ranked(trials, lower, ("COMPLETE",)).head(TOP_TRIALS)
    if top.empty:
        return note("No completed trial.")
    if ctx.mlflow.client is None:
        return note(f"No MLflow history: {ctx.mlflow.problem}.")
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    plotted = 0
    for row in top.itertuples():
        history = ctx.mlflow.history(getattr(row, "mlflow_run_id", None), metric)
        if history:
            steps, values = zip(*history, strict=True)
            label = f"#{row.number} {row.optimizer}/{row.activation} ({row.value:.3g})"
            ax.plot(steps, values, marker=".", label=label)
            plotted += 1
    if not plotted:
        return note(f"MLflow has no {metric} history for the best trials.")
    ax.set(xlabel="epoch", ylabel=metric)
    ax.legend(fontsize=8)
    caption = f"Validation {metric} per epoch of the {plotted} best completed trials (MLflow)."
    return figure(fig, caption, "sweep learning curves")


def _trials_table(ctx: ReportContext, trials: pd.DataFrame, lower: bool) -> list[Block]:
    order = _ranked(trials, lower, ("COMPLETE",)).index.tolist()
    order += [i for i in trials.index if i not in set(order)]
    df = trials.loc[order].copy()
    if "mlflow_run_id" in df.columns:
        df["mlflow_run_id"] = df["mlflow_run_id"].map(
            lambda r: ctx.run_link(r) if isinstance(r, str) else NONE
        )
    return [p("Completed trials first, best first."), table(df, scroll=True)]
