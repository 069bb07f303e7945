"""One self-contained HTML report of a workflow run, to mail to a colleague.

Everything is inside the file: figures are PNG data URIs drawn with matplotlib
(``Figure`` objects, no pyplot state), tables come from pandas, the CSS is inline and
nothing is loaded from anywhere (no scripts, stylesheets or remote images). Links to an
MLflow UI appear only when its address is given, as plain ``<a href>`` links.

Each section is an element with a stable id (``study-<name>``, ``dataset-<name>``,
``sweep-<name>``, ``results-<name>``, ``figures-<name>``, ``baselines-<name>``,
``representation-<name>``, ``classics``, ``provenance``) so tests can find it. Missing
optional inputs (no classics, no pretraining, no MLflow history) give a short note; a
section that fails unexpectedly shows an element of class ``report-error`` instead of
aborting the whole report.

Reads results/ only; never writes there.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
import os
import platform
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Run
from torch import nn

import medflow
from medflow.config.types import MedflowConfig, StudyConfig
from medflow.data.format import PreparedDataset
from medflow.errors import MedflowError
from medflow.hpo.worker import JOURNAL_FILE, open_study
from medflow.layout import Layout
from medflow.ml.models import ACTIVATIONS
from medflow.ml.transfer import load_model_file
from medflow.runtime.io import atomic_write_bytes
from medflow.stages.sweep import sweep_config
from medflow.stats.metrics import compute_metrics
from medflow.tracking.client import git_commit, resolve_tracking_uri

__all__ = ["MEDMNIST_V2_RESNET18", "REPORT_METRICS", "build_report", "section_ids"]

log = logging.getLogger(__name__)

REPORT_METRICS = ("accuracy", "balanced_accuracy", "auc", "f1")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ERROR_CLASS = "report-error"
_NONE = "\u2013"  # en dash: no value
_TIMES = "\u00d7"
_DPI = 90
_TOP_TRIALS = 5
_FEATURE_MAP_CHANNELS = 8
_MAX_FILTERS = 64
_ARCH_KEYS = {
    "perceptron": (),
    "mlp": ("hidden_sizes", "dropout"),
    "cnn": ("width", "depth", "dropout"),
}
_VERSION_PACKAGES = (
    "medflow",
    "torch",
    "torchvision",
    "mlflow",
    "optuna",
    "snakemake",
    "pandas",
    "numpy",
    "scikit-learn",
    "matplotlib",
)

# Published MedMNIST v2 test results (Yang et al., "MedMNIST v2 - A large-scale lightweight
# benchmark for 2D and 3D biomedical image classification", Scientific Data 10:41, 2023,
# Table 3): (AUC, ACC) of ResNet-18 at 28x28 and at 224x224 input. Only the flags whose
# numbers could be cross-checked are listed; None marks a value left out for lack of a check.
# Left out entirely (not verified here): octmnist, retinamnist, bloodmnist, tissuemnist,
# organamnist, organcmnist, organsmnist. Add them from the paper's Table 3 when needed.
MEDMNIST_V2_RESNET18: Mapping[str, Mapping[str, tuple[float | None, float | None]]] = {
    "pathmnist": {"28": (0.983, 0.907), "224": (0.989, 0.909)},
    "chestmnist": {"28": (0.768, 0.947), "224": (0.773, 0.947)},
    "dermamnist": {"28": (0.917, 0.735), "224": (None, None)},
    "pneumoniamnist": {"28": (0.944, 0.854), "224": (0.956, 0.864)},
    "breastmnist": {"28": (0.901, 0.863), "224": (0.891, 0.833)},
}

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#fafafa;line-height:1.45}
header,main,footer{max-width:1150px;margin:0 auto;padding:0 24px}
header{padding-top:18px}
h1{font-size:1.7em;margin:.4em 0}
h2{border-bottom:2px solid #3b6ea5;padding-bottom:4px;margin-top:1.8em}
h3{color:#3b6ea5;margin-top:1.4em}
h4{margin:1em 0 .3em}
nav{background:#eef3f8;border:1px solid #d5e0ea;padding:8px 14px;border-radius:6px}
nav ul{margin:4px 0;padding-left:20px}
section.study{background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:4px 20px 16px;
margin:22px 0}
table{border-collapse:collapse;margin:8px 0 14px;font-size:.88em}
th,td{border:1px solid #d8d8d8;padding:3px 8px;text-align:right}
th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
.scroll{max-height:420px;overflow:auto;display:inline-block;max-width:100%}
img{max-width:100%;height:auto;display:block;margin:6px 0}
figure{margin:10px 0}
figcaption{font-size:.86em;color:#555}
.note{color:#6a5a00;background:#fff8db;border-left:4px solid #e0c040;padding:4px 10px}
.report-error{color:#8a1010;background:#fde8e8;border-left:4px solid #c03030;padding:4px 10px}
pre{background:#f4f4f4;border:1px solid #ddd;padding:10px;overflow:auto;font-size:.85em}
code{font-size:.92em}
.muted{color:#777;font-size:.88em}
"""


# --------------------------------------------------------------------------- public API


def section_ids(studies: Iterable[str]) -> list[str]:
    """The ids of the report's sections for ``studies`` (classics and provenance last)."""
    kinds = ("study", *_STUDY_BUILDERS)
    return [*(f"{kind}-{name}" for name in studies for kind in kinds), "classics", "provenance"]


def build_report(
    cfg: MedflowConfig,
    layout: Layout,
    out: Path,
    *,
    config_text: str | None = None,
    mlflow_ui_url: str | None = None,
) -> Path:
    """Write the self-contained HTML report of the run under ``layout.results`` to ``out``."""
    ctx = _Context(
        cfg=cfg,
        layout=layout,
        mlflow=_MlflowReader.open(resolve_tracking_uri(cfg.tracking.uri, layout.results)),
        ui_url=mlflow_ui_url.rstrip("/") if mlflow_ui_url else None,
    )
    parts = [_study_block(ctx, study) for study in cfg.studies.values()]
    if not cfg.studies:
        parts.append(_note("The config defines no studies."))
    parts.append(_guarded("classics", "Classic perceptron exercises", lambda: _classics(ctx), 2))
    parts.append(
        _guarded("provenance", "Provenance", lambda: _provenance(ctx, config_text), level=2)
    )
    page = _page(ctx, "\n".join(parts))
    return atomic_write_bytes(Path(out), page.encode("utf-8"))


# --------------------------------------------------------------------------- context


@dataclass
class _MlflowReader:
    """Read-only access to the tracking store; remembers runs and the first failure."""

    uri: str
    client: MlflowClient | None
    problem: str | None = None
    _runs: dict[str, Run | None] = field(default_factory=dict)

    @classmethod
    def open(cls, uri: str) -> _MlflowReader:
        local = _local_store_path(uri)
        if local is not None and not local.exists():
            # Creating a client would create an empty store inside results/.
            return cls(uri, None, f"no MLflow store at {local}")
        try:
            return cls(uri, MlflowClient(tracking_uri=uri))
        except Exception as exc:
            return cls(uri, None, f"cannot open the MLflow store {uri}: {exc}")

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.client is None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            log.warning("MLflow request failed (%s); using no MLflow data", exc)
            if _is_unreachable(exc):
                self.problem, self.client = f"MLflow store unreachable: {exc}", None
            return None

    def run(self, run_id: str | None) -> Run | None:
        if not run_id or self.client is None:
            return None
        if run_id not in self._runs:
            self._runs[run_id] = self._call(self.client.get_run, run_id)
        return self._runs[run_id]

    def history(self, run_id: str | None, key: str) -> list[tuple[int, float]]:
        if not run_id or self.client is None:
            return []
        metrics = self._call(self.client.get_metric_history, run_id, key) or []
        return sorted((int(m.step), float(m.value)) for m in metrics)


@dataclass(frozen=True)
class _Context:
    cfg: MedflowConfig
    layout: Layout
    mlflow: _MlflowReader
    ui_url: str | None

    def run_link(self, run_id: str | None) -> str:
        """The run id as an MLflow UI link when an address was given, else as text."""
        if not run_id:
            return _NONE
        text = f"<code>{_esc(run_id)}</code>"
        run = self.mlflow.run(run_id) if self.ui_url else None
        if run is None:
            return text
        href = f"{self.ui_url}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
        return f'<a href="{_esc(href)}">{text}</a>'


def _local_store_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///").split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:"))
    if "://" not in uri and ("/" in uri or uri.startswith(".")):
        return Path(uri)
    return None


def _is_unreachable(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("connection", "timeout", "max retries", "unreachable"))


# --------------------------------------------------------------------------- html helpers


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _p(text: str) -> str:
    return f"<p>{_esc(text)}</p>"


def _section(section_id: str, title: str, body: str, level: int = 3, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return (
        f'<section id="{_esc(section_id)}"{cls}>\n<h{level}>{_esc(title)}</h{level}>\n'
        f"{body}\n</section>"
    )


def _guarded(
    section_id: str, title: str, build: Callable[[], str], level: int = 3, css: str = ""
) -> str:
    """The section built by ``build``, or an error note if building it failed."""
    try:
        body = build()
    except Exception as exc:
        log.exception("report section %s failed", section_id)
        body = (
            f'<p class="{ERROR_CLASS}">This section could not be built: '
            f"{_esc(type(exc).__name__)}: {_esc(exc)}</p>"
        )
    return _section(section_id, title, body, level, css)


def _table(
    df: pd.DataFrame, raw: Sequence[str] = (), index: bool = False, scroll: bool = False
) -> str:
    """``df`` as an HTML table; every cell escaped except the columns named in ``raw``."""
    shown = df.copy()
    for column in shown.columns:
        if column not in raw:
            shown[column] = shown[column].map(_cell)
    shown.index = [_esc(i) for i in shown.index]
    shown.columns = [_esc(c) for c in shown.columns]
    table = shown.to_html(index=index, escape=False, border=0, na_rep=_NONE)
    return f'<div class="scroll">{table}</div>' if scroll else table


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return _NONE if math.isnan(value) else f"{float(value):.4g}"
    if value is None:
        return _NONE
    return _esc(value)


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for humans: fixed decimals in [0.001, 1e4), else significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _NONE
    if isinstance(value, int | np.integer):
        return str(value)
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}g}"


def _figure(fig: Figure, caption: str, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return _png(buffer.getvalue(), caption, alt)


def _png(data: bytes, caption: str, alt: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{_esc(alt)}">{cap}</figure>'


def _png_file(path: Path, caption: str, alt: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _note(f"{path.name} not found in {path.parent}.")
    if not data.startswith(PNG_SIGNATURE):
        return _note(f"{path} is not a PNG file.")
    return _png(data, caption, alt)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _page(ctx: _Context, body: str) -> str:
    studies = list(ctx.cfg.studies)
    toc = "".join(
        f'<li><a href="#study-{_esc(s)}">{_esc(s)}</a>: '
        + ", ".join(f'<a href="#{kind}-{_esc(s)}">{kind}</a>' for kind in _STUDY_BUILDERS)
        + "</li>"
        for s in studies
    )
    toc += '<li><a href="#classics">classics</a></li><li><a href="#provenance">provenance</a></li>'
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medflow report: {_esc(", ".join(studies) or "no studies")}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>medflow report</h1>
<p class="muted">Results folder <code>{_esc(ctx.layout.results.resolve())}</code>,
generated {now} by medflow {_esc(_version("medflow"))}.
MLflow store <code>{_esc(ctx.mlflow.uri)}</code>.</p>
<nav><strong>Contents</strong><ul>{toc}</ul></nav>
</header>
<main>
{body}
</main>
<footer><p class="muted">Self-contained: all figures are embedded; nothing is loaded from
the network.</p></footer>
</body>
</html>
"""


# --------------------------------------------------------------------------- per study


def _study_block(ctx: _Context, study: StudyConfig) -> str:
    parts = [_study_intro(ctx, study)]
    for kind, (title, build) in _STUDY_BUILDERS.items():
        parts.append(_guarded(f"{kind}-{study.name}", title, partial(build, ctx, study)))
    return _section(f"study-{study.name}", f"Study {study.name}", "\n".join(parts), 2, "study")


def _study_intro(ctx: _Context, study: StudyConfig) -> str:
    pre = study.pretrain
    arch = study.model.get("arch")
    keys = _ARCH_KEYS.get(arch, ("weights", "dropout"))
    model = ", ".join([str(arch), *(f"{k}={study.model[k]}" for k in keys if k in study.model)])
    source = f"pretrained on <code>{_esc(pre.dataset)}</code>" if pre else "no pretraining"
    return (
        f"<p>Target <code>{_esc(study.target)}</code>, {source}; model {_esc(model)}; "
        f"modes {_esc(', '.join(study.modes))}; seeds {_esc(', '.join(map(str, study.seeds)))}; "
        f"monitor <code>{_esc(study.train['monitor'])}</code>.</p>"
    )


# ---- dataset


def _dataset(ctx: _Context, study: StudyConfig) -> str:
    parts = [f"<h4>Target: {_esc(study.target)}</h4>", _dataset_card(ctx, study.target)]
    if study.pretrain is not None:
        parts += [
            f"<h4>Pretraining source: {_esc(study.pretrain.dataset)}</h4>",
            _dataset_card(ctx, study.pretrain.dataset),
        ]
    else:
        parts.append(_p("No pretraining source: this study trains from scratch only."))
    return "\n".join(parts)


def _dataset_card(ctx: _Context, name: str) -> str:
    meta = _read_json(ctx.layout.prepared(name) / "meta.json")
    if meta is None:
        return _note(f"Dataset {name} is not prepared (no meta.json).")
    classes = meta.get("class_names") or []
    shown = ", ".join(map(str, classes[:20])) + (" …" if len(classes) > 20 else "")
    facts = {
        "source": meta.get("source"),
        "task": meta.get("task"),
        "kind": meta.get("kind"),
        "input shape": f" {_TIMES} ".join(map(str, meta.get("input_shape") or [])),
        "classes": f"{meta.get('n_classes')} ({shown})",
        "split sizes": ", ".join(f"{k} {v}" for k, v in (meta.get("split_sizes") or {}).items()),
        "splits from the source": meta.get("splits_from_source"),
        "dataset hash": meta.get("content_hash"),
        **{f"note: {k}": v for k, v in (meta.get("notes") or {}).items()},
    }
    table = _table(pd.DataFrame({"": list(facts), "value": list(facts.values())}))
    return table + _class_counts(meta)


def _class_counts(meta: Mapping[str, Any]) -> str:
    counts = meta.get("class_counts") or {}
    names = meta.get("class_names") or []
    if not counts or not names or any(v is None for v in counts.values()):
        return ""
    if len(names) > 30:
        return _p(f"{len(names)} classes; per-class counts left out.")
    df = pd.DataFrame({split: values for split, values in counts.items()}, index=names)
    df.index.name = "class"
    return "<p>Examples per class and split:</p>" + _table(df.T, index=True)


# ---- sweep


def _sweep(ctx: _Context, study: StudyConfig) -> str:
    folder = ctx.layout.sweep(study.name)
    trials = _read_trials(folder / "trials.csv")
    best = _read_json(folder / "best_params.json")
    if trials is None or best is None:
        return _note(f"No sweep summary in {folder} (trials.csv / best_params.json missing).")
    metric, direction = best.get("metric", study.train["monitor"]), best.get("direction")
    lower = direction == "minimize"
    parts = [
        _p(
            f"{len(trials)} trials; metric {metric} on the validation split, "
            f"{'lower' if lower else 'higher'} is better (direction {direction}). Best trial "
            f"#{best.get('number')}: {metric} = {_fmt(best.get('value'), 4)} with "
            + ", ".join(f"{k}={_fmt_param(v)}" for k, v in (best.get("params") or {}).items())
            + "."
        ),
        "<h4>Trial states</h4>",
        _state_counts(trials),
        "<h4>Best validation metric per optimizer &times; activation</h4>",
        _heatmap(study, trials, metric, lower),
        "<h4>Parameter importances (fANOVA)</h4>",
        _importances(study, folder),
        "<h4>Learning curves of the best trials</h4>",
        _trial_curves(ctx, trials, metric, lower),
        "<h4>All trials</h4>",
        _trials_table(ctx, trials, lower),
    ]
    return "\n".join(parts)


def _fmt_param(value: Any) -> str:
    return _fmt(value, 4) if isinstance(value, float) else str(value)


def _read_trials(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    trials = pd.read_csv(path)
    trials.columns = [c.removeprefix("param_") for c in trials.columns]
    return trials


def _ranked(trials: pd.DataFrame, lower: bool, states: Sequence[str]) -> pd.DataFrame:
    chosen = trials[trials["state"].isin(states) & trials["value"].notna()]
    return chosen.sort_values("value", ascending=lower)


def _state_counts(trials: pd.DataFrame) -> str:
    counts = trials["state"].value_counts()
    states = ["COMPLETE", "PRUNED", "FAIL", *sorted(set(counts.index) - {"COMPLETE", "PRUNED"})]
    rows = {s.lower(): int(counts.get(s, 0)) for s in dict.fromkeys(states)}
    df = pd.DataFrame([rows])
    return _table(df) + _p(
        "Failed trials were retried with the same parameters; the budget counts completed "
        "and pruned trials."
    )


def _heatmap(study: StudyConfig, trials: pd.DataFrame, metric: str, lower: bool) -> str:
    if not {"optimizer", "activation"} <= set(trials.columns):
        return _note("trials.csv has no optimizer/activation columns.")
    done = _ranked(trials, lower, ("COMPLETE", "PRUNED"))
    if done.empty:
        return _note("No finished trial has a value.")
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
    return _figure(fig, caption, f"heatmap of best {metric}")


def _robust_limits(finite: np.ndarray, lower: bool) -> tuple[float, float, str]:
    """Colour limits that one diverged cell (a loss of 24 beside 0.07) cannot wash out:
    the worst quarter of cells saturates; the annotations keep the exact values."""
    if finite.size < 4:
        return float(finite.min()), float(finite.max()), "neither"
    if lower:
        return float(finite.min()), float(np.quantile(finite, 0.75)), "max"
    return float(np.quantile(finite, 0.25)), float(finite.max()), "min"


def _importances(study: StudyConfig, folder: Path) -> str:
    cfg = sweep_config(study)
    if cfg.storage is None and not (folder / JOURNAL_FILE).exists():
        return _note(f"No Optuna journal in {folder}; importances need the study.")
    try:
        optuna_study = open_study(cfg, folder, study.name, create=False)
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(optuna_study, evaluator=evaluator)
    except (MedflowError, ValueError, RuntimeError) as exc:
        return _note(f"Parameter importances not available: {exc}")
    if not importances:
        return _note("Parameter importances not available: no varying parameter.")
    names = list(importances)[::-1]
    fig = Figure(figsize=(6, 0.6 + 0.45 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, [importances[k] for k in names], color="#3b6ea5")
    ax.set_xlabel("importance (fraction of explained variance)")
    n_complete = len(optuna_study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    caption = f"fANOVA importances from {n_complete} completed trials (seed 0)."
    if n_complete < 10:
        caption += " With so few trials they are a rough indication only."
    return _figure(fig, caption, "parameter importances")


def _trial_curves(ctx: _Context, trials: pd.DataFrame, metric: str, lower: bool) -> str:
    top = _ranked(trials, lower, ("COMPLETE",)).head(_TOP_TRIALS)
    if top.empty:
        return _note("No completed trial.")
    if ctx.mlflow.client is None:
        return _note(f"No MLflow history: {ctx.mlflow.problem}.")
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
        return _note(f"MLflow has no {metric} history for the best trials.")
    ax.set(xlabel="epoch", ylabel=metric)
    ax.legend(fontsize=8)
    caption = f"Validation {metric} per epoch of the {plotted} best completed trials (MLflow)."
    return _figure(fig, caption, "sweep learning curves")


def _trials_table(ctx: _Context, trials: pd.DataFrame, lower: bool) -> str:
    order = _ranked(trials, lower, ("COMPLETE",)).index.tolist()
    order += [i for i in trials.index if i not in set(order)]
    df = trials.loc[order].copy()
    if "mlflow_run_id" in df.columns:
        df["mlflow_run_id"] = df["mlflow_run_id"].map(
            lambda r: ctx.run_link(r) if isinstance(r, str) else _NONE
        )
    return _p("Completed trials first, best first.") + _table(
        df, raw=("mlflow_run_id",), scroll=True
    )


# ---- results


def _results(ctx: _Context, study: StudyConfig) -> str:
    metrics = _read_json(ctx.layout.evaluate(study.name) / "metrics.json")
    parts = []
    if metrics is None:
        parts.append(_note("No test evaluation yet (evaluate/<study>/metrics.json missing)."))
    else:
        parts += [
            "<h4>Test metrics per mode</h4>",
            _summary_table(metrics),
            "<h4>Transfer gain (finetune &minus; scratch)</h4>",
            _gain_table(metrics),
            "<h4>Every refine run on the test split</h4>",
            _runs_table(ctx, metrics),
        ]
    parts += ["<h4>Refine learning curves</h4>", _refine_curves(ctx, study)]
    return "\n".join(parts)


def _mean_ci(stats: Mapping[str, Any] | None) -> str:
    if not stats:
        return _NONE
    mean, low, high = stats.get("mean"), stats.get("ci_low"), stats.get("ci_high")
    if mean is None:
        return _NONE
    if low is None or high is None or any(math.isnan(float(v)) for v in (low, high)):
        return _fmt(mean)
    return f"{_fmt(mean)} ± {(float(high) - float(low)) / 2:.3f}"


def _summary_table(metrics: Mapping[str, Any]) -> str:
    summary = {k: v for k, v in (metrics.get("summary") or {}).items() if k != "transfer_gain"}
    if not summary:
        return _note("metrics.json has no summary.")
    best = (metrics.get("best_on_validation") or {}).get("mode")
    rows = []
    for mode, stats in summary.items():
        n = next((s.get("n") for s in stats.values() if isinstance(s, dict)), None)
        label = f"{mode} (best on validation)" if mode == best else mode
        rows.append(
            {"mode": label, "seeds": n, **{m: _mean_ci(stats.get(m)) for m in REPORT_METRICS}}
        )
    caption = (
        f"Test split (n = {metrics.get('n_test')}): mean over seeds ± half-width of the 95% "
        "t-interval."
    )
    return _table(pd.DataFrame(rows)) + _p(caption)


def _gain_table(metrics: Mapping[str, Any]) -> str:
    gain = (metrics.get("summary") or {}).get("transfer_gain")
    if not gain:
        return _p("No transfer gain: the study lacks a finetune or a scratch mode.")
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
                "paired gain": _mean_ci(g),
                "95% CI": f"[{_fmt(low)}, {_fmt(high)}]",
                "CI excludes 0": "yes" if excludes else "no",
                "unpaired 95% CI": f"[{_fmt(g.get('unpaired_ci_low'))}, "
                f"{_fmt(g.get('unpaired_ci_high'))}]",
                "pairs": g.get("n"),
            }
        )
    note = _p("Paired over seeds: finetune seed k minus scratch seed k.")
    return _table(pd.DataFrame(rows)) + note


def _runs_table(ctx: _Context, metrics: Mapping[str, Any]) -> str:
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
    extra = _note(f"Skipped runs: {skipped}") if skipped else ""
    if not rows:
        return _note("metrics.json lists no runs.") + extra
    return _table(pd.DataFrame(rows), raw=("run",)) + extra


def _refine_results(ctx: _Context, study: StudyConfig) -> dict[str, dict[int, dict[str, Any]]]:
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for mode in study.modes:
        for seed in study.seeds:
            result = _read_json(ctx.layout.refine(study.name, mode, seed) / "result.json")
            if result is not None:
                found.setdefault(mode, {})[seed] = result
    return found


def _refine_curves(ctx: _Context, study: StudyConfig) -> str:
    results = _refine_results(ctx, study)
    if not results:
        return _note("No refine results (refine/<study>/<mode>/seed<k>/result.json) yet.")
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
    return _figure(fig, caption, "refine learning curves")


# ---- figures


def _figures(ctx: _Context, study: StudyConfig) -> str:
    folder = ctx.layout.evaluate(study.name)
    metrics = _read_json(folder / "metrics.json")
    if metrics is None:
        return _note("No test evaluation yet, so no confusion matrix or ROC.")
    best = metrics.get("best_on_validation") or {}
    who = f"{best.get('mode')} seed {best.get('seed')}"
    parts = [
        f"<p>Best model on validation: {_esc(who)}, run {ctx.run_link(best.get('run_id'))}.</p>",
        _png_file(folder / "confusion.png", f"Confusion matrix on test ({who}).", "confusion"),
        _png_file(folder / "roc.png", f"ROC curves on test ({who}).", "ROC"),
    ]
    per_class = best.get("per_class")
    if per_class:
        parts += ["<h4>Per class (test)</h4>", _table(pd.DataFrame(per_class), scroll=True)]
    return "\n".join(parts)


# ---- baselines


def _baselines(ctx: _Context, study: StudyConfig) -> str:
    meta = _read_json(ctx.layout.prepared(study.target) / "meta.json")
    if meta is None:
        return _note(f"Dataset {study.target} is not prepared.")
    metrics = _read_json(ctx.layout.evaluate(study.name) / "metrics.json") or {}
    if meta.get("kind") == "tabular":
        return _logistic_baseline(ctx, study, meta, metrics)
    if meta.get("source") == "medmnist":
        return _medmnist_baseline(meta, metrics)
    return _p(
        f"No published or classical baseline applies to {study.target} "
        f"(source {meta.get('source')}, {meta.get('kind')} data)."
    )


def _ours_rows(metrics: Mapping[str, Any], keys: Sequence[str]) -> list[dict[str, str]]:
    summary = {k: v for k, v in (metrics.get("summary") or {}).items() if k != "transfer_gain"}
    return [
        {"model": f"ours: {mode}", **{k: _mean_ci(stats.get(k)) for k in keys}}
        for mode, stats in summary.items()
    ]


def _logistic_baseline(
    ctx: _Context, study: StudyConfig, meta: Mapping[str, Any], metrics: Mapping[str, Any]
) -> str:
    from sklearn.linear_model import LogisticRegression

    task = meta.get("task")
    if task not in ("binary", "multiclass"):
        return _p(f"No logistic-regression baseline for a {task} task.")
    data = PreparedDataset.open(ctx.layout.prepared(study.target))
    train, test = data.load("train"), data.load("test")
    features = _flat_features(data, train.x)
    model = LogisticRegression(max_iter=5000).fit(features, train.y.astype(np.int64))
    proba = model.predict_proba(_flat_features(data, test.x))
    if task == "binary":
        scores = proba[:, list(model.classes_).index(1)] if 1 in model.classes_ else proba[:, -1]
    else:
        scores = np.zeros((len(test.y), int(meta["n_classes"])))
        scores[:, model.classes_.astype(np.int64)] = proba
    ours = compute_metrics(task, test.y.astype(np.int64), scores)
    keys = ("accuracy", "balanced_accuracy", "auc")
    rows = [{"model": "logistic regression (sklearn)", **{k: _fmt(ours[k]) for k in keys}}]
    rows += _ours_rows(metrics, keys)
    text = _p(
        f"scikit-learn LogisticRegression(max_iter=5000) on the normalised train split "
        f"({len(train.y)} examples), scored on the same test split ({len(test.y)}); ours: mean "
        "over seeds ± half-width of the 95% t-interval."
    )
    return _table(pd.DataFrame(rows)) + text


def _flat_features(data: PreparedDataset, x: np.ndarray) -> np.ndarray:
    return data.normalise(x).reshape(len(x), -1)


def _medmnist_baseline(meta: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    notes = meta.get("notes") or {}
    flag = notes.get("flag") or ((meta.get("config") or {}).get("options") or {}).get("flag")
    published = MEDMNIST_V2_RESNET18.get(str(flag))
    if published is None:
        return _p(
            f"No published MedMNIST v2 numbers are embedded for flag {flag!r} "
            f"(embedded: {', '.join(MEDMNIST_V2_RESNET18)})."
        )
    rows = [
        {"model": f"ResNet-18 ({size}) published", "auc": _fmt(auc), "accuracy": _fmt(acc)}
        for size, (auc, acc) in published.items()
    ]
    rows += _ours_rows(metrics, ("auc", "accuracy"))
    size = notes.get("size", 28)
    official = "official" if meta.get("splits_from_source") else "NOT the official"
    text = _p(
        f"Published test AUC/ACC for {flag} from MedMNIST v2 (Yang et al., Scientific Data "
        f"2023, Table 3). Ours: {size}{_TIMES}{size} images, {official} splits."
    )
    return _table(pd.DataFrame(rows)) + text


# ---- deep representation


def _representation(ctx: _Context, study: StudyConfig) -> str:
    meta = _read_json(ctx.layout.prepared(study.target) / "meta.json")
    if meta is None or meta.get("kind") != "image":
        return _p("Does not apply: the target is not image data, so there are no conv filters.")
    metrics = _read_json(ctx.layout.evaluate(study.name) / "metrics.json") or {}
    best = metrics.get("best_on_validation") or {}
    mode, seed = best.get("mode"), best.get("seed")
    if mode is None or seed is None:
        mode, seed = next(
            ((m, s) for m in study.modes for s in study.seeds if _model_path(ctx, study, m, s)),
            (None, None),
        )
    path = _model_path(ctx, study, mode, seed) if mode is not None else None
    if path is None:
        return _note("No refine model.pt found for the best-on-validation run.")
    model, _ = load_model_file(path)
    conv = next((m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        return _p(f"Does not apply: the {study.model.get('arch')} model has no conv layer.")
    data = PreparedDataset.open(ctx.layout.prepared(study.target))
    who = f"{mode} seed {seed}"
    return "\n".join(
        [
            _p(f"Model: best on validation ({who}), {path.relative_to(ctx.layout.results)}."),
            _filters_figure(conv, who),
            _feature_maps_figure(model, data, who),
        ]
    )


def _model_path(ctx: _Context, study: StudyConfig, mode: str, seed: int) -> Path | None:
    path = ctx.layout.refine(study.name, mode, seed) / "model.pt"
    return path if path.exists() else None


def _filters_figure(conv: nn.Conv2d, who: str) -> str:
    weight = conv.weight.detach().cpu().numpy()[:_MAX_FILTERS]
    n, channels = weight.shape[:2]
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.1 * cols, 1.1 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        kernel = weight[k]
        if channels == 3:
            img = np.transpose(kernel, (1, 2, 0))
            ax.imshow((img - img.min()) / (np.ptp(img) or 1.0), interpolation="nearest")
        else:
            ax.imshow(kernel.mean(axis=0), cmap="gray", interpolation="nearest")
        ax.set_title(str(k), fontsize=7)
    shown = "RGB" if channels == 3 else f"mean over {channels} input channel(s)"
    caption = (
        f"First-layer conv filters ({n} of {conv.out_channels}, {conv.kernel_size[0]}{_TIMES}"
        f"{conv.kernel_size[1]}, {shown}, each scaled to its own range); model {who}."
    )
    return _figure(fig, caption, "first-layer filters")


def _first_block(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output of the first conv block: the first conv with its norm and activation."""
    elementwise = (nn.BatchNorm2d, nn.GroupNorm, *{type(make()) for make in ACTIVATIONS.values()})
    started = False
    for module in model.backbone.children():
        if not started:
            x = module(x)
            started = isinstance(module, nn.Conv2d)
        elif isinstance(module, elementwise):
            x = module(x)
        else:
            break
    return x


def _example_rows(y: np.ndarray, count: int = 3) -> list[int]:
    if y.ndim > 1:
        return list(range(min(count, len(y))))
    rows: dict[Any, int] = {}
    for i, label in enumerate(y.tolist()):
        rows.setdefault(label, i)
        if len(rows) == count:
            break
    chosen = list(rows.values())
    chosen += [i for i in range(len(y)) if i not in chosen][: count - len(chosen)]
    return sorted(chosen)


def _feature_maps_figure(model: nn.Module, data: PreparedDataset, who: str) -> str:
    test = data.load("test")
    rows = _example_rows(test.y)
    x = torch.from_numpy(data.normalise(test.x[rows]))
    with torch.no_grad():
        maps = _first_block(model, x).cpu().numpy()
    order = np.argsort(-maps.var(axis=(0, 2, 3)))[:_FEATURE_MAP_CHANNELS]
    fig = Figure(figsize=(1.3 * (len(order) + 1), 1.35 * len(rows) + 0.3), layout="constrained")
    axes = fig.subplots(len(rows), len(order) + 1, squeeze=False)
    names = data.meta.get("class_names") or []
    for r, row in enumerate(rows):
        image = test.x[row].astype(np.float64)
        image = (image - image.min()) / (np.ptp(image) or 1.0)
        shown = np.transpose(image, (1, 2, 0)) if image.shape[0] == 3 else image[0]
        axes[r][0].imshow(shown, cmap=None if image.shape[0] == 3 else "gray")
        label = test.y[row]
        title = names[int(label)] if np.ndim(label) == 0 and int(label) < len(names) else "input"
        axes[r][0].set_title(f"test #{row}: {title}", fontsize=7)
        for c, channel in enumerate(order, start=1):
            axes[r][c].imshow(maps[r, channel], cmap="magma", interpolation="nearest")
            if r == 0:
                axes[r][c].set_title(f"ch {channel}", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    caption = (
        f"Feature maps after the first conv block (conv, norm, activation) for {len(rows)} test "
        f"images; the {len(order)} channels with the most variance; model {who}."
    )
    return _figure(fig, caption, "feature maps")


# --------------------------------------------------------------------------- classics


def _classics(ctx: _Context) -> str:
    data = _read_json(ctx.layout.classics_json())
    if data is None:
        state = "enabled" if ctx.cfg.classics.enabled else "disabled in the config"
        return _note(f"No classics results ({ctx.layout.classics_json()} missing; {state}).")
    parts = []
    if "or_by_hand" in data:
        parts += ["<h3>OR by hand</h3>", _or_table(data["or_by_hand"])]
    if "training" in data:
        parts += ["<h3>Training a single neuron</h3>", _mse_figure(data["training"])]
    if "xor" in data:
        parts += ["<h3>XOR: one neuron versus an MLP</h3>", _xor_figure(data["xor"])]
    return "\n".join(parts) or _note("perceptron.json holds none of the expected results.")


def _or_table(by_hand: Mapping[str, Any]) -> str:
    df = pd.DataFrame(by_hand.get("rows") or [])
    for column in ("h", "p"):
        if column in df.columns:
            df[column] = df[column].map(lambda v: f"{float(v):.2f}")
    w, b = by_hand.get("w"), by_hand.get("b")
    return _p(f"w = {w}, b = {b}; h = w·x + b, p = sigmoid(h), pred = [p ≥ 0.5].") + _table(df)


def _mse_figure(training: Mapping[str, Any]) -> str:
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for gate, result in training.items():
        mse = result.get("mse") or []
        ax.plot(range(1, len(mse) + 1), mse, marker="o", label=gate)
    ax.set(xlabel="iteration", ylabel="MSE")
    ax.legend()
    return _figure(fig, "Squared error of a sigmoid neuron per iteration.", "MSE curves")


def _xor_figure(xor: Mapping[str, Any]) -> str:
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    single, mlp = xor.get("single_neuron_loss") or [], xor.get("mlp_loss") or []
    left.plot(range(1, len(single) + 1), single, color="tab:red")
    left.set(xlabel="iteration", ylabel="MSE", title="single neuron")
    right.plot(range(1, len(mlp) + 1), mlp, color="tab:green")
    right.set(xlabel="epoch", ylabel="BCE", yscale="log", title="one-hidden-layer MLP")
    caption = (
        f"XOR: single-neuron accuracy {_fmt(xor.get('single_neuron_accuracy'), 2)}, "
        f"MLP accuracy {_fmt(xor.get('mlp_accuracy'), 2)}."
    )
    return _figure(fig, caption, "XOR loss curves")


# --------------------------------------------------------------------------- provenance


def _provenance(ctx: _Context, config_text: str | None) -> str:
    config = (
        f"<pre>{_esc(config_text)}</pre>"
        if config_text is not None
        else _note("The config text was not passed to the report.")
    )
    inventory = _run_inventory(ctx)
    return "\n".join(
        [
            "<h3>Code</h3>",
            _git_table(ctx, inventory),
            "<h3>Configuration</h3>",
            config,
            "<h3>Software</h3>",
            _versions_table(),
            "<h3>Hardware</h3>",
            _hardware_table(),
            "<h3>Timings</h3>",
            _timings_table(ctx),
            "<h3>MLflow runs</h3>",
            _runs_inventory_table(ctx, inventory),
        ]
    )


def _report_commit() -> str:
    commit = git_commit(Path(medflow.__file__).resolve().parent)
    return commit if commit != "unknown" else git_commit()


def _git_table(ctx: _Context, inventory: list[dict[str, Any]]) -> str:
    commit = _report_commit()
    parts = [f'<p>medflow code at commit <code id="git-commit">{_esc(commit)}</code>.</p>']
    used: dict[str, int] = {}
    for item in inventory:
        run = ctx.mlflow.run(item["run_id"])
        tag = run.data.tags.get("git_commit") if run is not None else None
        if tag:
            used[tag] = used.get(tag, 0) + 1
    if used:
        df = pd.DataFrame({"commit (MLflow tag)": list(used), "runs": list(used.values())})
        parts += [_p("Commits the runs were made with:"), _table(df)]
    return "\n".join(parts)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _versions_table() -> str:
    rows = {"python": platform.python_version(), **{d: _version(d) for d in _VERSION_PACKAGES}}
    df = pd.DataFrame({"package": list(rows), "version": list(rows.values())})
    return f'<div id="package-versions">{_table(df)}</div>'


def _hardware_table() -> str:
    gpu = (
        ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if torch.cuda.is_available()
        else "none"
    )
    facts = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or _NONE,
        "CPU count": os.cpu_count(),
        "CUDA device": gpu,
        "python executable": sys.executable,
    }
    return _table(pd.DataFrame({"": list(facts), "value": list(facts.values())})) + _p(
        "Hardware of the machine that built the report (training may have run elsewhere)."
    )


def _train_seconds(ctx: _Context, folder: Path) -> float | None:
    result = _read_json(folder / "result.json") or {}
    if result.get("train_seconds") is not None:
        return float(result["train_seconds"])
    run = ctx.mlflow.run(_read_text(folder / "run_id.txt"))
    value = run.data.metrics.get("train_seconds") if run is not None else None
    return float(value) if value is not None else None


def _run_wall_seconds(ctx: _Context, run_id: str | None) -> float | None:
    run = ctx.mlflow.run(run_id)
    if run is None or not run.info.end_time or not run.info.start_time:
        return None
    return (run.info.end_time - run.info.start_time) / 1000


def _timings_table(ctx: _Context) -> str:
    rows = []
    for study in ctx.cfg.studies.values():
        for stage, values in _stage_seconds(ctx, study).items():
            known = [v for v in values if v is not None]
            rows.append(
                {
                    "study": study.name,
                    "stage": stage,
                    "runs": len(values),
                    "seconds": sum(known) if known else None,
                    "missing": len(values) - len(known),
                }
            )
    if not rows:
        return _note("No timings.")
    caption = _p(
        "pretrain/refine: training seconds (result.json, else the MLflow train_seconds metric); "
        "sweep: Optuna trial durations; evaluate: MLflow run wall time."
    )
    return _table(pd.DataFrame(rows)) + caption


def _stage_seconds(ctx: _Context, study: StudyConfig) -> dict[str, list[float | None]]:
    layout = ctx.layout
    stages: dict[str, list[float | None]] = {}
    if study.pretrain is not None:
        stages["pretrain"] = [
            _train_seconds(ctx, layout.pretrain(study.name, a))
            for a in study.activations
            if layout.pretrain(study.name, a).exists()
        ]
    trials = _read_trials(layout.sweep(study.name) / "trials.csv")
    if trials is not None and "duration_s" in trials.columns:
        stages["sweep"] = [None if pd.isna(v) else float(v) for v in trials["duration_s"]]
    stages["refine"] = [
        _train_seconds(ctx, layout.refine(study.name, m, s))
        for m in study.modes
        for s in study.seeds
        if layout.refine(study.name, m, s).exists()
    ]
    metrics = _read_json(layout.evaluate(study.name) / "metrics.json")
    if metrics is not None:
        stages["evaluate"] = [_run_wall_seconds(ctx, metrics.get("mlflow_run_id"))]
    return {k: v for k, v in stages.items() if v}


def _run_inventory(ctx: _Context) -> list[dict[str, Any]]:
    """Every MLflow run id the results folder names, with its study, stage and role."""
    items = [
        {"study": study.name, "stage": stage, "what": what, "run_id": run_id}
        for study in ctx.cfg.studies.values()
        for stage, what, run_id in _study_run_ids(ctx.layout, study)
        if run_id
    ]
    xor = (_read_json(ctx.layout.classics_json()) or {}).get("xor") or {}
    for key in ("parent_run_id", "single_neuron_run_id", "mlp_run_id"):
        if xor.get(key):
            items.append(
                {"study": "classics", "stage": "classics", "what": key, "run_id": xor[key]}
            )
    return items


def _study_run_ids(layout: Layout, study: StudyConfig) -> Iterator[tuple[str, str, str | None]]:
    name = study.name
    if study.pretrain is not None:
        for act in study.activations:
            yield "pretrain", act, _read_text(layout.pretrain(name, act) / "run_id.txt")
    yield "sweep", "parent", _read_text(layout.sweep(name) / "parent_run_id.txt")
    for mode in study.modes:
        for seed in study.seeds:
            run_id = _read_text(layout.refine(name, mode, seed) / "run_id.txt")
            yield "refine", f"{mode} seed {seed}", run_id
    metrics = _read_json(layout.evaluate(name) / "metrics.json") or {}
    yield "evaluate", "test", metrics.get("mlflow_run_id")


def _runs_inventory_table(ctx: _Context, inventory: list[dict[str, Any]]) -> str:
    if not inventory:
        return _note("No MLflow run ids found in the results folder.")
    rows = []
    for item in inventory:
        run = ctx.mlflow.run(item["run_id"])
        rows.append(
            {
                "study": item["study"],
                "stage": item["stage"],
                "run": item["what"],
                "run id": ctx.run_link(item["run_id"]),
                "experiment": run.info.experiment_id if run is not None else _NONE,
                "status": run.info.status if run is not None else _NONE,
            }
        )
    where = (
        f"Links open the MLflow UI at {ctx.ui_url}."
        if ctx.ui_url
        else "Start `mlflow ui` on the store and pass its address to get links."
    )
    problem = _note(ctx.mlflow.problem) if ctx.mlflow.problem else ""
    return _table(pd.DataFrame(rows), raw=("run id",), scroll=True) + _p(where) + problem


# --------------------------------------------------------------------------- registry

_STUDY_BUILDERS: dict[str, tuple[str, Callable[[_Context, StudyConfig], str]]] = {
    "dataset": ("Data", _dataset),
    "sweep": ("Hyper-parameter sweep", _sweep),
    "results": ("Test results", _results),
    "figures": ("Best model: confusion matrix and ROC", _figures),
    "baselines": ("Baselines", _baselines),
    "representation": ("Deep representation", _representation),
}
