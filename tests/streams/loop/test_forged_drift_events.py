"""Forged and stale drift events on the real broker: the retrainer records none of them.

On main anyone who could write ``{p}.drift`` chose the episode (each one recorded in the
store) and the rows a training starts from. Now the retrainer verifies the monitor's signature
before it touches anything, and acts only on alarms raised against the reference in force.
"""

from __future__ import annotations

from typing import Any

import pytest

from driftline.schemas import EventSigner
from driftline.streams.kafka.retrainer_service import RetrainerService
from driftline.streams.metrics import RetrainerMetrics
from tests.streams.loop.conftest import SIGNER
from tests.streams.loop.test_exactly_once import archive_drifted, drift_event
from tests.streams.loop.test_retrainer_service import produce

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_forged_drift_events_open_no_episode_and_a_signed_one_trains(
    kafka_bootstrap: str, loop_pipeline_factory: Any
) -> None:
    lp = loop_pipeline_factory()
    step, inputs = archive_drifted(lp, 1500)
    store = step.store
    good = drift_event(step, inputs, "d-good")
    assert good.reference_data_version is not None  # the monitor's bootstrap reference
    forged_episode = good.model_copy(
        update={"drift_id": "d-unsigned", "reference_data_version": "dv-forged-episode"}
    )
    foreign = EventSigner.generate().sign(good.model_copy(update={"drift_id": "d-foreign"}))
    start = inputs[-1].timestamp
    altered = SIGNER.sign(good.model_copy(update={"drift_id": "d-altered"})).model_copy(
        update={"window_start": start}  # the rows a training starts from, changed in flight
    )
    # Validly signed, but against a reference the store does not hold (a replay, or an alarm
    # of a reset store): stale.
    stale = SIGNER.sign(
        good.model_copy(update={"drift_id": "d-stale", "reference_deployment_id": "dp-old"})
    )
    records = [forged_episode, foreign, altered, stale, SIGNER.sign(good)]
    produce(kafka_bootstrap, lp.settings.topics.drift, [(None, e.to_json()) for e in records])

    metrics = RetrainerMetrics(lp.name)
    service = RetrainerService(lp.settings, tick_interval_s=3600, metrics=metrics)
    stats = service.run(max_events=len(records))
    service.close()

    assert stats.refused == {"unsigned": 1, "unknown_key": 1, "bad_signature": 1, "stale": 1}
    for reason in ("unsigned", "unknown_key", "bad_signature", "stale"):
        sample = metrics.registry.get_sample_value(
            "driftline_drift_events_refused_total", {"pipeline": lp.name, "reason": reason}
        )
        assert sample == 1.0, reason
    # Only the signed, current alarm reached the store: one drift event, one episode.
    assert [d.drift_id for d in store.drift_events(lp.name)] == ["d-good"]
    trainings = store.trainings(lp.name, None)
    assert {t.episode_key.split("#")[0] for t in trainings} == {good.episode_key}
    assert stats.outcomes == {"COMPLETE": 1}
    store.close()


def test_a_worker_without_a_signing_key_refuses_to_start(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It could only publish drift events the retrainer refuses."""
    from driftline.config.settings import Settings
    from driftline.streams.exceptions import ConfigError
    from driftline.streams.kafka.app import create_app

    monkeypatch.delenv("DRIFTLINE_SIGNING_KEY", raising=False)
    settings = Settings(pipeline="unsigned", state_dir=str(tmp_path / "state"))
    with pytest.raises(ConfigError, match="drift events must be signed"):
        create_app(settings)
    assert not (tmp_path / "state").exists()  # refused before anything was opened
