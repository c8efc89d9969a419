"""Run the monitor of a pipeline as a Faust worker (``driftline worker``).

The worker creates the pipeline's topics when they are missing, serves Prometheus metrics on
``Settings.metrics_port`` (0 turns them off) and runs the Faust app of
`driftline.streams.kafka.app` until it
is stopped (SIGTERM/SIGINT stop it cleanly; SIGKILL loses nothing, see
`driftline.streams.kafka.app`).
"""

from __future__ import annotations

import logging

from driftline.config.settings import Settings

__all__ = ["run_worker"]

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, loglevel: str = "warning") -> None:
    """Block running the monitor worker for ``settings.pipeline``."""
    from faust.worker import Worker

    from driftline.streams.kafka.app import changelog_topics, create_app
    from driftline.streams.kafka.clients import ensure_topics
    from driftline.streams.metrics import MonitorMetrics
    from driftline.streams.monitor.tuning import tune_process

    metrics = MonitorMetrics(settings.pipeline)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    created = ensure_topics(settings, extra=changelog_topics(settings))
    if created:
        log.info("created topics %s", created)
    app = create_app(settings, metrics=metrics)
    # On small machines a second BLAS thread competes with the Kafka client's thread, and
    # the heap built by start-up (Faust, numpy, the store) never needs scanning again; see
    # BENCHMARKS.md "Ingest (monitor step)" for what each is worth.
    tune_process()
    Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()
