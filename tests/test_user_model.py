"""Your own model (model.arch: "package.module:factory"): built by import path, checked on
a probe batch, split into backbone and head for transfer, saved as a self-describing file,
logged to MLflow and loaded back; every problem is one line naming model.arch."""

from __future__ import annotations

import itertools
import logging
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from medflow.errors import ConfigError
from medflow.layout import Layout
from medflow.ml.models import (
    Classifier,
    ModelConfig,
    build_model,
    freeze_backbone,
    has_head_split,
    replace_head,
)
from medflow.ml.transfer import (
    check_transferable,
    initial_model,
    load_model_file,
    save_model_file,
)
from medflow.ml.user_model import WholeModel
from medflow.tracking.client import Tracker, find_runs
from medflow.tracking.models import load_torch_model, log_torch_model
from medflow.tracking.runs import tracked_run
from tests.conftest import run_snakemake
from tests.test_pipeline import tiny_config, write_config

MODULE_SOURCE = textwrap.dedent(
    '''
    """A user's models, written as a lab would."""
    import math

    from torch import nn

    ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


    class SmallConv(nn.Module):
        """Conv features, then the replaceable head medflow looks for."""

        def __init__(self, channels, width, n_outputs, activation):
            super().__init__()
            self.conv = nn.Conv2d(channels, width, 3, padding=1)
            self.act = ACTIVATIONS[activation]()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.head = nn.Linear(width, n_outputs)

        def forward(self, x):
            return self.head(self.flatten(self.pool(self.act(self.conv(x)))))


    def conv(input_shape, n_outputs, width=4, activation="relu"):
        return SmallConv(input_shape[0], width, n_outputs, activation)


    def whole(input_shape, n_outputs):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_outputs))


    def wrong_outputs(input_shape, n_outputs):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_outputs + 1))


    def raises(input_shape, n_outputs):
        raise RuntimeError("no GPU\\nfound")


    def not_a_module(input_shape, n_outputs):
        return 42


    class UnusedHead(nn.Module):
        def __init__(self, n_inputs, n_outputs):
            super().__init__()
            self.body = nn.Linear(n_inputs, n_outputs)
            self.head = nn.Linear(7, n_outputs)  # not what forward applies last

        def forward(self, x):
            return self.body(x.flatten(1))


    def bad_head(input_shape, n_outputs):
        return UnusedHead(math.prod(input_shape), n_outputs)
    '''
)

_names = itertools.count()


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh module name per test (imports are cached per process)."""
    name = f"lab_models_{next(_names)}"
    folder = tmp_path / "usermods"
    folder.mkdir()
    (folder / f"{name}.py").write_text(MODULE_SOURCE)
    (folder / f"{name}_broken.py").write_text("import numpy\nraise ImportError('needs\\nCUDA')\n")
    monkeypatch.syspath_prepend(str(folder))
    yield name
    for module in (name, f"{name}_broken"):
        sys.modules.pop(module, None)


def user_cfg(arch: str, **values) -> ModelConfig:
    return ModelConfig.from_schema(arch=arch, **values)


def one_line_error(arch: str, shape=(1, 8, 8), n_outputs=2, **values) -> str:
    with pytest.raises(ConfigError) as err:
        build_model(user_cfg(arch, **values), shape, n_outputs)
    message = str(err.value)
    assert "\n" not in message and message.startswith("model."), message
    return message


# --- building and the protocol -------------------------------------------------------------


def test_model_with_a_head_is_split_and_gets_options_and_activation(user_module: str) -> None:
    cfg = user_cfg(f"{user_module}:conv", options={"width": 5}, activation="tanh")
    model = build_model(cfg, (1, 8, 8), 3)
    assert isinstance(model, Classifier) and has_head_split(model)
    assert model.feature_dim == 5 and model.n_outputs == 3
    assert isinstance(model.backbone.head, nn.Identity)  # the head moved out of the backbone
    assert isinstance(model.backbone.act, nn.Tanh)
    assert model(torch.rand(4, 1, 8, 8)).shape == (4, 3)
    replace_head(model, 7)
    freeze_backbone(model)
    assert model(torch.rand(4, 1, 8, 8)).shape == (4, 7)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert model.weights_used == "random"


def test_model_without_activation_argument_logs_that_it_is_ignored(
    user_module: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="medflow.ml.user_model"):
        model = build_model(user_cfg(f"{user_module}:whole", activation="tanh"), (1, 8, 8), 2)
    assert "takes no activation argument" in caplog.text and "(tanh)" in caplog.text
    assert isinstance(model, WholeModel) and not has_head_split(model)
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 2)


def test_model_file_rebuilds_the_user_model_with_weights_only(
    user_module: str, tmp_path: Path
) -> None:
    cfg = user_cfg(f"{user_module}:conv", options={"width": 6})
    model = build_model(cfg, (1, 8, 8), 2).eval()
    path = tmp_path / "model.pt"
    save_model_file(path, model, cfg, (1, 8, 8))
    payload = torch.load(path, weights_only=True)
    assert payload["model_config"]["arch"] == f"{user_module}:conv"
    assert payload["model_config"]["options"] == {"width": 6}
    loaded, _ = load_model_file(path)
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(loaded(x), model(x))


def test_finetune_starts_from_the_user_backbone_with_a_new_head(
    user_module: str, tmp_path: Path
) -> None:
    cfg = user_cfg(f"{user_module}:conv")
    pretrained = build_model(cfg, (1, 8, 8), 4)
    path = tmp_path / "model.pt"
    save_model_file(path, pretrained, cfg, (1, 8, 8))
    model = initial_model("linear_probe", cfg, (1, 8, 8), 10, path, seed=0)
    assert model.n_outputs == 10 and model.backbone_frozen
    torch.testing.assert_close(model.backbone.conv.weight, pretrained.backbone.conv.weight)


# --- one-line errors naming model.arch ---------------------------------------------------


def test_missing_module_is_one_line(user_module: str) -> None:
    message = one_line_error("no_such_lab_module.models:make")
    assert "model.arch: cannot import 'no_such_lab_module.models:make'" in message
    assert "ModuleNotFoundError" in message


def test_module_failing_on_import_is_one_line(user_module: str) -> None:
    message = one_line_error(f"{user_module}_broken:make")
    assert f"cannot import '{user_module}_broken:make': ImportError: needs CUDA" in message


def test_missing_factory_is_one_line(user_module: str) -> None:
    assert "AttributeError" in one_line_error(f"{user_module}:nope")


def test_factory_that_raises_is_one_line(user_module: str) -> None:
    message = one_line_error(f"{user_module}:raises")
    assert f"model.arch: '{user_module}:raises' raised RuntimeError: no GPU found" in message
    assert "input_shape=(1, 8, 8), n_outputs=2" in message


def test_factory_returning_no_module_is_one_line(user_module: str) -> None:
    assert "returned a int, not a torch.nn.Module" in one_line_error(f"{user_module}:not_a_module")


def test_wrong_output_shape_is_one_line(user_module: str) -> None:
    message = one_line_error(f"{user_module}:wrong_outputs", n_outputs=1)
    assert "returns outputs of shape (2, 2)" in message and "needs (2, 1)" in message


def test_model_failing_on_the_inputs_is_one_line(user_module: str) -> None:
    message = one_line_error(f"{user_module}:conv", shape=(12,))
    assert "fails on a batch of inputs of shape (2, 12)" in message


def test_head_that_forward_does_not_apply_last_is_one_line(user_module: str) -> None:
    assert "forward must end with self.head(features)" in one_line_error(f"{user_module}:bad_head")


def test_reserved_option_is_one_line(user_module: str) -> None:
    message = one_line_error(f"{user_module}:conv", options={"n_outputs": 3})
    assert message.startswith("model.options.n_outputs: medflow passes n_outputs")


def test_transfer_without_a_head_split_is_one_line(user_module: str, tmp_path: Path) -> None:
    cfg = user_cfg(f"{user_module}:whole")
    path = tmp_path / "model.pt"
    save_model_file(path, build_model(cfg, (1, 8, 8), 2), cfg, (1, 8, 8))
    assert initial_model("scratch", cfg, (1, 8, 8), 2, None, seed=0).n_outputs == 2
    for mode in ("finetune", "linear_probe"):
        with pytest.raises(ConfigError, match=f"no backbone/head split, which mode {mode} needs"):
            initial_model(mode, cfg, (1, 8, 8), 2, path, seed=0)
    with pytest.raises(ConfigError, match=r"^model.arch: '.*:whole' has no backbone/head split"):
        check_transferable(cfg, (1, 8, 8), 2)
    check_transferable(user_cfg(f"{user_module}:conv"), (1, 8, 8), 2)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"arch": "lab.models:"}, "arch: 'lab.models:' is not allowed: an import path"),
        ({"arch": "lab models:f"}, "is not allowed: an import path package.module:factory"),
        ({"arch": "lab:f:g"}, "is not allowed"),
        ({"arch": "vgg16"}, "arch: 'vgg16' is not one of: perceptron"),
        ({"arch": "mlp", "options": {"width": 3}}, "options: {'width': 3} is expected to be empty"),
    ],
)
def test_schema_refuses_bad_arch_strings_and_options_of_builtins(values, expected) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace("{", r"\{")):
        ModelConfig.from_schema(**values)


# --- MLflow ---------------------------------------------------------------------------------


def test_logged_user_model_loads_back_from_mlflow_without_its_module(
    user_module: str, tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pytorch

    model = build_model(user_cfg(f"{user_module}:conv"), (1, 8, 8), 3).eval()
    x = torch.rand(4, 1, 8, 8)
    with tracked_run(tracker, "models", "user", {}) as run_id:
        uri = log_torch_model(tracker, run_id, model, x[:2].numpy())
    sys.modules.pop(user_module)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.endswith("usermods")])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
    expected = model(x).detach()
    torch.testing.assert_close(mlflow.pytorch.load_model(uri)(x), expected)
    torch.testing.assert_close(load_torch_model(tracker, run_id)(x), expected)
    assert tracker.get_run(run_id).data.params["model.weights_used"] == "random"


# --- the whole DAG --------------------------------------------------------------------------


def user_model_config(arch: str) -> dict:
    """The pipeline tests' tiny digits config with the user's conv net, pretrained on 300
    synthetic shapes; one trial setting, finetune and scratch."""
    config = tiny_config(workers=1, n_trials=2, trial_epochs=1)
    config["datasets"]["shapes"]["options"]["n_images"] = 300
    del config["tracking"]
    study = config["studies"]["tiny"]
    study["model"] = {"arch": arch, "options": {"width": 6}}
    study["train"]["epochs"] = 2
    study["sweep"]["space"] = {
        "optimizers": ["adam"],
        "activations": ["tanh"],
        "lr": [0.001, 0.05],
        "freeze": ["finetune"],
    }
    study["refine"] = {"modes": ["finetune", "scratch"], "seeds": [0]}
    study["evaluate"] = {"bootstrap": 100}
    return config


@pytest.mark.slow
def test_user_model_runs_the_whole_dag_and_loads_back_from_mlflow(
    user_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pytorch

    arch = f"{user_module}:conv"
    config = write_config(tmp_path, user_model_config(arch))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "usermods"))
    result = run_snakemake("--cores", "2", "--configfile", str(config), workdir=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    tracker = Tracker.for_results(tmp_path / "results")
    runs = {
        (r.data.tags["stage"], r.data.tags.get("mode")): r
        for r in find_runs(tracker, "medflow/tiny")
        if r.data.tags.get("stage") in ("pretrain", "refine")
    }
    pretrain, finetune = runs["pretrain", None], runs["refine", "finetune"]
    assert finetune.data.tags["parent_model_run_id"] == pretrain.info.run_id
    for run in (pretrain, finetune, runs["refine", "scratch"]):
        params = run.data.params
        assert params["model.arch"] == arch and params["model.options.width"] == "6"
        assert params["model.activation"] == "tanh" and params["model.weights_used"] == "random"

    # The finetuned model: the same predictions from MLflow and from the workflow's file.
    model_file = Layout(tmp_path / "results").refine_model("tiny", "finetune", 0)
    from_file, payload = load_model_file(model_file)
    assert payload["model_config"]["arch"] == arch and from_file.n_outputs == 10
    x = torch.rand(5, 1, 8, 8)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
    loaded = mlflow.pytorch.load_model(f"runs:/{finetune.info.run_id}/model")
    torch.testing.assert_close(loaded(x), from_file(x).detach())
    assert (tmp_path / "results/report/index.html").is_file()
