"""The sweep section: best trial, trial states, the optimizer x activation heatmap of every
cell and the rankings of optimizers and activations (from the sweep-best job's cells.json),
fANOVA importances (from the analyze stage), learning curves (MLflow), every trial."""

from __future__ import annotations

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
        _heatmap(read_json(layout.sweep_cells(study.name)), metric, lower),
        *_rankings(read_json(layout.sweep_cells(study.name)), metric),
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


def _heatmap(cells_doc: Mapping[str, Any] | None, metric: str, lower: bool) -> Block:
    """cells.json (the sweep-best job's) as optimizer x activation heatmaps, one panel per
    combination of the other categorical choices (freeze, ...): every cell of the design."""
    if cells_doc is None:
        return note("No cells.json (the sweep-best job writes it).")
    cells = pd.DataFrame(cells_doc.get("cells") or [])
    if cells.empty or not {"optimizer", "activation"} <= set(cells.columns):
        return note("cells.json has no optimizer x activation cells.")
    others = [d for d in cells_doc.get("dimensions", []) if d not in ("optimizer", "activation")]
    panels = list(cells.groupby(others, sort=False)) if others else [((), cells)]
    rows = list(dict.fromkeys(cells["optimizer"]))
    cols = list(dict.fromkeys(cells["activation"]))
    finite = cells["best"].dropna().to_numpy(dtype=float)
    vmin, vmax, extend = _robust_limits(finite, lower) if finite.size else (0, 1, "neither")
    cmap = colormaps["viridis_r" if lower else "viridis"].with_extremes(bad="white")
    fig = Figure(
        figsize=(1.6 + 1.5 * len(cols) * len(panels), 1.4 + 0.6 * len(rows)), layout="constrained"
    )
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, panel) in zip(axes, panels, strict=True):
        grid = panel.set_index(["optimizer", "activation"]).reindex(
            pd.MultiIndex.from_product([rows, cols])
        )
        values = grid["best"].to_numpy(dtype=float).reshape(len(rows), len(cols))
        image = ax.imshow(
            np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto"
        )
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("activation")
        ax.set_ylabel("optimizer")
        if others:
            names = key if isinstance(key, tuple) else (key,)
            ax.set_title(", ".join(f"{d}={v}" for d, v in zip(others, names, strict=True)))
        for (i, j), cell in zip(np.ndindex(values.shape), grid.itertuples(), strict=True):
            ax.text(
                j,
                i,
                _cell_label(cell),
                ha="center",
                va="center",
                fontsize=7,
                color="black",
                bbox={"facecolor": "white", "alpha": 0.6, "lw": 0, "pad": 1},
            )
    fig.colorbar(
        image,
        ax=list(axes),
        label=f"{metric} ({'lower' if lower else 'higher'} is better)",
        extend=extend,
    )
    caption = (
        f"Best validation {metric} per cell ({cells_doc.get('design')} design) and the spread "
        "[min, max] of its trials' best values; a pruned trial counts with the best value it "
        "reached before it was stopped (n = trials, p = of them pruned). Blank: no trial."
    )
    return figure(fig, caption, f"heatmap of best {metric} per cell")


def _cell_label(cell: Any) -> str:
    if pd.isna(cell.best):
        return "no trial"
    label = f"{cell.best:.3g}"
    if cell.n_trials > 1 and not pd.isna(cell.min):
        label += f"\n[{cell.min:.3g}, {cell.max:.3g}]"
    pruned = f", {int(cell.n_pruned)}p" if cell.n_pruned else ""
    return f"{label}\nn={int(cell.n_trials)}{pruned}"


def _rankings(cells_doc: Mapping[str, Any] | None, metric: str) -> list[Block]:
    rankings = (cells_doc or {}).get("rankings") or {}
    if not rankings:
        return [note("No ranking (cells.json missing, or no factor with two or more choices).")]
    blocks: list[Block] = []
    for factor, rows in rankings.items():
        df = pd.DataFrame(rows)
        df = df.rename(columns={"level": factor, "mean": f"mean best {metric}"})
        df["95% interval"] = _intervals(df.pop("low"), df.pop("high"))
        gap = f"vs {rows[0]['level']} (paired)"
        df[gap] = [NONE if pd.isna(g) else f"{g:+.4g}" for g in df.pop("gap")]
        df[f"{gap}, 95% interval"] = _intervals(df.pop("gap_low"), df.pop("gap_high"))
        columns = ["rank", factor, f"mean best {metric}", "95% interval", gap]
        df = df[[*columns, f"{gap}, 95% interval", "n_cells"]]
        blocks += [heading(f"Ranking of {factor}s", level=5), table(df)]
    blocks.append(
        p(
            f"Each level's mean of the best {metric} of the cells holding it (the marginal mean "
            f"over the other choices), with a {cells_doc.get('interval', '95% t-interval')}: "
            "it says how consistently a choice does across the others, not the noise of one "
            "training run. Overlapping intervals: the sweep cannot tell those choices apart. "
            "The paired columns give each level's difference from the top-ranked one within "
            "the same other choices (e.g. adagrad/relu against adam/relu), with a "
            f"{cells_doc.get('gap_interval', '95% t-interval over those pairs')}: an interval "
            "that excludes 0 says that level is worse here, whatever the other choice."
        )
    )
    return blocks


def _intervals(lows: Sequence[Any], highs: Sequence[Any]) -> list[str]:
    return [
        NONE if pd.isna(lo) else f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(lows, highs, strict=True)
    ]


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
