"""Where every stage reads and writes under results/: the one place paths are spelled.

Snakemake rules build their input/output patterns from it (passing "{study}"-style
wildcards as names) and the CLI derives its default paths from it, so both agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    results: Path = Path("results")

    def prepared(self, dataset: str) -> Path:
        return self.results / "data" / dataset

    def classics_json(self) -> Path:
        return self.results / "classics" / "perceptron.json"

    def pretrain(self, study: str, activation: str) -> Path:
        return self.results / "pretrain" / study / activation

    def pretrain_root(self, study: str) -> Path:
        return self.results / "pretrain" / study

    def sweep(self, study: str) -> Path:
        return self.results / "sweeps" / study

    def refine(self, study: str, mode: str, seed: int | str) -> Path:
        return self.results / "refine" / study / mode / f"seed{seed}"

    def refine_batch(self, study: str, mode: str, seeds: str) -> Path:
        """The record of one refine job: ``seeds`` is its seed label, e.g. "0-1-2"."""
        return self.results / "refine" / study / mode / f"seeds-{seeds}.json"

    def evaluate(self, study: str) -> Path:
        return self.results / "evaluate" / study

    def report(self) -> Path:
        return self.results / "report" / "index.html"

    def logs(self) -> Path:
        return self.results / "logs"


def seed_label(seeds: Sequence[int]) -> str:
    """The file-name label of a batch of seeds: (0, 1, 2) -> "0-1-2"."""
    return "-".join(str(seed) for seed in seeds)
