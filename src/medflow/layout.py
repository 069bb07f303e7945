"""Every folder and file name under results/: the one place paths are spelled.

Snakemake rules build their input/output patterns from it (passing "{study}"-style wildcards
as names) and the stages write exactly there. Code handed a folder (the prepared format, the
Optuna machinery) names the files in it with the static methods, e.g. ``Layout.model_file``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

# The config a command reads when given none (the workflow's configfile spells it too).
DEFAULT_CONFIG = Path("config/config.yaml")
Name = str | int


@dataclass(frozen=True)
class Layout:
    results: Path = Path("results")

    # Artifact names inside an MLflow run (not files under results/).
    CONFIG_ARTIFACT: ClassVar[str] = "config.json"
    LEARNING_CURVE_ARTIFACT: ClassVar[str] = "learning_curve.png"

    # ---- files of a folder, for code that is handed the folder

    @staticmethod
    def model_file(folder: Path) -> Path:
        """A trained model (medflow.ml.transfer's self-describing file)."""
        return Path(folder) / "model.pt"

    @staticmethod
    def result_file(folder: Path) -> Path:
        return Path(folder) / "result.json"

    @staticmethod
    def run_id_file(folder: Path) -> Path:
        return Path(folder) / "run_id.txt"

    @staticmethod
    def checkpoint_file(folder: Path) -> Path:
        """Training state after the last epoch, to resume an interrupted run."""
        return Path(folder) / "checkpoint.pt"

    @staticmethod
    def resume_file(folder: Path) -> Path:
        """A finished refine seed's summary, kept where Snakemake does not delete it."""
        return Path(folder) / "finished.json"

    @staticmethod
    def meta_file(folder: Path) -> Path:
        return Path(folder) / "meta.json"

    @staticmethod
    def split_file(folder: Path, split: str) -> Path:
        return Path(folder) / f"{split}.safetensors"

    @staticmethod
    def parent_run_id_file(folder: Path) -> Path:
        return Path(folder) / "parent_run_id.txt"

    @staticmethod
    def best_params_file(folder: Path) -> Path:
        return Path(folder) / "best_params.json"

    @staticmethod
    def trials_file(folder: Path) -> Path:
        return Path(folder) / "trials.csv"

    @staticmethod
    def cells_file(folder: Path) -> Path:
        """The sweep per optimizer x activation (...) cell, and the factors' rankings."""
        return Path(folder) / "cells.json"

    @staticmethod
    def journal_file(folder: Path) -> Path:
        return Path(folder) / "optuna.journal"

    @staticmethod
    def claim_lock_file(folder: Path) -> Path:
        return Path(folder) / "claim.lock"

    @staticmethod
    def heartbeats_dir(folder: Path) -> Path:
        return Path(folder) / "heartbeats"

    @staticmethod
    def heartbeat_file(folder: Path, number: int) -> Path:
        return Layout.heartbeats_dir(folder) / f"trial_{number}"

    @staticmethod
    def heartbeat_clock_file(folder: Path) -> Path:
        return Layout.heartbeats_dir(folder) / ".clock"

    # ---- prepare

    def prepared(self, dataset: str) -> Path:
        return self.results / "data" / dataset

    def prepared_meta(self, dataset: str) -> Path:
        return self.meta_file(self.prepared(dataset))

    def prepared_split(self, dataset: str, split: str) -> Path:
        return self.split_file(self.prepared(dataset), split)

    def prepared_files(self, dataset: str) -> dict[str, Path]:
        """Everything prepare writes for one dataset: "meta" and one file per split."""
        from medflow.data.base import SPLITS  # numpy: not for the commands that need no data

        files = {"meta": self.prepared_meta(dataset)}
        files.update({split: self.prepared_split(dataset, split) for split in SPLITS})
        return files

    # ---- classics

    def classics_json(self) -> Path:
        return self.results / "classics" / "perceptron.json"

    # ---- pretrain: one folder per study and activation

    def pretrain_root(self, study: str) -> Path:
        return self.results / "pretrain" / study

    def pretrain(self, study: str, activation: str) -> Path:
        return self.pretrain_root(study) / activation

    def pretrain_model(self, study: str, activation: str) -> Path:
        return self.model_file(self.pretrain(study, activation))

    def pretrain_result(self, study: str, activation: str) -> Path:
        return self.result_file(self.pretrain(study, activation))

    def pretrain_run_id(self, study: str, activation: str) -> Path:
        return self.run_id_file(self.pretrain(study, activation))

    # ---- sweep

    def sweep(self, study: str) -> Path:
        return self.results / "sweeps" / study

    def sweep_parent_run_id(self, study: str) -> Path:
        return self.parent_run_id_file(self.sweep(study))

    def sweep_best(self, study: str) -> Path:
        return self.best_params_file(self.sweep(study))

    def sweep_trials(self, study: str) -> Path:
        return self.trials_file(self.sweep(study))

    def sweep_cells(self, study: str) -> Path:
        return self.cells_file(self.sweep(study))

    def sweep_worker_done(self, study: str, worker: Name) -> Path:
        return self.sweep(study) / "workers" / f"{worker}.done"

    # ---- refine: one folder per seed, one record per job (batch of seeds)

    def refine(self, study: str, mode: str, seed: Name) -> Path:
        return self.results / "refine" / study / mode / f"seed{seed}"

    def refine_model(self, study: str, mode: str, seed: Name) -> Path:
        return self.model_file(self.refine(study, mode, seed))

    def refine_result(self, study: str, mode: str, seed: Name) -> Path:
        return self.result_file(self.refine(study, mode, seed))

    def refine_run_id(self, study: str, mode: str, seed: Name) -> Path:
        return self.run_id_file(self.refine(study, mode, seed))

    def refine_batch(self, study: str, mode: str, seeds: str) -> Path:
        """The record of one refine job: ``seeds`` is its seed label, e.g. "0-1-2"."""
        return self.results / "refine" / study / mode / f"seeds-{seeds}.json"

    # ---- evaluate

    def evaluate(self, study: str) -> Path:
        return self.results / "evaluate" / study

    def evaluate_metrics(self, study: str) -> Path:
        return self.evaluate(study) / "metrics.json"

    def evaluate_confusion(self, study: str) -> Path:
        return self.evaluate(study) / "confusion.png"

    def evaluate_roc(self, study: str) -> Path:
        return self.evaluate(study) / "roc.png"

    def evaluate_reliability(self, study: str) -> Path:
        return self.evaluate(study) / "reliability.png"

    def evaluate_model_card(self, study: str) -> Path:
        return self.evaluate(study) / "model_card.md"

    def evaluate_predictions(self, study: str) -> Path:
        """The folder of test-split scores, one CSV per refine run."""
        return self.evaluate(study) / "predictions"

    def evaluate_prediction(self, study: str, mode: str, seed: Name) -> Path:
        return self.evaluate_predictions(study) / f"{mode}_seed{seed}.csv"

    # ---- analyze: what the report shows that is computed on the test split (evaluate side)

    def analysis(self, study: str) -> Path:
        return self.evaluate(study) / "analysis"

    def analysis_baseline(self, study: str) -> Path:
        """The classical baselines (tabular: logistic regression; sequence: 1-NN, logistic
        regression) scored on the test split."""
        return self.analysis(study) / "baseline.json"

    def analysis_importances(self, study: str) -> Path:
        """fANOVA parameter importances of the study's sweep."""
        return self.analysis(study) / "importances.json"

    def analysis_representation(self, study: str) -> Path:
        """Which model the representation figures show, their captions and files."""
        return self.analysis(study) / "representation.json"

    def analysis_figures(self, study: str) -> Path:
        """The folder of the representation PNGs (none where the model has no conv layer)."""
        return self.analysis(study) / "figures"

    def analysis_filters(self, study: str) -> Path:
        return self.analysis_figures(study) / "filters.png"

    def analysis_feature_maps(self, study: str) -> Path:
        return self.analysis_figures(study) / "feature_maps.png"

    def analysis_saliency(self, study: str) -> Path:
        """Time-resolved saliency of a few test series (sequence targets)."""
        return self.analysis_figures(study) / "saliency.png"

    # ---- report

    def report(self) -> Path:
        return self.results / "report" / "index.html"

    # ---- logs: one per job

    def logs(self) -> Path:
        return self.results / "logs"

    def prepare_log(self, dataset: str) -> Path:
        return self.logs() / "prepare" / f"{dataset}.log"

    def classics_log(self) -> Path:
        return self.logs() / "classics.log"

    def job_server_log(self) -> Path:
        """The workflow run's job server (medflow.runtime.job_server), appended to."""
        return self.logs() / "job_server.log"

    def pretrain_log(self, study: str, activation: str) -> Path:
        return self.logs() / "pretrain" / study / f"{activation}.log"

    def sweep_log(self, study: str, job: str) -> Path:
        """``job`` is "init" or "best"; workers log to sweep_worker_log."""
        return self.logs() / "sweep" / study / f"{job}.log"

    def sweep_worker_log(self, study: str, worker: Name) -> Path:
        return self.sweep_log(study, f"worker_{worker}")

    def refine_log(self, study: str, mode: str, seeds: str) -> Path:
        return self.logs() / "refine" / study / f"{mode}_seeds-{seeds}.log"

    def evaluate_log(self, study: str) -> Path:
        return self.logs() / "evaluate" / f"{study}.log"

    def analyze_log(self, study: str) -> Path:
        return self.logs() / "analyze" / f"{study}.log"

    def report_log(self) -> Path:
        return self.logs() / "report.log"

    # ---- machinery under results/

    def tracking_db(self) -> Path:
        """The default MLflow store (SQLite) when no tracking URI is configured."""
        return self.results / "mlflow.db"

    def artifacts(self) -> Path:
        """Artifact root of a local MLflow store."""
        return self.results / "mlartifacts"

    def gpu_slots(self) -> Path:
        """Default folder of the GPU slot lock files (medflow.runtime.gpu_slots)."""
        return self.results / ".gpu_slots"

    @staticmethod
    def gpu_slot_file(lock_dir: Path, host: str, slot: str) -> Path:
        return Path(lock_dir) / f"{host}.gpu{slot}.lock"


def seed_label(seeds: Sequence[int]) -> str:
    """The file-name label of a batch of seeds: (0, 1, 2) -> "0-1-2"."""
    return "-".join(str(seed) for seed in seeds)
