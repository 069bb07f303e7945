"""MLflow tracking, the project's system of record for runs, params, metrics and models.

uri (where the store is), client (``Tracker``: store calls, metric buffer, paged ``find_runs``),
retry (SQLite lock retries, store-creation lock), params (flattened values), models (logged
torch models), runs (``tracked_run``, SIGTERM, failed runs), provenance (run tags), training
(a tracked training run), queries (read side shared with the report).
"""
