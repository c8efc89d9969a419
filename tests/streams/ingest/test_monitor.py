from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from driftline.schemas import ModelVersionEvent
from driftline.streams.monitor.step import MonitorStep
from tests.streams.ingest.helpers import batches, config, messages, open_store, process

P = "mon"


def gaussian(n: int, d: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def run(step: MonitorStep, msgs: list, size: int = 250) -> list:
    outs = []
    for batch in batches(msgs, size):
        outs.append(process(step, batch))
    return outs


def test_bootstrap_reference_is_snapshotted_and_rows_archived(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    step = MonitorStep(config(P), store, pipeline=P)
    outs = run(step, messages(P, gaussian(1000)))
    assert step.reference_data_version is not None
    version = store.data_version(step.reference_data_version)
    assert version.row_count == 400 and version.combine == "root"
    assert store.archive(P).row_count() == 1000
    assert outs[-1].rows_seen == 1000
    assert outs[0].statistic is None  # still collecting the reference
    assert outs[-1].statistic is not None and outs[-1].threshold is not None
    assert store.pipeline(P).feature_names == ("f0", "f1", "f2")


def test_shift_raises_one_drift_event_naming_window_and_reference(tmp_path: Path) -> None:
    x = gaussian(3000)
    x[2000:, 1] += 3.0
    step = MonitorStep(config(P, ert=100_000), open_store(tmp_path), pipeline=P)
    events = [e for out in run(step, messages(P, x)) for e in out.drift_events]
    assert len(events) == 1, "the hold-off keeps a persisting drift to one event per ert rows"
    event = events[0]
    (window,) = event.offsets
    assert 2000 <= window.end_offset < 2300, "caught within a few hundred rows"
    assert window.start_offset == 400  # monitoring began right after the bootstrap rows
    assert event.rows_seen == window.end_offset - window.start_offset + 1
    assert event.reference_data_version == step.reference_data_version
    assert event.features[0].name == "f1"
    assert event.statistic > event.threshold


def test_no_alarm_without_drift(tmp_path: Path) -> None:
    step = MonitorStep(config(P, ert=100_000), open_store(tmp_path), pipeline=P)
    outs = run(step, messages(P, gaussian(3000)))
    assert [e for out in outs for e in out.drift_events] == []


def test_batch_boundaries_do_not_change_the_result(tmp_path: Path) -> None:
    x = gaussian(2000)
    x[1200:, 0] += 2.0
    msgs = messages(P, x)
    a = MonitorStep(config(P, ert=100_000), open_store(tmp_path / "a"), pipeline=P)
    b = MonitorStep(config(P, ert=100_000), open_store(tmp_path / "b"), pipeline=P)
    ea = [e.drift_id for o in run(a, msgs, 1000) for e in o.drift_events]
    eb = [e.drift_id for o in run(b, msgs, 37) for e in o.drift_events]
    assert ea == eb and len(ea) == 1


@pytest.mark.parametrize("detection", ["pooled", "per_partition"])
def test_restore_plus_redelivery_equals_an_uninterrupted_run(
    tmp_path: Path, detection: str
) -> None:
    x = gaussian(3000)
    x[2200:, 2] *= 3.0
    msgs = messages(P, x)
    cfg = config(P, ert=100_000, detection=detection)
    whole = MonitorStep(cfg, open_store(tmp_path / "w"), pipeline=P)
    drift_whole = [e.drift_id for o in run(whole, msgs) for e in o.drift_events]

    store = open_store(tmp_path / "c")
    first = MonitorStep(cfg, store, pipeline=P)
    run(first, msgs[:1500])
    saved, chart = first.state_bytes(), first.pool_state_bytes()
    run(first, msgs[1500:1800])  # processed but never checkpointed: lost in the crash
    second = MonitorStep(cfg, store, pipeline=P)
    second.restore(saved)
    if chart is not None:
        second.restore_pool(chart)
    # At-least-once: the transport re-delivers everything after the checkpoint.
    drift_second = [e.drift_id for o in run(second, msgs[1500:]) for e in o.drift_events]
    assert drift_second == drift_whole and len(drift_whole) == 1
    assert second.rows_seen == whole.rows_seen == 3000
    if detection == "pooled":
        assert whole.pool is not None and second.pool is not None
        assert whole.pool.rows_seen == second.pool.rows_seen == 2600  # after 400 reference
        dw, ds = whole.pool.detector, second.pool.detector
    else:
        dw, ds = whole.detector(0), second.detector(0)  # type: ignore[assignment]
    assert dw is not None and ds is not None
    np.testing.assert_allclose(ds._state, dw._state)
    # Re-delivered rows are archived again but read back once.
    assert store.archive(P).read_rows().num_rows == 3000


def test_redelivered_batches_are_not_counted_twice(tmp_path: Path) -> None:
    msgs = messages(P, gaussian(1000))
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    run(step, msgs)
    again = step.process(msgs[500:700])
    assert (again.rows, again.dead_letters, step.rows_seen) == (0, [], 1000)
    assert step.store.archive(P).row_count() == 1000  # skipped whole, not archived again
    twice = messages(P, gaussian(2, seed=9), first=1000)
    assert step.process([twice[0], twice[0], twice[1]]).rows == 2
    assert step.rows_seen == 1002


def test_state_of_one_partition_restores_only_that_partition(tmp_path: Path) -> None:
    msgs = messages(P, gaussian(2000), partitions=2)
    cfg = config(P, detection="per_partition")
    step = MonitorStep(cfg, open_store(tmp_path), pipeline=P)
    run(step, msgs)
    fresh = MonitorStep(cfg, open_store(tmp_path), pipeline=P)
    fresh.restore(step.state_bytes([1]), partitions=[1])
    d1, f1 = step.detector(1), fresh.detector(1)
    assert d1 is not None and f1 is not None and d1.n_seen == f1.n_seen > 0
    assert fresh.reference_data_version == step.reference_data_version
    f0 = fresh.detector(0)  # a monitor for partition 0 starts fresh from the reference
    assert f0 is not None and f0.n_seen == 0


@pytest.mark.slow
@pytest.mark.parametrize("detection", ["per_partition", "pooled"])
def test_partition_monitors_keep_the_pipeline_false_alarm_rate(
    tmp_path: Path, detection: str
) -> None:
    """P monitors, each with the user's ert over its share of the rows, raise as many false
    alarms as one monitor over all rows (ert counts events, so alarms add up to N/ert); the
    pooled chart over P partitions raises as many as over one."""
    n, ert = 48_000, 1000
    x = gaussian(n + 2000, d=2, seed=3)
    counts = {}
    for parts in (1, 4):
        step = MonitorStep(
            config(
                P,
                ert=ert,
                reference_rows=2000,
                window=50,
                n_simulated=200_000,
                detection=detection,
            ),
            open_store(tmp_path / str(parts)),
            pipeline=P,
            alarm_holdoff=0,
        )
        msgs = messages(P, x[:2000]) + messages(P, x[2000:], first=2000, partitions=parts)
        outs = run(step, msgs, 2000)
        counts[parts] = sum(len(o.drift_events) + o.suppressed_alarms for o in outs)
    assert counts[1] > 10 and counts[4] > 10
    assert 0.5 <= counts[4] / counts[1] <= 2.0, counts
    # Scaling each partition's ert by P would have cut the count about 4-fold:
    assert counts[4] > counts[1] / 2.5, counts


def _champion_event(store: object, version_id: str, deployment_id: str) -> ModelVersionEvent:
    return ModelVersionEvent(
        pipeline=P,
        deployment_id=deployment_id,
        model_version_id="m1",
        artifact_uri="file:///m",
        content_hash="0" * 64,
        framework="torch-mlp",
        feature_names=["f0", "f1", "f2"],
        data_version_id=version_id,
    )


def test_new_champion_becomes_the_reference(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    step = MonitorStep(config(P), store, pipeline=P)
    run(step, messages(P, gaussian(1000)))
    rows = store.archive(P).read_rows()
    version = store.snapshot(P, rows.slice(500, 500), parents=[], combine="root")
    model = store.register_model(
        P, b"w", framework="torch-mlp", params={}, metrics={}, data_version_id=version.id
    )
    deployment = store.deploy(P, "champion", model.id, reason="trained")
    step.on_model_version(_champion_event(store, version.id, deployment.id))
    assert step.reference_data_version == version.id
    detector = step.detector(0)
    assert detector is not None and detector.n_seen == 0


def test_a_forged_model_version_changes_nothing_the_store_does_not_hold(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    step = MonitorStep(config(P), store, pipeline=P)
    run(step, messages(P, gaussian(1000)))
    before = (step.reference_data_version, step.reference_deployment_id)
    for data_version in (None, "dv-unknown"):
        step.on_model_version(_champion_event(store, data_version, "forged"))  # type: ignore[arg-type]
        assert (step.reference_data_version, step.reference_deployment_id) == before


def test_a_reference_whose_rows_were_replaced_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from driftline.lifecycle_store.exceptions import ArtifactCorruptedError

    store = open_store(tmp_path)
    run(MonitorStep(config(P), store, pipeline=P), messages(P, gaussian(1000)))
    version = store.snapshot(
        P, store.archive(P).read_rows().slice(0, 500), parents=[], combine="root"
    )
    model = store.register_model(
        P, b"w", framework="torch-mlp", params={}, metrics={}, data_version_id=version.id
    )
    store.deploy(P, "champion", model.id, reason="trained")
    path = Path(version.artifact_uri.removeprefix("file://"))
    table = pq.read_table(path)
    i = table.schema.get_field_index("f0")
    pq.write_table(table.set_column(i, "f0", pa.array(np.zeros(table.num_rows))), path)
    with pytest.raises(ArtifactCorruptedError, match="no longer hashes"):
        MonitorStep(config(P), store, pipeline=P).sync_reference()


def test_labels_are_archived_and_bad_ones_dead_lettered(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from driftline.schemas import LabelEvent
    from driftline.streams.monitor.messages import RawMessage

    store = open_store(tmp_path)
    step = MonitorStep(config(P), store, pipeline=P)
    run(step, messages(P, gaussian(50)))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    good = [LabelEvent(event_id=f"row-{i}", label=i % 2, timestamp=t0).to_json() for i in range(5)]
    out = step.process_labels(
        [RawMessage(v, None, (), f"{P}.labels", 0, i) for i, v in enumerate([*good, b"nope"])]
    )
    assert out.labels == 5 and [d.reason.value for d in out.dead_letters] == ["malformed"]
    assert store.archive(P).read_labels().num_rows == 5


def test_bad_state_bytes_are_refused(tmp_path: Path) -> None:
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    with pytest.raises(ValueError, match="not monitor state"):
        step.restore(b"garbage")
    other = MonitorStep(config("other"), open_store(tmp_path / "o"), pipeline="other")
    with pytest.raises(ValueError, match="cannot restore pipeline"):
        step.restore(other.state_bytes())


def test_ood_flags_name_the_far_events(tmp_path: Path) -> None:
    x = gaussian(1000)
    x[900, :] = 25.0  # far from everything in the reference
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P, emit_ood=True)
    flags = [f for out in run(step, messages(P, x)) for f in out.ood_flags]
    assert "row-900" in {f.event_id for f in flags}
    assert len(flags) < 20, "in-distribution rows are rarely flagged"
    assert all(f.score > f.threshold for f in flags)


def test_labels_before_any_row_are_kept_until_the_pipeline_exists(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from driftline.schemas import LabelEvent
    from driftline.streams.monitor.messages import RawMessage

    store = open_store(tmp_path)
    step = MonitorStep(config(P), store, pipeline=P)
    assert not step.holds_labels
    label = LabelEvent(event_id="row-3", label=1, timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    out = step.process_labels([RawMessage(label.to_json(), None, (), f"{P}.labels", 0, 0)])
    assert out.labels == 1
    assert step.holds_labels, "no features known yet: the label waits in memory"
    run(step, messages(P, gaussian(10)))
    assert not step.holds_labels
    assert store.archive(P).read_labels().column("event_id").to_pylist() == ["row-3"]
