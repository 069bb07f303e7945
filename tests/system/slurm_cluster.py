"""A real single-node SLURM cluster on localhost for the system tests.

``unavailable_reason()`` says why a cluster cannot be started here (not root, binaries
missing, a SLURM configuration this module did not write); ``running_cluster()`` starts
munged (unless one already answers), slurmctld and slurmd, waits until the node is idle
and stops them again, by PID, on exit, removing the slurm.conf it wrote. Daemons left by
an earlier run (this module's pid files) are stopped first. Every wait is bounded.
See ../shared/notes/slurm-on-one-machine.md.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# Written by medflow tests/system/slurm_cluster.py; rewritten on every test run."
PARTITION = "debug"
LOG_DIR = Path("/var/log/slurm")
JOBCOMP_LOG = LOG_DIR / "jobcomp.log"
CTLD_PID = Path("/run/slurmctld.pid")
SLURMD_PID = Path("/run/slurmd.pid")
MUNGE_PID = Path("/run/munge/munged.pid")
MUNGE_KEY = Path("/etc/munge/munge.key")
SBIN = Path("/usr/sbin")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "scontrol", "munge", "unmunge")
DAEMONS = ("slurmctld", "slurmd", "munged")

SLURM_CONF = """\
{marker}
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile={ctld_pid}
SlurmdPidFile={slurmd_pid}
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile={log_dir}/slurmctld.log
SlurmdLogFile={log_dir}/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
# squeue is the status command (no accounting): finished jobs must stay visible.
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc={jobcomp}
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class ClusterError(RuntimeError):
    """The daemons were started but the cluster did not come up (or go down) in time."""


@dataclass(frozen=True)
class SlurmCluster:
    partition: str
    cpus: int
    memory_mb: int
    jobcomp_log: Path


def unavailable_reason() -> str | None:
    """Why no cluster can be started on this machine, or None when one can."""
    if os.geteuid() != 0:
        return "SLURM cluster test needs root (it starts munged, slurmctld and slurmd)"
    missing = [name for name in DAEMONS if not (SBIN / name).exists()]
    missing += [name for name in CLIENTS if shutil.which(name) is None]
    if missing:
        return f"SLURM/munge not installed (missing {', '.join(missing)}): run make system-packages"
    for user in ("slurm", "munge"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"no '{user}' user: the slurm-wlm/munge packages are incompletely installed"
    if CONF.exists() and MARKER not in CONF.read_text():
        return f"{CONF} exists and was not written by this test: not touching a real SLURM"
    if not MUNGE_KEY.exists() and shutil.which("mungekey") is None:
        return f"{MUNGE_KEY} is missing and there is no mungekey to create it"
    return None


def _run(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _munge_works() -> bool:
    try:
        cred = _run("munge", "-n", timeout=10)
        return cred.returncode == 0 and (
            subprocess.run(
                ["unmunge"], input=cred.stdout, capture_output=True, text=True, timeout=10
            ).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


def _wait_until(check, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def _pid_of(pid_file: Path, comm: str) -> int | None:
    """The live process named ``comm`` whose PID the file holds (never a recycled PID)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        alive_comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive_comm == comm else None


def _stop(pid_file: Path, comm: str, timeout: float = 15) -> None:
    pid = _pid_of(pid_file, comm)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    if not _wait_until(lambda: _pid_of(pid_file, comm) != pid, timeout):
        os.kill(pid, signal.SIGKILL)
        if not _wait_until(lambda: _pid_of(pid_file, comm) != pid, 5):
            raise ClusterError(f"{comm} (pid {pid}) did not exit after SIGKILL")


def _cancel_all_jobs(timeout: float = 20) -> None:
    """No job of ours may outlive the cluster (slurmstepd does not exit with slurmd)."""
    if _pid_of(CTLD_PID, "slurmctld") is None:
        return
    _run("scancel", "--user", "root", timeout=10)
    _wait_until(
        lambda: not _run("squeue", "-h", "-t", "PD,R,CG", timeout=10).stdout.strip(), timeout
    )


def _log_tails(lines: int = 20) -> str:
    tails = []
    for name in ("slurmctld.log", "slurmd.log"):
        path = LOG_DIR / name
        if path.exists():
            text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            tails.append(f"--- {path}\n{text}")
    return "\n".join(tails)


def _start_munged() -> bool:
    """Start munged unless one already answers; True when this call started it."""
    if _munge_works():
        return False
    if not MUNGE_KEY.exists():
        _run("mungekey", "--create", "--force", "--keyfile", str(MUNGE_KEY))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o600)
    MUNGE_PID.parent.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(MUNGE_PID.parent, "munge", "munge")
    started = _run("runuser", "-u", "munge", "--", str(SBIN / "munged"))
    if started.returncode != 0 or not _wait_until(_munge_works, 10):
        raise ClusterError(f"munged did not start: {started.stderr.strip()}")
    return True


def _write_config(cpus: int, memory_mb: int) -> None:
    for folder in (Path("/var/spool/slurmctld"), LOG_DIR):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "slurm", "slurm")
    Path("/var/spool/slurmd").mkdir(parents=True, exist_ok=True)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(
        SLURM_CONF.format(
            marker=MARKER,
            ctld_pid=CTLD_PID,
            slurmd_pid=SLURMD_PID,
            log_dir=LOG_DIR,
            jobcomp=JOBCOMP_LOG,
            cpus=cpus,
            memory_mb=memory_mb,
            partition=PARTITION,
        )
    )
    JOBCOMP_LOG.write_text("")  # one run's jobs only
    shutil.chown(JOBCOMP_LOG, "slurm", "slurm")


def _node_state() -> str:
    return _run("sinfo", "-h", "-o", "%T", timeout=10).stdout.strip()


def stop_cluster() -> None:
    """Stop slurmd and slurmctld (jobs cancelled first) from their pid files, if running."""
    _cancel_all_jobs()
    _stop(SLURMD_PID, "slurmd")
    _stop(CTLD_PID, "slurmctld")


@contextmanager
def running_cluster(timeout: float = 60) -> Iterator[SlurmCluster]:
    """Start the cluster, yield it once the node is idle, stop it on exit."""
    reason = unavailable_reason()
    if reason:
        raise ClusterError(reason)
    stop_cluster()  # left over from an earlier, interrupted run: its config may differ
    cpus = os.cpu_count() or 1
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    started_munged = _start_munged()
    try:
        _write_config(cpus, memory_mb)
        for cmd in ((str(SBIN / "slurmctld"), "-c"), (str(SBIN / "slurmd"), "-N", "localhost")):
            started = _run(*cmd)
            if started.returncode != 0:
                raise ClusterError(f"{cmd[0]} failed: {started.stderr.strip()}\n{_log_tails()}")
        if not _wait_until(lambda: _node_state() == "idle", timeout, interval=0.5):
            raise ClusterError(
                f"node not idle after {timeout:.0f}s (state {_node_state()!r})\n{_log_tails()}"
            )
        yield SlurmCluster(PARTITION, cpus, memory_mb, JOBCOMP_LOG)
    finally:
        stop_cluster()
        if started_munged:
            _stop(MUNGE_PID, "munged")
        _remove_config()


def _remove_config() -> None:
    """Remove our slurm.conf: with it and no controller, every `snakemake` start spends ~9 s
    in the SLURM executor plugin, whose import runs sacct/squeue until they time out."""
    if CONF.exists() and MARKER in CONF.read_text():
        CONF.unlink()
