"""Optuna sweeps run by several worker processes, each trial an MLflow child run.

Modules: space (SweepConfig, SearchSpace, suggest), study (storage, pruner, samplers),
claims (the claim lock, dead trials, fail-and-requeue), heartbeats, recovery (orphaned MLflow
runs), worker (init_sweep, run_worker), trials (trials.csv, best_params.json). What a trial
trains is the sweep stage's objective (medflow.stages.sweep).

Guarantees, with any number of workers on any number of hosts sharing ``sweep_dir``:

* Exact budget: the study ends with exactly ``n_trials`` COMPLETE or PRUNED trials. Counting
  and ``study.ask()`` happen together under an exclusive lock file in ``sweep_dir``, and so do
  failing a trial and enqueueing its retry, so no worker can claim a fresh trial in between.
* Failed and interrupted trials are retried with the same parameters (at most ``max_retry``
  times per original trial), like Optuna's ``RetryFailedTrialCallback``.
* Resume after the whole workflow was killed: Optuna's journal storage has no heartbeat, so
  each running trial touches ``<sweep_dir>/heartbeats/trial_<n>`` from a daemon thread. At
  claim time a RUNNING trial is taken as dead when that file is older than
  ``heartbeat_grace_s``, or at once when its worker ran on this host and is gone. Dead trials
  become FAIL (and are retried); their MLflow runs, if still RUNNING, end KILLED.

The journal's lock file is Optuna's ``JournalFileOpenLock`` (``O_CREAT | O_EXCL``) and the claim
lock a :class:`medflow.runtime.lockfile.HolderLock` (``link(2)``): both atomic on NFSv3+, Lustre and
GPFS, whereas ``flock``/``fcntl`` locks are unsupported or silently node-local on some cluster
filesystems, which would let workers on two nodes claim at once. Unlike kernel locks, such a
file outlives a killed holder. The claim lock names its holder: it is broken at once when the
holder ran on the waiter's host and is gone, else after a grace period without the refresh a
live holder does from a thread; SIGTERM reaches a holder only after it released the lock.
``sweep_dir`` must therefore be shared by all workers, also with an RDB storage.

Every claim reseeds the TPE sampler from ``(seed, number of trials so far)``: a fixed seed in
every worker would give all of them (and every resumed worker) the same random start-up trials.
"""
