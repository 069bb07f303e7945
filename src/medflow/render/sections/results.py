"""The test results section: per-mode means with intervals, the paired transfer gain,
every refine run on test (from evaluate's metrics.json) and the refine learning curves."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from medflow.config.types import StudyConfig
from medflow.render.blocks import NONE, Block, figure, fmt, heading, note, p, table
from medflow.render.context import ReportContext, read_json

REPORT_METRICS = ("accuracy", "balanced_accuracy", "auc", "f1")


def build(ctx: ReportContext, study: StudyConfig) -> list[Block]:
    metrics = read_json(ctx.layout.evaluate_metrics(study.name))
    blocks: list[Block] = []
    if metrics is None:
        blocks.append(note("No test evaluation yet (evaluate/<study>/metrics.json missing)."))
    else:
        blocks += [
            heading("Test metrics per mode"),
            *_summary_table(metrics),
            heading("Transfer gain (finetune \u2212 scratch)"),
            *_gain_table(metrics),
            heading("Every refine run on the test split"),
            *_runs_table(ctx, metrics),
        ]
    return [*blocks, heading("Refine learning curves"), _refine_curves(ctx, study)]


def mean_ci(stats: Mapping[str, Any] | None) -> str:
    """``mean ± half-width`` of a seed aggregate; the mean alone without an interval."""
    if not stats:
        return NONE
    mean, low, high = stats.get("mean"), stats.get("ci_low"), stats.get("ci_high")
    if mean is None:
        return NONE
    if low is None or high is None or any(math.isnan(float(v)) for v in (low, high)):
        return fmt(mean)
    return f"{fmt(mean)} ± {(float(high) - float(low)) / 2:.3f}"


def mode_summaries(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json's per-mode aggregates (the transfer gain left out)."""
    return {k: v for k, v in (metrics.get("summary") or {}).items() if k != "transfer_gain"}


def _summary_table(metrics: Mapping[str, Any]) -> list[Block]:
    summary = mode_summaries(metrics)
    if not summary:
        return [note("metrics.json has no summary.")]
    best = (metrics.get("best_on_validation") or {}).get("mode")
    rows = []
    for mode, stats in summary.items():
        n = next((s.get("n") for s in stats.values() if isinstance(s, dict)), None)
        label = f"{mode} (best on validation)" if mode == best else mode
        rows.append(
            {"mode": label, "seeds": n, **{m: mean_ci(stats.get(m)) for m in REPORT_METRICS}}
        )
    caption = (
        f"Test split (n = {metrics.get('n_test')}): mean over seeds ± half-width of the 95% "
        + _interval_name(metrics)
        + "."
    )
    return [table(pd.DataFrame(rows)), p(caption)]


def _interval_name(metrics: Mapping[str, Any]) -> str:
    """The interval metrics.json states (older files: the seeds-only t-interval)."""
    method = (metrics.get("interval_method") or {}).get("method")
    return f"interval ({method})" if method else "t-interval over seeds"


def _gain_table(metrics: Mapping[str, Any]) -> list[Block]:
    gain = (metrics.get("summary") or {}).get("transfer_gain")
    if not gain:
        return [p("No transfer gain: the study lacks a finetune or a scratch mode.")]
    rows = []
    for metric in REPORT_METRICS:
        g = gain.get(metric)
        if not g:
            continue
        low, high = g.get("ci_low"), g.get("ci_high")
        excludes = low is not None and high is not None and (low > 0 or high < 0)
        rows.append(
            {
                "metric": metric,
                "paired gain": mean_ci(g),
                "95% CI": f"[{fmt(low)}, {fmt(high)}]",
                "CI excludes 0": "yes" if excludes else "no",
                "seeds-only t 95% CI": f"[{fmt(g.get('seeds_ci_low'))}, "
                f"{fmt(g.get('seeds_ci_high'))}]",
                "pairs": g.get("n"),
            }
        )
    return [
        table(pd.DataFrame(rows)),
        p(
            "Paired: finetune seed k minus scratch seed k on the same test resamples; 95% "
            + _interval_name(metrics)
            + ". The seeds-only t-interval ignores test-set sampling; shown for reference."
        ),
    ]


def _runs_table(ctx: ReportContext, metrics: Mapping[str, Any]) -> list[Block]:
    rows = []
    for run in metrics.get("runs") or []:
        test = run.get("test") or {}
        rows.append(
            {
                "mode": run.get("mode"),
                "seed": run.get("seed"),
                f"val {metrics.get('monitor', '')}": run.get("val_value"),
                **{m: (test.get(m) or {}).get("value") for m in REPORT_METRICS},
                "run": ctx.run_link(run.get("run_id")),
            }
        )
    skipped = metrics.get("skipped") or []
    extra = [note(f"Skipped runs: {skipped}")] if skipped else []
    if not rows:
        return [note("metrics.json lists no runs."), *extra]
    return [table(pd.DataFrame(rows)), *extra]


def _refine_results(ctx: ReportContext, study: StudyConfig) -> dict[str, dict[int, dict]]:
    found: dict[str, dict[int, dict]] = {}
    for mode in study.modes:
        for seed in study.seeds:
            result = read_json(ctx.layout.refine_result(study.name, mode, seed))
            if result is not None:
                found.setdefault(mode, {})[seed] = result
    return found


def _refine_curves(ctx: ReportContext, study: StudyConfig) -> Block:
    results = _refine_results(ctx, study)
    if not results:
        return note("No refine results (refine/<study>/<mode>/seed<k>/result.json) yet.")
    monitor = study.train["monitor"]
    keys = [monitor] + (["val_accuracy"] if monitor != "val_accuracy" else ["val_loss"])
    fig = Figure(figsize=(4.2 * len(results), 5.6), layout="constrained")
    axes = fig.subplots(2, len(results), squeeze=False, sharex="col")
    for col, (mode, by_seed) in enumerate(results.items()):
        for row, key in enumerate(keys):
            ax = axes[row][col]
            for seed, result in sorted(by_seed.items()):
                history = [h.get(key) for h in result.get("history") or []]
                if any(v is not None for v in history):
                    ax.plot(range(1, len(history) + 1), history, label=f"seed {seed}")
            ax.set(ylabel=key, title=mode if row == 0 else "")
            if row == 1:
                ax.set_xlabel("epoch")
        axes[0][col].legend(fontsize=8)
    caption = f"Per-epoch validation curves of the refine runs, one line per seed ({monitor} top)."
    return figure(fig, caption, "refine learning curves")
