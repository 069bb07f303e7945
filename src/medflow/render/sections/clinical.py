"""The clinical summary section: the operating-point table (rates with intervals and the
prevalence), calibration with the reliability diagram, the comparison tests between modes
(DeLong beside the paired bootstrap of the AUC gain) and the model card. Everything comes
from evaluate's metrics.json, reliability.png and model_card.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from medflow.config.types import StudyConfig
from medflow.render.blocks import NONE, Block, fmt, heading, note, p, png_file, pre, table
from medflow.render.context import ReportContext, read_json, read_text
from medflow.render.model_card import imbalance_handling, with_ci
from medflow.render.sections.results import mode_summaries

RATES = ("prevalence", "sensitivity", "specificity", "ppv", "npv")
CALIBRATION = ("brier", "ece", "brier_calibrated", "ece_calibrated")


def build(ctx: ReportContext, study: StudyConfig) -> list[Block]:
    layout = ctx.layout
    metrics = read_json(layout.evaluate_metrics(study.name))
    if metrics is None:
        return [note("No test evaluation yet (evaluate/<study>/metrics.json missing).")]
    method = (metrics.get("interval_method") or {}).get("method", "not stated")
    imbalance = imbalance_handling(study)
    blocks = [
        p(
            f"Test split n = {metrics.get('n_test')}. Intervals: {method}. Class imbalance: "
            f"class_weight {imbalance['class_weight']}, sampler {imbalance['sampler']}."
        ),
        heading("Operating point (chosen on validation, applied to test)"),
        *_operating_tables(metrics),
        heading("Calibration"),
        *_calibration(ctx, study, metrics),
        heading("Comparison tests between modes"),
        *_comparisons(metrics),
        heading("Model card"),
    ]
    card = read_text(layout.evaluate_model_card(study.name))
    blocks.append(pre(card) if card else note("model_card.md not found."))
    return blocks


def _operating_tables(metrics: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    for mode, stats in mode_summaries(metrics).items():
        op = stats.get("operating_point")
        if not op:
            continue
        threshold = op.get("threshold")
        rule = op.get("rule") + (f" (target {op['target']})" if op.get("target") else "")
        where = f"threshold {', '.join(fmt(t) for t in threshold)}" if threshold else "arg-max"
        positive = f"; positive class {op['positive_class']}" if op.get("positive_class") else ""
        rows = [
            {"class": row.get("class"), **{r: with_ci(row.get(r)) for r in RATES}}
            for row in op.get("per_class") or []
        ]
        blocks += [
            p(f"{mode}: rule {rule}, {where} (mean over seeds){positive}."),
            table(pd.DataFrame(rows), scroll=len(rows) > 12),
        ]
        blocks += _confusion(metrics, op)
    if not blocks:
        return [note("No operating point (not a classification task).")]
    caption = "Mean over seeds [95% interval]; multi-class rates are one-vs-rest at the arg-max."
    return [*blocks, p(caption)]


def _confusion(metrics: Mapping[str, Any], op: Mapping[str, Any]) -> list[Block]:
    """The binary confusion matrix of the mode's best seed on validation, at its threshold."""
    matrix = op.get("confusion")
    if metrics.get("task") != "binary" or not matrix:
        return []
    (tn, fp), (fn, tp) = matrix[0]
    frame = pd.DataFrame(
        {
            "": ["true negative", "true positive"],
            "predicted negative": [tn, fn],
            "predicted positive": [fp, tp],
        }
    )
    return [table(frame), p(f"Confusion matrix on test, seed {op.get('confusion_seed')}.")]


def _calibration(ctx: ReportContext, study: StudyConfig, metrics: Mapping[str, Any]) -> list[Block]:
    calibration = metrics.get("calibration") or {}
    rows = [
        {"mode": mode, **{m: with_ci(stats.get(m)) for m in CALIBRATION if m in stats}}
        for mode, stats in mode_summaries(metrics).items()
    ]
    binning = calibration.get("ece_binning", NONE)
    fitted = calibration.get("method", "none")
    best = metrics.get("best_on_validation") or {}
    return [
        table(pd.DataFrame(rows)),
        p(
            f"Brier score and expected calibration error (ECE, {binning}); calibration "
            f"{fitted}"
            + (" fitted on validation (_calibrated: after)." if fitted != "none" else ".")
        ),
        png_file(
            ctx.layout.evaluate_reliability(study.name),
            f"Reliability diagram on test ({best.get('mode')} seed {best.get('seed')}).",
            "reliability diagram",
        ),
    ]


def _comparisons(metrics: Mapping[str, Any]) -> list[Block]:
    rows = []
    for entry in (metrics.get("comparisons") or {}).values():
        delong = entry.get("delong") or {}
        gain = entry.get("auc_gain") or {}
        low, high = gain.get("ci_low"), gain.get("ci_high")
        rows.append(
            {
                "comparison": f"{entry.get('treated')} vs {entry.get('baseline')}",
                "AUC gain [95% interval]": with_ci(gain),
                "interval excludes 0": NONE
                if low is None
                else ("yes" if low > 0 or high < 0 else "no"),
                "DeLong p (largest over seeds)": fmt(delong.get("p_value")),
                "DeLong p per seed": ", ".join(
                    fmt(s.get("p_value")) for s in delong.get("per_seed") or []
                ),
            }
        )
    if not rows:
        return [p("One mode only (or no finetune): nothing to compare.")]
    return [
        table(pd.DataFrame(rows)),
        p(
            "AUC gain: hierarchical paired bootstrap (same test resamples and seeds in both arms). "
            "DeLong's test per matched seed on the same test examples; multi-class/-label: "
            "per class, Bonferroni over classes."
        ),
    ]
