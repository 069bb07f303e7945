"""Tests for the lecture's perceptron classics (by-hand OR table, R `train()` port, XOR)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medflow.config.schema import defaults
from medflow.errors import ConfigError
from medflow.ml.perceptron import (
    GATES,
    ClassicsConfig,
    XorResult,
    gate_table,
    or_by_hand,
    run_classics,
    train_perceptron,
    xor_experiment,
)
from medflow.runtime.io import write_json_atomic

CFG = ClassicsConfig.from_schema()  # the schema defaults: what the classics stage runs
ROWS = [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return run_classics(CFG)


@pytest.fixture(scope="module")
def xor_result() -> XorResult:
    return xor_experiment(CFG)


def scalar_train(
    y: tuple[int, ...], w: tuple[float, float], b: float, iterations: int, lr: float
) -> tuple[list[float], list[float], float]:
    """Row-by-row transcription of the R loop, independent of the numpy port."""
    w1, w2 = w
    errors = []
    for _ in range(iterations):
        preds = [1.0 / (1.0 + math.exp(-(w1 * x1 + w2 * x2 + b))) for x1, x2 in ROWS]
        g1 = g2 = gb = 0.0
        for (x1, x2), t, p in zip(ROWS, y, preds, strict=True):
            common = (p - t) * p * (1.0 - p)
            g1 += common * x1
            g2 += common * x2
            gb += common
        w1, w2, b = w1 - lr * g1, w2 - lr * g2, b - lr * gb
        errors.append(sum((t - p) ** 2 for t, p in zip(y, preds, strict=True)) / len(y))
    return errors, [w1, w2], b


def assert_lecture_or_table(rows: list[dict]) -> None:
    """The lecture's by-hand OR table for w = (1, -1), b = -0.5 (seed 002)."""
    assert [(r["x1"], r["x2"], r["y"]) for r in rows] == [
        (0, 0, 0),
        (0, 1, 1),
        (1, 0, 1),
        (1, 1, 1),
    ]
    assert [r["h"] for r in rows] == [-0.5, -1.5, 0.5, -0.5]
    assert [round(r["p"], 2) for r in rows] == [0.38, 0.18, 0.62, 0.38]
    assert [r["pred"] for r in rows] == [0, 0, 1, 0]


def test_or_by_hand_matches_lecture_table() -> None:
    rows = or_by_hand(CFG)
    assert_lecture_or_table(rows)
    assert rows[0]["p"] == pytest.approx(1.0 / (1.0 + math.exp(0.5)), abs=1e-15)


def test_gate_table_and_gates() -> None:
    assert gate_table().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert GATES == {"OR": (0, 1, 1, 1), "AND": (0, 0, 0, 1), "XOR": (0, 1, 1, 0)}


@pytest.mark.parametrize("gate", ["OR", "AND", "XOR"])
def test_train_perceptron_matches_scalar_loop(gate: str) -> None:
    y = GATES[gate]
    mse, w, b = train_perceptron(gate_table(), np.array(y), CFG.w0, CFG.b0, 10, 1.0)
    ref_mse, ref_w, ref_b = scalar_train(y, CFG.w0, CFG.b0, 10, 1.0)
    assert len(mse) == 10
    assert mse == pytest.approx(ref_mse, rel=1e-12, abs=1e-15)
    assert w == pytest.approx(ref_w, rel=1e-12, abs=1e-15)
    assert b == pytest.approx(ref_b, rel=1e-12, abs=1e-15)


def test_first_or_error_is_by_hand_error() -> None:
    rows = or_by_hand(CFG)
    by_hand = sum((r["y"] - r["p"]) ** 2 for r in rows) / 4
    mse, _, _ = train_perceptron(gate_table(), np.array(GATES["OR"]), CFG.w0, CFG.b0, 10, 1.0)
    assert mse[0] == pytest.approx(by_hand, rel=1e-12)
    assert mse[0] == pytest.approx((0.38**2 + 0.82**2 + 0.38**2 + 0.62**2) / 4, abs=5e-3)


@pytest.mark.parametrize("gate", ["OR", "AND"])
def test_linearly_separable_errors_decrease(doc: dict[str, Any], gate: str) -> None:
    mse = doc["training"][gate]["mse"]
    assert all(b < a for a, b in itertools.pairwise(mse))


def test_single_neuron_cannot_solve_xor(xor_result: XorResult) -> None:
    assert xor_result.single_neuron_accuracy <= 0.75
    assert len(xor_result.single_neuron_loss) == CFG.long_iterations


def test_mlp_solves_xor(xor_result: XorResult) -> None:
    assert xor_result.mlp_accuracy == 1.0
    assert len(xor_result.mlp_loss) == CFG.mlp_epochs
    assert xor_result.mlp_loss[-1] < xor_result.mlp_loss[0]
    with torch.no_grad():
        logits = xor_result.mlp(torch.tensor(gate_table(), dtype=torch.float32)).squeeze(1)
    assert (logits > 0).int().tolist() == list(GATES["XOR"])


def test_run_classics_document_shape(doc: dict[str, Any]) -> None:
    parsed = json.loads(json.dumps(doc, allow_nan=False))
    assert parsed == doc  # only JSON-native types, nothing lost in a round trip
    assert set(doc) == {"or_by_hand", "training", "xor"}
    assert set(doc["or_by_hand"]) == {"w", "b", "rows"}
    assert doc["or_by_hand"]["w"] == [1.0, -1.0] and doc["or_by_hand"]["b"] == -0.5
    assert doc["or_by_hand"]["rows"] == or_by_hand(CFG)
    assert set(doc["training"]) == {"OR", "AND", "XOR"}
    for entry in doc["training"].values():
        assert set(entry) == {"mse", "w", "b"}
        assert len(entry["mse"]) == 10 and len(entry["w"]) == 2
    assert set(doc["xor"]) == {
        "single_neuron_accuracy",
        "mlp_accuracy",
        "single_neuron_loss",
        "mlp_loss",
    }


def test_deterministic(doc: dict[str, Any], xor_result: XorResult) -> None:
    assert run_classics(CFG) == doc
    assert xor_result.to_dict() == doc["xor"]


def test_mlp_training_leaves_global_torch_state_alone() -> None:
    before, threads = torch.get_rng_state(), torch.get_num_threads()
    xor_experiment(ClassicsConfig.from_schema(long_iterations=1, mlp_epochs=1))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.get_num_threads() == threads


def test_from_section_and_schema() -> None:
    cfg = ClassicsConfig.from_schema(iterations=3, w0=[0.5, 0.25], seed=7)
    assert cfg == ClassicsConfig.from_schema(iterations=3, w0=(0.5, 0.25), seed=7)
    assert (cfg.iterations, cfg.w0, cfg.seed) == (3, (0.5, 0.25), 7)
    assert ClassicsConfig.from_section(defaults("classics")) == CFG  # enabled/datasets skipped
    with pytest.raises(TypeError, match=r"bogus.*lrate"):
        ClassicsConfig.from_schema(bogus=1, lrate=0.1, lr=0.5)
    with pytest.raises(ConfigError, match="mlp_activation"):
        ClassicsConfig.from_schema(mlp_activation="swish")


def test_write_json_atomic(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "classics.json"
    write_json_atomic({"a": [1, 2.5]}, target)
    write_json_atomic({"a": [3]}, target)  # replaces in place
    assert json.loads(target.read_text()) == {"a": [3]}
    assert [p.name for p in target.parent.iterdir()] == ["classics.json"]  # no temp left over
    with pytest.raises(TypeError):  # not JSON: the earlier file stays, no temp is left
        write_json_atomic({"x": object()}, target)
    assert json.loads(target.read_text()) == {"a": [3]}
    assert [p.name for p in target.parent.iterdir()] == ["classics.json"]
    write_json_atomic({"x": float("nan")}, target)  # undefined numbers are null in JSON
    assert json.loads(target.read_text()) == {"x": None}
