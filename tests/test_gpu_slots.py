"""GPU slot allocator: one device per concurrent job, with real processes and fake devices.

No GPU is needed: the pool comes from CUDA_VISIBLE_DEVICES, and the allocator only locks
files and sets that variable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medflow.cli import _gpu_slot, build_parser
from medflow.runtime import gpu_slots
from medflow.runtime.gpu_slots import GpuSlotTimeout, claim_gpu_slot
from tests.conftest import REPO

pytestmark = pytest.mark.timeout(120)

# Says it is ready, waits for a "go" file so that all claimants start together, then holds
# its slot a while.
CLAIMANT = """
import json, os, sys, time
from pathlib import Path
from medflow.runtime.gpu_slots import claim_gpu_slot

lock_dir, go, out, hold = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
Path(str(out) + ".ready").touch()
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.01)
with claim_gpu_slot(lock_dir, timeout_s=60, poll_s=0.02) as device:
    enter = time.monotonic()
    visible = os.environ["CUDA_VISIBLE_DEVICES"]
    Path(str(out) + ".claimed").touch()
    time.sleep(hold)
    leave = time.monotonic()
out.write_text(json.dumps({"device": device, "visible": visible, "enter": enter, "exit": leave}))
"""


def _claimant(
    tmp_path: Path, name: str, visible: str, hold: float, go: Path
) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", CLAIMANT, str(tmp_path / "locks"), str(go), str(out), str(hold)]
    return subprocess.Popen(cmd, env=env), out


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.02)


def test_concurrent_processes_never_share_a_device_and_use_them_all(tmp_path):
    go = tmp_path / "go"
    claimants = [_claimant(tmp_path, f"c{i}", "0,1,2,3", 0.6, go) for i in range(8)]
    for _, out in claimants:
        _wait_for(Path(str(out) + ".ready"))
    go.touch()
    for process, _ in claimants:
        assert process.wait(timeout=90) == 0
    records = [json.loads(out.read_text()) for _, out in claimants]

    assert {r["device"] for r in records} == {"0", "1", "2", "3"}
    assert all(r["visible"] == r["device"] for r in records)
    for i, a in enumerate(records):
        for b in records[i + 1 :]:
            if a["device"] == b["device"]:
                assert a["exit"] <= b["enter"] or b["exit"] <= a["enter"], (a, b)
    # Eight jobs of 0.6 s on four devices: two rounds, not eight.
    span = max(r["exit"] for r in records) - min(r["enter"] for r in records)
    assert span < 8 * 0.6


def test_a_killed_holder_frees_its_device(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    go = tmp_path / "go"
    go.touch()
    holder, out = _claimant(tmp_path, "holder", "5,7", 300, go)
    try:
        _wait_for(Path(str(out) + ".claimed"))
        with claim_gpu_slot(tmp_path / "locks", timeout_s=5, poll_s=0.02) as mine:
            assert mine == "7"  # the holder has 5
            assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"
            # From here on the variable says "7"; name the pool as another job would see it.
            pool = ["5", "7"]
            with (
                pytest.raises(GpuSlotTimeout, match="busy"),
                claim_gpu_slot(tmp_path / "locks", pool, timeout_s=0.3, poll_s=0.05),
            ):
                pass
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
            with claim_gpu_slot(tmp_path / "locks", pool, timeout_s=5, poll_s=0.02) as freed:
                assert freed == "5"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7"  # restored
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_waits_for_a_device_and_takes_it_when_freed(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    go = tmp_path / "go"
    go.touch()
    holders = [_claimant(tmp_path, f"h{i}", "0,1", 1.0, go) for i in range(2)]
    for _, out in holders:
        _wait_for(Path(str(out) + ".claimed"))
    started = time.monotonic()
    with claim_gpu_slot(tmp_path / "locks", timeout_s=30, poll_s=0.02) as device:
        assert device in {"0", "1"}
    assert time.monotonic() - started > 0.2  # it had to wait
    for process, _ in holders:
        assert process.wait(timeout=30) == 0


def test_no_gpu_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu_slots, "_physical_gpu_count", lambda: 0)
    with claim_gpu_slot(tmp_path / "locks") as device:
        assert device is None
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not (tmp_path / "locks").exists()

    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        with claim_gpu_slot(tmp_path / "locks") as device:
            assert device is None
            assert os.environ["CUDA_VISIBLE_DEVICES"] == hidden


def test_a_single_visible_device_is_kept_as_is(tmp_path, monkeypatch):
    """SLURM (--gres=gpu:1) already chose the device: keep it, lock nothing."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with claim_gpu_slot(tmp_path / "locks") as first, claim_gpu_slot(tmp_path / "locks") as again:
        assert first == again == "3"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert not (tmp_path / "locks").exists()


def test_without_the_variable_the_pool_is_every_physical_device(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu_slots, "_physical_gpu_count", lambda: 2)
    with claim_gpu_slot(tmp_path / "locks") as first:
        assert first == "0" and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
        with claim_gpu_slot(tmp_path / "locks", ["0", "1"]) as second:
            assert second == "1" and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        # A claim inside a claimed job keeps the job's device.
        with claim_gpu_slot(tmp_path / "locks") as nested:
            assert nested == "0"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_counting_devices_leaves_cuda_uninitialised():
    torch = pytest.importorskip("torch")
    gpu_slots._physical_gpu_count()
    assert not torch.cuda.is_initialized()


@pytest.mark.parametrize("command", ["pretrain", "sweep-worker", "refine"])
def test_training_commands_claim_a_gpu_under_the_results_folder(command, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.delenv("MEDFLOW_GPU_LOCK_DIR", raising=False)
    extra = {"pretrain": ["--activation", "relu"], "refine": ["--mode", "scratch", "--seed", "0"]}
    argv = [command, "--study", "s", "--results", str(tmp_path / "res"), *extra.get(command, [])]
    with _gpu_slot(build_parser().parse_args(argv)) as device:
        assert device == "2" and os.environ["CUDA_VISIBLE_DEVICES"] == "2"
        assert list((tmp_path / "res/.gpu_slots").glob("*.gpu2.lock"))
    custom = build_parser().parse_args([*argv, "--gpu-lock-dir", str(tmp_path / "elsewhere")])
    with _gpu_slot(custom) as device:
        assert device == "2"
        assert list((tmp_path / "elsewhere").glob("*.gpu2.lock"))
    # One folder for every workflow on the machine, through the environment Snakemake passes on.
    monkeypatch.setenv("MEDFLOW_GPU_LOCK_DIR", str(tmp_path / "machine"))
    with _gpu_slot(build_parser().parse_args(argv)) as device:
        assert device == "2"
        assert list((tmp_path / "machine").glob("*.gpu2.lock"))


def test_other_commands_leave_the_gpus_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    args = build_parser().parse_args(["sweep-init", "--study", "s", "--results", str(tmp_path)])
    with _gpu_slot(args) as device:
        assert device is None and os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
