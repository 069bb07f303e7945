"""One GPU per concurrently running job on a multi-GPU workstation.

Snakemake's ``gpu`` resource limits how many GPU jobs run at once but does not say which GPU
each one gets: without help every job would train on ``cuda:0``. :func:`claim_gpu_slot` takes
an exclusive slot, one lock file per physical device locked with ``fcntl.flock``, and points
``CUDA_VISIBLE_DEVICES`` at that device, so ``cuda`` in the job is its own GPU.

* The pool is ``CUDA_VISIBLE_DEVICES`` when set (a scheduler's allocation; with a single
  device, e.g. SLURM's ``--gres=gpu:1``, there is nothing to choose: it is kept and nothing is
  locked), else every device the NVIDIA driver reports.
* The kernel drops a ``flock`` when its holder exits, however it exits (SIGKILL included):
  there are no stale locks to clean up.
* ``CUDA_VISIBLE_DEVICES`` is only read when CUDA initialises, so the slot must be claimed
  before anything touches CUDA. Devices are counted through NVML, which does not initialise
  CUDA (``torch.cuda.device_count()`` would where NVML is unavailable).
* Lock files are named after the host, so a lock folder on a shared filesystem is safe.
* Without GPUs it does nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from medflow.errors import MedflowError
from medflow.layout import Layout

__all__ = ["GpuSlotTimeout", "claim_gpu_slot", "default_lock_dir", "visible_gpus"]

_log = logging.getLogger(__name__)

ENV = "CUDA_VISIBLE_DEVICES"
LOCK_DIR_ENV = "MEDFLOW_GPU_LOCK_DIR"
DEFAULT_TIMEOUT_S = 1800.0
_COUNT_TIMEOUT_S = 120


class GpuSlotTimeout(MedflowError):
    """Every GPU stayed busy for the whole wait."""


def _physical_gpu_count() -> int:
    """Devices the driver reports, without initialising CUDA in this process."""
    try:
        import torch
    except ImportError:
        return 0
    if not (torch.backends.cuda.is_built() or torch.version.hip):
        return 0
    if torch.cuda.is_initialized():
        return torch.cuda.device_count()
    nvml_count = getattr(torch.cuda, "_device_count_nvml", None)
    count = nvml_count() if nvml_count is not None and not torch.version.hip else -1
    if count >= 0:
        return count
    if not torch.version.hip and not Path("/proc/driver/nvidia").exists():
        return 0  # no NVIDIA kernel driver loaded: no CUDA device either
    # NVML unavailable: count in a child, since the CUDA runtime API would fix this process's
    # view of CUDA_VISIBLE_DEVICES before we set it.
    code = "import torch; print(torch.cuda.device_count())"
    try:
        child = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=_COUNT_TIMEOUT_S,
            check=True,
        )
        return int(child.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        _log.warning("could not count GPUs; assuming none", exc_info=True)
        return 0


def visible_gpus() -> list[str]:
    """The device pool: ``CUDA_VISIBLE_DEVICES`` entries if set, else ``0 .. n-1``."""
    env = os.environ.get(ENV)
    if env is not None:
        devices = [d.strip() for d in env.split(",") if d.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
        if devices and devices[0].startswith("-"):
            return []
        return devices
    return [str(i) for i in range(_physical_gpu_count())]


def default_lock_dir(results: Path) -> Path:
    """``$MEDFLOW_GPU_LOCK_DIR`` (one folder for every workflow on the machine), else
    ``<results>/.gpu_slots`` (jobs of workflows with other results folders do not see these)."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Layout(Path(results)).gpu_slots())


def _lock_path(lock_dir: Path, device: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in device)
    return Layout.gpu_slot_file(lock_dir, socket.gethostname(), safe)


def _try_lock(path: Path) -> IO[str] | None:
    handle = open(path, "a+")  # noqa: SIM115 - held open for the slot's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    except BaseException:
        handle.close()
        raise
    # Who holds it, for people inspecting the folder; the lock itself is what counts.
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def _acquire(
    devices: Sequence[str], lock_dir: Path, timeout_s: float, poll_s: float
) -> tuple[str, IO[str]]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        for device in devices:
            handle = _try_lock(_lock_path(lock_dir, device))
            if handle is not None:
                if announced:
                    _log.info("GPU %s became free", device)
                return device, handle
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GpuSlotTimeout(
                f"all {len(devices)} GPUs ({','.join(devices)}) stayed busy for {timeout_s:.0f}s "
                f"(locks in {lock_dir}); run fewer GPU jobs (snakemake --resources gpu=N)"
            )
        if not announced:
            _log.warning(
                "all %d GPUs (%s) are busy (locks in %s); waiting up to %.0fs for one",
                len(devices),
                ",".join(devices),
                lock_dir,
                timeout_s,
            )
            announced = True
        time.sleep(min(poll_s, remaining))


@contextmanager
def claim_gpu_slot(
    lock_dir: str | Path,
    devices: Sequence[str] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    poll_s: float = 0.5,
) -> Iterator[str | None]:
    """Hold one GPU of ``devices`` (default :func:`visible_gpus`) for the block.

    Yields the physical device id, now the only entry of ``CUDA_VISIBLE_DEVICES``, or None
    without GPUs (nothing changed). A single-device pool is yielded as is, unlocked. Waits at
    most ``timeout_s`` for a free device, then raises :class:`GpuSlotTimeout`. The previous
    ``CUDA_VISIBLE_DEVICES`` is restored afterwards.
    """
    pool = list(visible_gpus() if devices is None else devices)
    if not pool:
        yield None
        return
    if len(pool) == 1:
        _log.info("using GPU %s (the only one visible)", pool[0])
        yield pool[0]
        return
    _cuda_must_be_uninitialised()
    device, handle = _acquire(pool, Path(lock_dir), timeout_s, poll_s)
    previous = os.environ.get(ENV)
    os.environ[ENV] = device
    _log.info("claimed GPU %s of %s", device, ",".join(pool))
    try:
        yield device
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        handle.close()  # releases the flock


def _cuda_must_be_uninitialised() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError(
            "claim_gpu_slot must run before CUDA is initialised: "
            f"{ENV} is ignored once it is, and the job would not use the claimed GPU"
        )
