"""What every stage entry point receives: ``run(ctx, ...)``.

A stage gets its validated config sections and job arguments explicitly; the context
carries what all of them share: the results layout and how to reach the tracking store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from medflow.config.types import TrackingConfig
from medflow.layout import Layout

if TYPE_CHECKING:  # the store client imports MLflow: only stages that log pay for it
    from medflow.tracking.client import Tracker


@dataclass(frozen=True)
class StageContext:
    layout: Layout
    tracking: TrackingConfig

    def tracking_uri(self) -> str:
        """The store URI this job logs to (config, else $MLFLOW_TRACKING_URI, else SQLite)."""
        from medflow.tracking.uri import resolve_tracking_uri

        return resolve_tracking_uri(self.tracking.uri, self.layout.results)

    def open_tracker(self) -> Tracker:
        """The job's one store client (open it once per job)."""
        from medflow.tracking.client import Tracker

        return Tracker.for_results(self.layout.results, self.tracking.uri)

    def experiment(self, study: str) -> str:
        return self.tracking.experiment(study)
