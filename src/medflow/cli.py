"""Command-line wrappers around the stages; Snakemake rules call these.

Argument parsing only: a command builds its validated config sections and the StageContext
once and calls ``medflow.stages.<x>.run(ctx, ...)``. Every command validates its configuration
first, and every user-fixable problem (MedflowError) ends as one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from medflow.config.load import load_config, read_config_file
from medflow.config.schema import validate_config, validate_section
from medflow.config.types import (
    ClassicsSettings,
    DatasetConfig,
    MedflowConfig,
    StudyConfig,
    TrackingConfig,
)
from medflow.errors import MedflowError
from medflow.layout import DEFAULT_CONFIG as DEFAULT_CONFIG_PATH
from medflow.layout import Layout
from medflow.runtime.progress import ThrottledProgressFilter, TqdmProgressHandler
from medflow.stages.context import StageContext

log = logging.getLogger("medflow")
DEFAULT_CONFIG = str(DEFAULT_CONFIG_PATH)


def _parse_spec(text: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedflowError(f"--spec is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MedflowError("--spec must be a JSON object")
    return raw


def _spec_sections(args: argparse.Namespace, *names: str) -> dict[str, dict[str, Any]]:
    """The sections of --spec JSON ({section: {...}}), which must be exactly ``names``,
    each validated against its schema definition."""
    raw = _parse_spec(args.spec)
    missing = [n for n in names if n not in raw]
    if missing or set(raw) - set(names):
        raise MedflowError(f"--spec must have exactly the sections {', '.join(names)}")
    return {n: validate_section(raw[n], n, source=f"--spec {n}") for n in names}


def _context(args: argparse.Namespace, tracking: TrackingConfig) -> StageContext:
    """What every stage entry receives: the --results layout and the tracking section."""
    return StageContext(layout=Layout(Path(args.results)), tracking=tracking)


def _study(args: argparse.Namespace) -> tuple[StageContext, StudyConfig]:
    """A study command's context and --study, validated once (from --spec or --config)."""
    if args.spec is None:
        cfg = load_config(args.config)
        return _context(args, cfg.tracking), cfg.study(args.study)
    sections = _spec_sections(args, "study", "tracking")
    tracking = TrackingConfig.from_section(sections["tracking"])
    return _context(args, tracking), StudyConfig.from_validated(args.study, sections["study"])


def cmd_validate(args: argparse.Namespace) -> None:
    cfg = load_config(args.config)
    print(f"{args.config}: valid ({len(cfg.datasets)} datasets)")


def cmd_prepare(args: argparse.Namespace) -> None:
    from medflow.stages import prepare  # heavy imports only when needed

    if args.spec is None:
        cfg = load_config(args.config)
        dataset, tracking = cfg.dataset(args.dataset), cfg.tracking
    else:  # Snakemake passes the validated dataset section alone: prepare logs nothing
        source = f"--spec for dataset '{args.dataset}'"
        section = validate_section(_parse_spec(args.spec), "dataset", source=source)
        dataset, tracking = DatasetConfig.from_validated(args.dataset, section), None
    ctx = _context(args, tracking or TrackingConfig.from_schema())
    prepare.run(ctx, dataset, Path(args.out) if args.out else None)


def cmd_classics(args: argparse.Namespace) -> None:
    from medflow.stages import classics

    if args.spec is None:
        cfg = load_config(args.config)
        settings, tracking = cfg.classics, cfg.tracking
    else:
        sections = _spec_sections(args, "classics", "tracking")
        settings = ClassicsSettings.from_section(sections["classics"])
        tracking = TrackingConfig.from_section(sections["tracking"])
    classics.run(_context(args, tracking), settings, Path(args.out) if args.out else None)


def cmd_pretrain(args: argparse.Namespace) -> None:
    if args.pretrained_by not in (None, args.study):
        from medflow.stages.pretrain_shared import take_over

        take_over(Layout(Path(args.results)), args.pretrained_by, args.study, args.activation)
        return
    from medflow.stages import pretrain

    ctx, study = _study(args)
    pretrain.run(ctx, study, args.activation)


def cmd_sweep_init(args: argparse.Namespace) -> None:
    from medflow.stages import sweep

    sweep.init(*_study(args))


def cmd_sweep_worker(args: argparse.Namespace) -> None:
    from medflow.stages import sweep

    ctx, study = _study(args)
    sweep.worker(ctx, study, args.worker)


def cmd_sweep_best(args: argparse.Namespace) -> None:
    from medflow.stages import sweep

    sweep.best(*_study(args))


def cmd_refine(args: argparse.Namespace) -> None:
    from medflow.stages import refine

    ctx, study = _study(args)
    if args.mode not in study.modes:
        raise MedflowError(f"study '{study.name}' has no refine mode '{args.mode}'")
    unknown = [seed for seed in args.seeds if seed not in study.seeds]
    if unknown or len(set(args.seeds)) != len(args.seeds):
        raise MedflowError(
            f"--seeds {' '.join(map(str, args.seeds))}: each must be one of study "
            f"'{study.name}' refine.seeds {list(study.seeds)}, once"
        )
    refine.run(ctx, study, args.mode, args.seeds)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from medflow.stages import evaluate

    evaluate.run(*_study(args))


def cmd_analyze(args: argparse.Namespace) -> None:
    from medflow.stages import analyze

    analyze.run(*_study(args))


def cmd_report(args: argparse.Namespace) -> None:
    import yaml

    from medflow.stages import report

    if args.spec is not None:
        raw = _parse_spec(args.spec)
        cfg = MedflowConfig.from_validated(validate_config(raw, "--spec"), "--spec")
    else:
        raw = read_config_file(args.config)
        cfg = MedflowConfig.from_validated(raw, args.config)
    report.run(_context(args, cfg.tracking), cfg, yaml.safe_dump(raw, sort_keys=False))


def _gpu_slot(args: argparse.Namespace) -> AbstractContextManager[str | None]:
    """A GPU of its own for a training command (medflow.runtime.gpu_slots), held until it ends."""
    if not getattr(args, "uses_gpu", False):
        return nullcontext()
    from medflow.runtime.gpu_slots import claim_gpu_slot, default_lock_dir

    return claim_gpu_slot(args.gpu_lock_dir or default_lock_dir(Path(args.results)))


def _gpu_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpu-lock-dir",
        help="GPU slot lock files (default $MEDFLOW_GPU_LOCK_DIR, else <results>/.gpu_slots)",
    )
    parser.set_defaults(uses_gpu=True)


def _stage_parser(sub, name: str, help_text: str, func) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument("--study", required=True, help="study name in the config")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
    parser.add_argument("--spec", help='{"study": ..., "tracking": ...} as JSON (from Snakemake)')
    parser.add_argument("--results", default="results", help="results folder")
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medflow", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log", metavar="FILE", help="write the full log here; only warnings and errors to stderr"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check a config file against the schema")
    validate.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
    validate.set_defaults(func=cmd_validate)

    prepare = sub.add_parser("prepare", help="prepare one dataset into results/data/<name>")
    prepare.add_argument("--dataset", required=True, help="dataset name in the config")
    prepare.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
    prepare.add_argument("--spec", help="the dataset section as JSON (instead of --config)")
    prepare.add_argument("--results", default="results", help="results folder")
    prepare.add_argument("--out", help="output folder (default <results>/data/<name>)")
    prepare.set_defaults(func=cmd_prepare)

    classics = sub.add_parser("classics", help="the lecture's perceptron experiments")
    classics.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
    classics.add_argument("--spec", help='{"classics": ..., "tracking": ...} as JSON')
    classics.add_argument("--results", default="results", help="results folder")
    classics.add_argument("--out", help="JSON output (default <results>/classics/perceptron.json)")
    classics.set_defaults(func=cmd_classics)

    pretrain = _stage_parser(sub, "pretrain", "pretrain one backbone", cmd_pretrain)
    pretrain.add_argument("--activation", required=True)
    pretrain.add_argument(
        "--pretrained-by",
        metavar="STUDY",
        help="an earlier study with the same pretraining: copy its backbone instead of training",
    )
    _gpu_options(pretrain)
    _stage_parser(
        sub, "sweep-init", "create the Optuna study and MLflow parent run", cmd_sweep_init
    )
    worker = _stage_parser(sub, "sweep-worker", "pull and run trials", cmd_sweep_worker)
    worker.add_argument("--worker", default="0", help="worker name, for logs and tags")
    _gpu_options(worker)
    _stage_parser(
        sub, "sweep-best", "write the best trial's parameters and the trials table", cmd_sweep_best
    )
    refine = _stage_parser(sub, "refine", "retrain the best configuration", cmd_refine)
    refine.add_argument("--mode", required=True, choices=["finetune", "linear_probe", "scratch"])
    refine.add_argument(
        "--seeds", "--seed", required=True, type=int, nargs="+", help="seeds, trained in turn"
    )
    _gpu_options(refine)
    _stage_parser(sub, "evaluate", "test-split metrics of every refine run", cmd_evaluate)
    _stage_parser(
        sub, "analyze", "baseline, representation and importances for the report", cmd_analyze
    )

    report = sub.add_parser("report", help="the self-contained HTML report")
    report.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
    report.add_argument("--spec", help="the whole validated config as JSON (from Snakemake)")
    report.add_argument("--results", default="results", help="results folder")
    report.set_defaults(func=cmd_report)
    return parser


def configure_logging(verbose: bool, log_file: str | None, interactive: bool | None = None) -> None:
    """A log file gets every record (one line per epoch); the terminal gets tqdm bars when
    interactive, else warnings plus a progress line per task at most every 30 s."""
    level = logging.DEBUG if verbose else logging.INFO
    interactive = sys.stderr.isatty() if interactive is None else interactive
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    terminal: logging.Handler
    if log_file:
        terminal = logging.StreamHandler(sys.stderr)
        terminal.addFilter(ThrottledProgressFilter(interval_s=30.0))
    elif interactive:
        terminal = TqdmProgressHandler(sys.stderr)
    else:
        terminal = logging.StreamHandler(sys.stderr)
    handlers = [terminal]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=handlers, force=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.log)
    try:
        with _gpu_slot(args):
            args.func(args)
    except MedflowError as exc:
        if args.log:
            log.debug("failed: %s", exc)  # keep the reason in the job's log file too
            with open(args.log, "a") as fh:
                fh.write(f"medflow: error: {exc}\n")
        print(f"medflow: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
