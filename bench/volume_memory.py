"""Volumes: peak resident memory of a 64^3 cnn3d study on NoduleMNIST3D-sized data (goal:
under 8 GiB), phase by phase, each phase a fresh process so its peak is its own.

Phases: prepare (the .npz -> the prepared safetensors files), train (TrainData.from_prepared,
which reads the splits straight into one float32 copy, then cnn3d epochs through medflow's
loop) and evaluate (then the test split scored, batched by medflow.ml.loop.evaluate_scores;
in the training process, so its peak includes training's).
The data are generated with the real keys, dtypes, shapes and split sizes (1158/165/310
volumes of 64^3 uint8, 428 MB). Run: ``python -m bench.volume_memory [--quick]``; writes
results/bench/volume_memory.json and prints one line per phase. --quick uses 24/8/8 volumes
and checks the code, not the memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import OUT_DIR, Options, row, write_json

SIZE = 64
SPLITS = {"train": 1158, "val": 165, "test": 310}  # NoduleMNIST3D (MedMNIST v2 INFO)
GOAL_GIB = 8.0
BATCH_SIZE = 16
WIDTH = 8

_TRAIN = """
import json, resource, sys, time, torch
from medflow.data.format import PreparedDataset
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, evaluate_scores, train
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig
root, epochs, batch, width = sys.argv[1], *map(int, sys.argv[2:5])
torch.set_num_threads(2)
ds = PreparedDataset.open(root)
started = time.perf_counter()
data = TrainData.from_prepared(ds)
run = RunConfig(
    ModelConfig.from_schema(arch="cnn3d", width=width, depth=3),
    OptimConfig.from_schema(name="adam"),
    TrainConfig.from_schema(epochs=epochs, batch_size=batch, seed=0, device="cpu", patience=0,
                            augment="volume", monitor="val_auc"),
)
result = train(run, data)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
out = {"epoch_s": [h["epoch_time_s"] for h in result.history], "train_peak_rss_gib": peak()}
del data
test = ds.load_normalised("test")[0]
evaluate_scores(result.model, torch.from_numpy(test), "binary", torch.device("cpu"))
out["seconds"] = time.perf_counter() - started
out["peak_rss_gib"] = peak()  # training and then scoring the test split
print(json.dumps(out))
"""

_PREPARE = """
import json, resource, sys
from medflow.cli import main
code = main(["prepare", "--dataset", "d", "--spec", sys.argv[1], "--out", sys.argv[2]])
print(json.dumps({"code": code,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def write_npz(root: Path, splits: dict[str, int], seed: int = 0) -> Path:
    """``nodulemnist3d_64.npz`` with MedMNIST's keys: uint8 (N, 64, 64, 64), (N, 1) labels."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in splits.items():
        labels = rng.permutation(np.arange(n) % 2).astype(np.uint8)[:, None]  # both classes
        volumes = rng.integers(0, 160, size=(n, SIZE, SIZE, SIZE), dtype=np.uint8)
        volumes[labels[:, 0] == 1, 24:40, 24:40, 24:40] += 90
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = volumes, labels
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"nodulemnist3d_{SIZE}.npz"
    np.savez(path, **arrays)
    return path


def _child(code: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
    if done.returncode != 0 or result.get("code", 0) != 0:
        raise RuntimeError(f"bench child failed: {done.stderr[-2000:]}")
    return result


def bench(options: Options) -> dict[str, Any]:
    splits = {"train": 24, "val": 8, "test": 8} if options.quick else SPLITS
    epochs = 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_npz(root / "mm", splits)
        spec = json.dumps(
            {
                "source": "medmnist",
                "options": {"root": str(root / "mm"), "flag": "nodulemnist3d", "size": SIZE},
            }
        )
        started = time.perf_counter()
        prepared = _child(_PREPARE, spec, str(root / "prepared"))
        prepared["seconds"] = time.perf_counter() - started
        args = (str(root / "prepared"), str(epochs), str(BATCH_SIZE), str(WIDTH))
        trained = _child(_TRAIN, *args)
    evaluated = {"peak_rss_gib": trained.pop("peak_rss_gib")}
    trained["peak_rss_gib"] = trained.pop("train_peak_rss_gib")
    peak = max(p["peak_rss_gib"] for p in (prepared, trained, evaluated))
    return {
        "config": {
            "size": SIZE,
            "splits": splits,
            "arch": "cnn3d",
            "width": WIDTH,
            "depth": 3,
            "batch_size": BATCH_SIZE,
            "epochs": epochs,
            "goal_gib": GOAL_GIB,
        },
        "phases": {"prepare": prepared, "train": trained, "evaluate": evaluated},
        "peak_rss_gib": peak,
    }


def run(options: Options) -> list[dict[str, Any]]:
    result = bench(options)
    rows = [
        row(f"volumes: peak RSS GiB, 64^3 cnn3d {phase}", r["peak_rss_gib"], f"<= {GOAL_GIB:g}")
        for phase, r in result["phases"].items()
    ]
    write_json("volume_memory", {**result, "rows": rows}, options)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the JSON file")
    args = parser.parse_args(argv)
    options = Options(
        quick=args.quick, threads=2, out_dir=args.out, command="python -m bench.volume_memory"
    )
    result_rows = run(options)
    for r in result_rows:
        print(f"{r['case']}: {r['ratio']:.2f} (goal {r['goal']})")


if __name__ == "__main__":
    main()
