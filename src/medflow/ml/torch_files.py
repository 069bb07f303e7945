"""Reading medflow's torch files (model.pt, checkpoint.pt): weights only, and a damaged
file is one line naming it and what to do, not torch's advice to unpickle it."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from medflow.errors import DataError


def load_weights_file(path: Path, remedy: str) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; ``remedy`` says what to delete or rerun."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle, zip and stream errors alike: the bytes are bad
        # torch's unpickling message advises weights_only=False: never right for a damaged file
        unpickling = isinstance(exc, pickle.UnpicklingError)
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        reason = "not a torch weights file" if unpickling else first
        raise DataError(f"{path} is damaged or not a medflow file ({reason}); {remedy}") from None
    if not isinstance(payload, dict):
        raise DataError(f"{path} holds a {type(payload).__name__}, not a medflow file; {remedy}")
    return payload
