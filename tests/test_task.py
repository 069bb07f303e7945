"""Tests for medflow.ml.task: losses match torch references, outputs and scores per task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medflow.ml.task import build_loss, n_outputs_for, predict_scores

# --- losses --------------------------------------------------------------------------------


def test_binary_loss_matches_bce_with_logits() -> None:
    torch.manual_seed(0)
    logits = torch.randn(8, 1)
    y = torch.randint(0, 2, (8,))
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], y.float())
    loss = build_loss("binary")
    torch.testing.assert_close(loss(logits, y), expected)
    torch.testing.assert_close(loss(logits, y[:, None]), expected)  # MedMNIST's (N, 1)
    with pytest.raises(ValueError, match="1 output"):
        loss(torch.randn(8, 2), y)


def test_multiclass_loss_matches_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    loss = build_loss("multiclass")
    torch.testing.assert_close(loss(logits, y), F.cross_entropy(logits, y))
    torch.testing.assert_close(loss(logits, y[:, None]), F.cross_entropy(logits, y))


def test_multilabel_loss_matches_bce_with_logits() -> None:
    torch.manual_seed(0)
    logits = torch.randn(8, 4)
    y = torch.randint(0, 2, (8, 4))
    expected = F.binary_cross_entropy_with_logits(logits, y.float())
    torch.testing.assert_close(build_loss("multilabel")(logits, y), expected)


def test_regression_loss_is_elementwise_mse() -> None:
    torch.manual_seed(0)
    outputs = torch.randn(8, 1)
    targets = torch.randn(8)
    expected = ((outputs[:, 0] - targets) ** 2).mean()  # not the (8, 8) broadcast
    torch.testing.assert_close(build_loss("regression")(outputs, targets), expected)
    torch.testing.assert_close(
        build_loss("regression", "squared_error")(outputs, targets), expected
    )


def test_squared_error_binary_and_multilabel() -> None:
    torch.manual_seed(0)
    z = torch.randn(8, 1)
    y = torch.randint(0, 2, (8,))
    expected = ((torch.sigmoid(z[:, 0]) - y.float()) ** 2).mean()
    torch.testing.assert_close(build_loss("binary", "squared_error")(z, y), expected)

    z = torch.randn(8, 3)
    y = torch.randint(0, 2, (8, 3))
    expected = ((torch.sigmoid(z) - y.float()) ** 2).mean()
    torch.testing.assert_close(build_loss("multilabel", "squared_error")(z, y), expected)


def test_squared_error_multiclass_uses_softmax_one_hot() -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    one_hot = torch.eye(4)[y]
    expected = ((torch.softmax(z, dim=1) - one_hot) ** 2).mean()
    torch.testing.assert_close(build_loss("multiclass", "squared_error")(z, y), expected)


def test_losses_are_differentiable() -> None:
    torch.manual_seed(0)
    z = torch.randn(4, 1, requires_grad=True)
    build_loss("binary", "squared_error")(z, torch.tensor([0, 1, 1, 0])).backward()
    assert z.grad is not None
    assert z.grad.abs().sum() > 0


def test_unknown_task_or_loss_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'ordinal'.*multilabel"):
        build_loss("ordinal")
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'.*squared_error"):
        build_loss("binary", "hinge")
    with pytest.raises(ValueError, match="unknown task"):
        n_outputs_for("ordinal", 3)
    with pytest.raises(ValueError, match="unknown task"):
        predict_scores("ordinal", torch.zeros(1, 1))


# --- outputs and scores --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "n_classes", "expected"),
    [("binary", 2, 1), ("multiclass", 9, 9), ("multilabel", 14, 14), ("regression", 1, 1)],
)
def test_n_outputs_for(task: str, n_classes: int, expected: int) -> None:
    assert n_outputs_for(task, n_classes) == expected


def test_n_outputs_for_rejects_too_few_classes() -> None:
    with pytest.raises(ValueError, match="too small"):
        n_outputs_for("multiclass", 1)


def test_predict_scores() -> None:
    torch.manual_seed(0)
    z1 = torch.randn(5, 1)
    torch.testing.assert_close(predict_scores("binary", z1), torch.sigmoid(z1[:, 0]))
    z = torch.randn(5, 3)
    probs = predict_scores("multiclass", z)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(5))
    torch.testing.assert_close(probs, torch.softmax(z, dim=1))
    torch.testing.assert_close(predict_scores("multilabel", z), torch.sigmoid(z))
    torch.testing.assert_close(predict_scores("regression", z), z)
