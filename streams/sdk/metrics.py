"""Prometheus metrics of a `ModelSubscriber`, in the consumer service's own registry.

    driftline_subscriber_swaps_total{pipeline,alias}            models swapped in
    driftline_subscriber_refusals_total{pipeline,alias,reason}  deployments not served, by
                                                                reason code (see `REASONS`)
    driftline_subscriber_healthy{pipeline,alias}                1 while the newest deployment
                                                                seen is the one served, else 0
    driftline_subscriber_model_info{pipeline,alias,model_version_id,deployment_id}
                                                                1 for the served model
    driftline_subscriber_last_swap_timestamp_seconds{pipeline,alias}

The SDK never opens a port: the metrics land in a `prometheus_client` registry (the global
one unless the subscriber is given another), and the consumer service exposes it the way it
exposes its other metrics, e.g. ``prometheus_client.start_http_server(9100)`` or
``app.mount("/metrics", prometheus_client.make_asgi_app())``.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> m = SubscriberMetrics("fraud", "champion", registry)
>>> m.refused("bad_signature")
>>> b'reason="bad_signature"' in generate_latest(registry)
True
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["REASONS", "SubscriberMetrics"]

REASONS = (
    "unsigned",
    "unknown_key",
    "bad_signature",
    "no_keys",
    "undecodable",
    "outside_store",
    "not_found",
    "unreadable",
    "too_large",
    "hash_mismatch",
    "load_failed",
    "stale",
)
"""Reason codes of refusals: the first four are the signature check's, ``undecodable`` a record
that is no ModelVersionEvent, then the artifact's: outside the subscriber's own store, missing,
not readable (the object store is unreachable or denies access), over ``max_artifact_bytes``,
a sha256 other than the event's, or the loader raised; ``stale`` a genuine deployment older than
the one served (a replay), which leaves the subscriber healthy."""


@dataclass(frozen=True)
class _Families:
    swaps: Counter
    refusals: Counter
    healthy: Gauge
    model_info: Gauge
    last_swap: Gauge


_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def _families_of(registry: CollectorRegistry) -> _Families:
    # One set of metric families per registry: several subscribers in one service (other
    # aliases, other pipelines, a restarted one) share them and differ by labels.
    with _families_lock:
        found = _families.get(registry)
        if found is None:
            key = ["pipeline", "alias"]
            found = _Families(
                swaps=Counter(
                    "driftline_subscriber_swaps", "Models swapped in", key, registry=registry
                ),
                refusals=Counter(
                    "driftline_subscriber_refusals",
                    "Deployments not served (the old model kept serving), by reason",
                    [*key, "reason"],
                    registry=registry,
                ),
                healthy=Gauge(
                    "driftline_subscriber_healthy",
                    "1 while the newest deployment seen is served, 0 when it was refused",
                    key,
                    registry=registry,
                ),
                model_info=Gauge(
                    "driftline_subscriber_model_info",
                    "1 for the model version being served",
                    [*key, "model_version_id", "deployment_id"],
                    registry=registry,
                ),
                last_swap=Gauge(
                    "driftline_subscriber_last_swap_timestamp_seconds",
                    "Unix time of the last swap",
                    key,
                    registry=registry,
                ),
            )
            _families[registry] = found
        return found


class SubscriberMetrics:
    """The metrics of the subscriber of ``pipeline``/``alias`` in ``registry``."""

    def __init__(self, pipeline: str, alias: str, registry: CollectorRegistry) -> None:
        self._f = _families_of(registry)
        self._labels = {"pipeline": pipeline, "alias": alias}
        self._info: dict[str, str] | None = None
        self._f.healthy.labels(**self._labels).set(1)
        for reason in REASONS:  # every series exists from the start: rate() and alerts work
            self._f.refusals.labels(**self._labels, reason=reason)
        self._f.swaps.labels(**self._labels)

    def swapped(self, model_version_id: str, deployment_id: str) -> None:
        """A new model is served."""
        self._f.swaps.labels(**self._labels).inc()
        self._f.healthy.labels(**self._labels).set(1)
        self._f.last_swap.labels(**self._labels).set(time.time())
        if self._info is not None:
            self._f.model_info.remove(*self._info.values())
        self._info = {
            **self._labels,
            "model_version_id": model_version_id,
            "deployment_id": deployment_id,
        }
        self._f.model_info.labels(**self._info).set(1)

    def refused(self, reason: str, *, degraded: bool = True) -> None:
        """A deployment (or record) was not served; unless it was an older one sent again
        (``degraded=False``), the subscriber is degraded."""
        self._f.refusals.labels(**self._labels, reason=reason).inc()
        if degraded:
            self._f.healthy.labels(**self._labels).set(0)
