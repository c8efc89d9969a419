"""Which drift events the retrainer acts on: signed by a trusted monitor, and current.

A `DriftEvent` chooses the drift episode (``reference_data_version``,
``reference_deployment_id``), each one recorded in the store, and the rows a training starts
from (``change_points``). So before the retrainer records anything an event must pass two
checks, in this order:

1. **signed** by a key the retrainer trusts (`driftline.schemas.signing`): the monitor signs
   every alarm it publishes; anything else is *refused* with the verifier's reason
   (``unsigned``, ``unknown_key``, ``bad_signature``, ``no_keys``);
2. **current**: even a validly signed event is *stale* unless the reference it names is the
   one the store says is in force — the champion's deployment and data version, or, with no
   champion yet, a data version of this pipeline (the monitor's bootstrap reference) and no
   deployment. A replayed old alarm, or one raised just before a deployment, names an older
   reference and opens nothing.

>>> from driftline.lifecycle_store import LifecycleStore
>>> from driftline.schemas import EventSigner, EventVerifier
>>> from datetime import datetime, timezone
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> store = LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/a")
>>> _ = store.ensure_pipeline("fraud", ["x"], {})
>>> signer = EventSigner.generate()
>>> event = signer.sign(DriftEvent(drift_id="a1", pipeline="fraud", detector="mmd",
...     statistic=2.0, threshold=1.0, window_start=t, window_end=t, rows_seen=100,
...     reference_deployment_id="dp-forged"))
>>> admit(event, EventVerifier([signer.public_key]), store, "fraud")
Refusal(reason='stale', detail="the event names deployment 'dp-forged' but no champion is deployed")
>>> admit(event, EventVerifier([]), store, "fraud").reason
'no_keys'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from driftline.lifecycle_store.exceptions import NotFoundError
from driftline.schemas import DriftEvent, EventVerifier, SignatureError

if TYPE_CHECKING:
    from driftline.lifecycle_store.store import LifecycleStore

__all__ = ["STALE", "Refusal", "admit", "stale_reason"]

STALE = "stale"
"""The reason code of a verified event whose reference is no longer (or never was) current."""


@dataclass(frozen=True)
class Refusal:
    """Why a drift event is not acted on: a signature reason code or `STALE`, and details."""

    reason: str
    detail: str


def _short(text: str | None) -> str:
    return repr(None if text is None else text[:80])


def stale_reason(
    store: LifecycleStore, pipeline: str, event: DriftEvent, alias: str = "champion"
) -> str | None:
    """Why ``event``'s reference is not the one in force in ``store``, or None if it is."""
    try:
        history = store.history(pipeline, alias)
    except NotFoundError:
        return f"pipeline {pipeline!r} is not in the store yet"
    if not history:
        if event.reference_deployment_id is not None:
            return (
                f"the event names deployment {_short(event.reference_deployment_id)} but no "
                "champion is deployed"
            )
        if event.reference_data_version is None:
            return None  # nothing named, nothing chosen: the bootstrap episode
        try:
            version = store.data_version(event.reference_data_version)
        except NotFoundError:
            version = None
        if version is None or version.pipeline != pipeline:
            return (
                f"the event names data version {_short(event.reference_data_version)}, which "
                f"the store does not hold for pipeline {pipeline!r}"
            )
        return None
    head = history[-1]
    if event.reference_deployment_id != head.id:
        return (
            f"the event names deployment {_short(event.reference_deployment_id)}, the champion "
            f"is deployment {head.id!r}"
        )
    champion = store.current(pipeline, alias)
    current = None if champion is None else champion.data_version_id
    if current is not None and event.reference_data_version != current:
        return (
            f"the event names data version {_short(event.reference_data_version)}, the "
            f"champion was trained on {current!r}"
        )
    return None


def admit(
    event: DriftEvent,
    verifier: EventVerifier,
    store: LifecycleStore,
    pipeline: str,
    alias: str = "champion",
) -> Refusal | None:
    """None if the retrainer may act on ``event``; else why not (see the module docstring)."""
    try:
        verifier.verify(event)
    except SignatureError as exc:
        return Refusal(exc.reason, str(exc))
    stale = stale_reason(store, pipeline, event, alias)
    return None if stale is None else Refusal(STALE, stale)
