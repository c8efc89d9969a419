"""Pooled detection in process: hostile summaries are refused with a reason, the pipeline
chart survives a restart of its owner, and P partitions give one DriftEvent per change."""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from driftline.detectors import OnlineMMD
from driftline.schemas import DeadLetterReason, EventSigner
from driftline.streams.embedded.bus import InMemoryBus
from driftline.streams.embedded.runner import BusTransport
from driftline.streams.loops.monitor import MonitorLoop
from driftline.streams.monitor import pool as pool_module
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.pool import PipelinePool
from driftline.streams.monitor.step import MonitorStep
from driftline.streams.monitor.summaries import (
    MAX_SUMMARY_BYTES,
    Summary,
    decode_summary,
    encode_summary,
)
from tests.streams.ingest.helpers import batches, config, messages, open_store, process

P = "pooled"


def gaussian(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3))


def summaries_of(step: MonitorStep, x: np.ndarray, partitions: int) -> list[bytes]:
    out = []
    for batch in batches(messages(P, x, partitions=partitions), 200):
        out += step.process(batch).summaries
    return out


def as_messages(step: MonitorStep, values: list[bytes]) -> list[RawMessage]:
    topic = step.topics.detector_summaries
    return [RawMessage(v, None, (), topic, 0, i) for i, v in enumerate(values)]


def _forge(valid: bytes, **changes: object) -> bytes:
    """``valid`` with header fields changed (arrays kept)."""
    n = struct.unpack(">I", valid[8:12])[0]
    header = json.loads(valid[12 : 12 + n])
    header.update(changes)
    head = json.dumps(header).encode()
    return valid[:8] + struct.pack(">I", len(head)) + head + valid[12 + n :]


def test_hostile_summaries_are_dead_lettered_with_a_reason_and_the_chart_goes_on(
    tmp_path: Path,
) -> None:
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    valid = summaries_of(step, gaussian(1000), 1)
    assert valid and step.pool is None  # summaries are sent, not merged, by process()
    good = valid[0]
    parsed = decode_summary(good, pipeline=P)
    nan = encode_summary(replace(parsed, rows=np.full_like(parsed.rows, np.nan)))
    forged = [
        b"garbage",
        b"\x00" * (MAX_SUMMARY_BYTES + 1),
        _forge(good, pipeline="someone-else"),
        _forge(good, rows=10**9),  # a shape that would allocate gigabytes
        _forge(good, rows=1),  # arrays longer than the header says
        _forge(good, map_dim=2, rows=1),  # wrong width for this detector
        _forge(good, partition=-1),
        good[:12] + b"{not json" + good[21:],
        nan,
    ]
    out = step.merge_summaries(as_messages(step, [*forged, *valid]))
    reasons = [d.reason for d in out.dead_letters]
    assert len(reasons) == len(forged), out.dead_letters
    assert reasons[:3] == [
        DeadLetterReason.MALFORMED,
        DeadLetterReason.OVERSIZED,
        DeadLetterReason.WRONG_PIPELINE,
    ]
    assert reasons[-1] == DeadLetterReason.NON_FINITE
    assert all(d.source_topic == step.topics.detector_summaries for d in out.dead_letters)
    assert all(d.detail.startswith("detector summary") for d in out.dead_letters)
    # Every valid summary after them was merged: 1000 rows minus the 400 reference rows.
    assert step.pool is not None and step.pool.rows_seen == 600 == out.rows


def test_a_repeated_summary_is_folded_once_and_another_reference_is_skipped(
    tmp_path: Path,
) -> None:
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    valid = summaries_of(step, gaussian(1000), 2)
    step.merge_summaries(as_messages(step, valid + valid))
    assert step.pool is not None and step.pool.rows_seen == 600
    stale = step.merge_summaries(as_messages(step, [_forge(valid[0], reference="dv-old")]))
    assert stale.skipped_summaries == 1 and stale.dead_letters == []


@pytest.mark.parametrize("partitions", [1, 4, 12])
def test_one_change_over_p_partitions_gives_one_drift_event(
    tmp_path: Path, partitions: int
) -> None:
    x = gaussian(6000, seed=4)
    x[3000:, 0] += 1.0
    step = MonitorStep(config(P, ert=50_000), open_store(tmp_path), pipeline=P)
    events = []
    for batch in batches(messages(P, x, partitions=partitions), 40 * partitions):
        by_partition = [[m for m in batch if m.partition == p] for p in range(partitions)]
        for part in by_partition:
            if part:
                events += process(step, part).drift_events
    (event,) = events
    assert event.features[0].name == "f0"
    assert {r.partition for r in event.offsets} == set(range(partitions))
    # After the change (row 3000 is offset 3000 // P of each partition), within 600 rows.
    assert max(r.end_offset for r in event.offsets) >= 3000 // partitions
    assert sum(r.end_offset + 1 for r in event.offsets) <= 3600


def test_the_owner_restores_the_pipeline_chart_after_a_restart(tmp_path: Path) -> None:
    bus = InMemoryBus()
    bus.create_topic(f"{P}.detector-summaries", partitions=1)
    transport = BusTransport(bus)
    store = open_store(tmp_path)
    step = MonitorStep(config(P), store, pipeline=P)
    loop = MonitorLoop(step, transport, interval_s=0)
    values = summaries_of(step, gaussian(1000), 1)
    asyncio.run(loop.summaries(as_messages(step, values)))
    assert step.pool is not None and step.pool.rows_seen == 600

    # A new owner (restart or rebalance) with the same transport: the chart comes back, and
    # the summaries re-delivered after it are not counted twice.
    fresh = MonitorStep(config(P), store, pipeline=P)
    fresh.restore(step.state_bytes())
    again = MonitorLoop(fresh, transport, interval_s=0)
    asyncio.run(again.summaries(as_messages(fresh, values)))
    assert fresh.pool is not None and fresh.pool.rows_seen == 600
    np.testing.assert_allclose(fresh.pool.detector._state, step.pool.detector._state)
    assert bus.committed("driftline-monitor", f"{P}.detector-summaries") == [len(values)]


def test_the_owner_folds_only_summaries_sealed_by_the_pipelines_workers(tmp_path: Path) -> None:
    """The summaries topic is writable by anyone; a well-formed summary that the workers did
    not seal would steer the pipeline's chart (raise or hide an alarm)."""
    bus = InMemoryBus()
    bus.create_topic(f"{P}.detector-summaries", partitions=1)
    worker_key, stranger = EventSigner.generate(), EventSigner.generate()
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    loop = MonitorLoop(step, BusTransport(bus), interval_s=0, signer=worker_key)
    plain = summaries_of(step, gaussian(1000), 1)
    sealed = [worker_key.seal(v) for v in plain]
    tampered = bytearray(sealed[0])
    tampered[200] ^= 0xFF
    forged = [plain[0], stranger.seal(plain[0]), bytes(tampered)]
    out = asyncio.run(loop.summaries(as_messages(step, [*forged, *sealed])))
    assert [d.reason for d in out.dead_letters] == [DeadLetterReason.UNSIGNED] * 3
    details = [d.detail for d in out.dead_letters]
    assert "(unsigned)" in details[0]
    assert "(unknown_key)" in details[1]
    assert "(bad_signature)" in details[2]
    assert all(d.payload == f for d, f in zip(out.dead_letters, forged, strict=True))
    # Only the sealed summaries were folded: 1000 rows minus the 400 reference rows.
    assert step.pool is not None and step.pool.rows_seen == 600
    assert bus.end_offsets(f"{P}.dlq") == [3]


def _by_partition(
    x: np.ndarray, partitions: int, order: list[int], size: int
) -> list[list[RawMessage]]:
    """The round-robin messages of ``x`` in per-partition blocks of ``size``, the partitions
    of each round in ``order`` (how a worker's fetches hand it the same rows)."""
    msgs = messages(P, x, partitions=partitions)
    per = [[m for m in msgs if m.partition == p] for p in range(partitions)]
    out = []
    for start in range(0, max(len(m) for m in per), size):
        out += [per[p][start : start + size] for p in order if per[p][start:]]
    return out


def test_the_bootstrap_reference_does_not_depend_on_the_order_partitions_were_fetched(
    tmp_path: Path,
) -> None:
    """The same rows in other fetch orders give the same reference and the same fit. (The
    fit splits the reference by a seeded permutation of row *positions*: taken in fetch
    order, a P = 12 broker run got a threshold that caught a change after 501 rows where the
    time-ordered rows catch it after 129.)"""
    x = gaussian(1200, seed=5)
    fits = []
    for i, order in enumerate([[0, 1, 2, 3], [3, 1, 0, 2]]):
        step = MonitorStep(config(P), open_store(tmp_path / str(i)), pipeline=P)
        for batch in _by_partition(x, 4, order, size=50):
            step.process(batch)
        fits.append((step.reference_data_version, step._template))
    assert fits[0][0] is not None and fits[0] == fits[1]


def test_workers_that_bootstrap_together_converge_on_one_reference(tmp_path: Path) -> None:
    """Two workers with no reference yet, each with half the partitions, each bootstrap from
    their own rows: both end on the oldest bootstrap, so the owner folds both's summaries."""
    store = open_store(tmp_path)
    x = gaussian(2400, seed=6)
    first, second = (MonitorStep(config(P), store, pipeline=P) for _ in range(2))
    blocks = _by_partition(x, 4, [0, 1, 2, 3], size=50)
    summaries: list[bytes] = []
    for batch in blocks:
        step = first if batch[0].partition < 2 else second
        summaries += step.process(batch).summaries
    assert first.reference_data_version == second.reference_data_version is not None
    assert first._template == second._template
    out = first.merge_summaries(as_messages(first, summaries))
    kept = {decode_summary(s, pipeline=P).reference for s in summaries}
    assert out.skipped_summaries == sum(
        decode_summary(s, pipeline=P).reference != first.reference_data_version for s in summaries
    )
    assert first.pool is not None and set(first.pool.next_row) == {0, 1, 2, 3}, kept


def test_a_partition_revoked_while_its_outputs_are_sent_keeps_its_saved_state(
    tmp_path: Path,
) -> None:
    """A rebalance can revoke a partition while its batch's outputs are being sent; the
    batch must not mark it for the next checkpoint, which would save the dropped (empty)
    state over its checkpoint — the new owner would restore a partition whose rows are
    numbered from 0 again."""
    bus = InMemoryBus()
    bus.create_topic(f"{P}.detector-summaries", partitions=1)
    transport = BusTransport(bus)
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    loop = MonitorLoop(step, transport, interval_s=0)
    msgs = messages(P, gaussian(1000))
    asyncio.run(loop.inputs(msgs[:600]))
    asyncio.run(loop.checkpoint())
    saved = transport.load_state(loop.state_key(0))
    assert saved is not None

    send = transport.send

    async def send_during_a_rebalance(records: object) -> None:
        loop.revoked({0})
        await send(records)  # type: ignore[arg-type]

    transport.send = send_during_a_rebalance  # type: ignore[method-assign]
    asyncio.run(loop.inputs(msgs[600:]))
    asyncio.run(loop.checkpoint())
    assert transport.load_state(loop.state_key(0)) == saved
    restored = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    restored.restore(saved, partitions=[0])
    assert restored.rows_seen == 600


def _pool_and_summaries(partitions: int, block: int) -> tuple[PipelinePool, list[Summary]]:
    rng = np.random.default_rng(7)
    det = OnlineMMD(ert=20_000, window=100, n_simulated=50_000, seed=0)
    det = det.fit(rng.normal(size=(1000, 3)))
    x = rng.normal(size=(partitions * 1200, 3))
    x[4000:, 0] += 1.0
    out = []
    # A lagging worker hands each partition over in blocks of ``block`` rows.
    for start in range(0, 1200, block):
        for p in range(partitions):
            rows = np.arange(p, len(x), partitions)[start : start + block]
            out.append(
                Summary(
                    P,
                    "dv",
                    p,
                    start,
                    det.partial_state(x[rows]).features,
                    x[rows],
                    rows // partitions,
                    rows * 1000,
                )
            )
    return PipelinePool(det.to_bytes(), reference="dv", holdoff=20_000), out


def test_the_chart_folds_blocks_of_lagging_partitions_in_event_time_order() -> None:
    """However large the blocks a lagging worker sends, the chart sees the rows in the order
    of their event time: its alarm is at the row one chart over the interleaved rows gets."""
    rows_at = {}
    for block in (1, 300):
        pool, summaries = _pool_and_summaries(4, block)
        alarms = [a for s in summaries for a in pool.merge(s)]
        rows_at[block] = alarms[0].offset * 4 + alarms[0].partition
        assert pool.forced == 0
    assert rows_at[300] == rows_at[1] > 4000, rows_at


def test_a_quiet_partition_holds_the_chart_back_only_up_to_its_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool_module, "MAX_BUFFERED_BYTES", 100_000)
    pool, summaries = _pool_and_summaries(4, 100)
    for s in summaries:
        if s.partition != 3 or s.first_row == 0:  # partition 3 goes quiet after its first
            pool.merge(s)
    assert pool.forced > 0 and pool.rows_seen == 3700 - pool.buffered
    assert 0 < pool.buffered * 300 <= 100_000
    back = pool_module.PipelinePool.from_bytes(pool.to_bytes())
    assert back.buffered == pool.buffered
