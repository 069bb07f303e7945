"""Logged models: a torch model exported as an MLflow 3 LoggedModel of a run, and loaded back.

``mlflow.pytorch.log_model`` is not used: without a fluent active run it files the LoggedModel
under the globally "current" experiment (Default) rather than the run's, so
``runs:/<run_id>/<name>`` cannot find it, and it resolves the store from the global tracking URI.
Starting a fluent run around it would be process-global state. Instead the same steps run with
explicit ids: create the LoggedModel in the run's experiment, ``save_model`` locally, upload,
link it as a run output, mark it READY.

A user's model (``model.arch: package.module:factory``) is exported the same way: the "pt2"
program holds the traced graph and weights, so loading it back needs neither medflow nor the
user's module.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.artifacts import download_artifacts
from mlflow.entities import LoggedModel
from mlflow.exceptions import MlflowException

if TYPE_CHECKING:
    import numpy as np
    import torch
    from mlflow.models import Model
    from mlflow.models.signature import ModelSignature

    from medflow.tracking.client import Tracker

_log = logging.getLogger(__name__)


def log_torch_model(
    tracker: Tracker,
    run_id: str,
    model: torch.nn.Module,
    input_example: np.ndarray,
    name: str = "model",
    *,
    step: int = 0,
    pip_requirements: list[str] | None = None,
) -> str:
    """Log ``model`` as a LoggedModel of the run; returns ``runs:/<id>/<name>``.

    A CPU copy in eval mode is exported as "pt2" (``torch.export``, MLflow's default, and
    loadable without allowing pickle); use a batch size > 1 in ``input_example`` so the
    batch dimension stays dynamic. ``pip_requirements`` default to pinned mlflow/torch/numpy
    because MLflow's inference reloads the model in a subprocess (~15 s per model).
    The model's ``weights_used`` (its initialisation: imagenet or random) is logged as the
    param ``model.weights_used``.
    """
    from mlflow.entities import LoggedModelOutput

    tracker.flush(run_id)
    weights_used = getattr(model, "weights_used", None)
    if weights_used is not None:
        tracker.log_params(run_id, {"model.weights_used": weights_used})
    cpu_model = copy.deepcopy(model).cpu().eval()
    signature = model_signature(cpu_model, input_example)
    experiment_id = tracker.get_run(run_id).info.experiment_id
    logged = tracker.call(
        tracker.client.create_logged_model,
        experiment_id=experiment_id,
        name=name,
        source_run_id=run_id,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            mlflow_model = _logged_model_metadata(logged, run_id)
            save_model_folder(
                local, cpu_model, signature, input_example, mlflow_model, pip_requirements
            )
            tracker.call(tracker.client.log_model_artifacts, logged.model_id, str(local))
        tracker.call(tracker.client.log_outputs, run_id, [LoggedModelOutput(logged.model_id, step)])
    except BaseException:
        _finalize_failed_model(tracker, logged.model_id)
        raise
    tracker.call(tracker.client.finalize_logged_model, logged.model_id, "READY")
    return f"runs:/{run_id}/{name}"


def model_signature(cpu_model: torch.nn.Module, input_example: np.ndarray) -> ModelSignature:
    """The model's input and output schema, from one forward pass on ``input_example``."""
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        output = cpu_model(torch.from_numpy(input_example))
    return infer_signature(input_example, output.detach().numpy())


def _logged_model_metadata(logged: LoggedModel, run_id: str) -> Model:
    """The MLmodel metadata of a folder that already carries the LoggedModel's ids."""
    from mlflow.models import Model

    return Model(
        artifact_path=logged.artifact_location,
        run_id=run_id,
        model_uuid=logged.model_id,
        model_id=logged.model_id,
    )


def save_model_folder(
    local: Path,
    cpu_model: torch.nn.Module,
    signature: ModelSignature,
    input_example: np.ndarray,
    mlflow_model: Model | None = None,
    pip_requirements: list[str] | None = None,
) -> None:
    """Write the MLflow model folder locally: "pt2", pinned requirements (see log_torch_model).

    The job server saves a throwaway model through here too, so the first model a job saves
    finds ``torch.export`` imported and MLflow's package scan done.
    """
    import mlflow.pytorch

    mlflow.pytorch.save_model(
        cpu_model,
        str(local),
        mlflow_model=mlflow_model,
        signature=signature,
        input_example=input_example,
        serialization_format="pt2",
        pip_requirements=pip_requirements or _model_pip_requirements(),
    )


def _model_pip_requirements() -> list[str]:
    import mlflow.pytorch

    return [
        f"mlflow=={mlflow.__version__}",
        f"numpy=={version('numpy')}",
        *mlflow.pytorch.get_default_pip_requirements(),
    ]


def _finalize_failed_model(tracker: Tracker, model_id: str) -> None:
    try:
        tracker.call(tracker.client.finalize_logged_model, model_id, "FAILED")
    except Exception:
        # Keep the original error; a PENDING model is harmless and shows as such in the UI.
        _log.exception("could not mark logged model %s FAILED", model_id)


def load_torch_model(tracker: Tracker, run_id: str, name: str = "model") -> torch.nn.Module:
    """Load a model logged by ``log_torch_model`` from the tracker's store (not the global).

    Not through ``runs:/<run_id>/<name>``: MLflow resolves the LoggedModel behind that URI
    with a client on the *global* tracking URI (``ModelsArtifactRepository``), which is
    another store (a tracking server, or a new ./mlflow.db) unless $MLFLOW_TRACKING_URI
    happens to name this one. The run's model outputs name the model explicitly.
    """
    import mlflow.pytorch

    location = _logged_model(tracker, run_id, name).artifact_location
    with tempfile.TemporaryDirectory() as tmp:
        local = tracker.call(
            download_artifacts,
            artifact_uri=location,
            dst_path=tmp,
            tracking_uri=tracker.tracking_uri,
        )
        return mlflow.pytorch.load_model(local)


def _logged_model(tracker: Tracker, run_id: str, name: str) -> LoggedModel:
    """The newest READY model called ``name`` among the run's model outputs."""
    outputs = tracker.get_run(run_id).outputs
    for output in reversed(outputs.model_outputs if outputs else []):
        model = tracker.call(tracker.client.get_logged_model, output.model_id)
        if model.name == name and str(model.status) == "READY":
            return model
    raise MlflowException(f"run {run_id} has no logged model named {name!r}")
