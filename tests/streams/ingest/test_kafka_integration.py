"""The monitor on the real broker: drift, bad input, SIGKILL and a broker restart."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import TopicPartition

from driftline.schemas import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    DeadLetter,
    DriftEvent,
    InferenceBatch,
    LabelEvent,
)
from driftline.streams.kafka.app import app_id
from driftline.streams.kafka.clients import make_consumer, make_producer
from driftline.streams.kafka.faust_batches import reader_group
from driftline.streams.kafka.replay import replay
from driftline.streams.monitor.pool import PipelinePool
from driftline.streams.monitor.step import MonitorStep
from tests.streams.ingest.conftest import PipelineRun, free_port, wait_for
from tests.streams.ingest.helpers import JSON_HEADERS, event_bytes, messages, process

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def data_file(path: Path, n: int, d: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    columns = {f"f{j}": x[:, j] for j in range(d)}
    columns["label"] = (x[:, 0] > 0).astype(np.int64)
    columns["timestamp"] = pa.array(
        [T0 + timedelta(milliseconds=i) for i in range(n)], pa.timestamp("ms", tz="UTC")
    )
    pq.write_table(pa.table(columns), path)
    return path


def test_known_drift_gives_exactly_its_event_and_no_drift_gives_none(
    pipeline_run, tmp_path: Path
) -> None:
    file = data_file(tmp_path / "stream.parquet", 6000)
    drifting, steady = pipeline_run("drift"), pipeline_run("steady")
    for run in (drifting, steady):
        run.start_worker()
    replay(
        drifting.settings,
        file,
        inject="shift",
        at=4000,
        magnitude=1.5,
        inject_features=["f0"],
        progress=False,
    )
    replay(steady.settings, file, labels_delay=100, progress=False, run_id="row")
    for run in (drifting, steady):
        wait_for(
            lambda r=run: r.archived() >= 6000,
            120,
            f"{run.name}: 6000 archived rows\n" + run.logs(),
        )

    (message,) = drifting.read(drifting.settings.topics.drift, want=1)
    event = DriftEvent.from_json(message.value())
    (window,) = event.offsets
    assert 4000 <= window.end_offset <= 4400, window
    assert window.start_offset == 1000  # monitoring starts after the 1000 reference rows
    assert event.reference_data_version is not None
    assert drifting.store.data_version(event.reference_data_version).row_count == 1000
    assert event.features[0].name == "f0" and event.statistic > event.threshold
    assert event.window_end >= T0 + timedelta(milliseconds=4000)
    assert steady.read(steady.settings.topics.drift) == []
    # Delayed labels went through the labels agent into the archive, joinable by event id.
    labels = wait_for(
        lambda: (t := steady.store.archive(steady.name).read_labels()).num_rows >= 6000 and t,
        60,
        "6000 archived labels",
    )
    assert set(labels.column("event_id").to_pylist()) == {f"row-{i}" for i in range(6000)}


def produce_mixed(run: PipelineRun, good: int, bad: int, seed: int = 1) -> Counter[str]:
    """``good`` JSON events (two partitions) with ``bad`` malformed ones spread among them."""
    p = run.name
    x = np.random.default_rng(seed).normal(size=(good, 3))
    names = ["f0", "f1", "f2"]
    kinds = [
        "malformed",
        "schema_version",
        "feature_mismatch",
        "oversized",
        "unknown_content_type",
        "wrong_pipeline",
        "schema_violation",
    ]
    bad_at = set(np.linspace(0, good - 1, bad).astype(int).tolist())
    producer = make_producer(run.settings, linger_ms=20)

    def produce(*args: Any, **kwargs: Any) -> None:
        # A loaded machine sends slower than this loop queues: wait for room, never drop.
        while True:
            try:
                return producer.produce(*args, **kwargs)
            except BufferError:
                producer.poll(0.05)

    sent: Counter[str] = Counter()
    k = 0
    for i in range(good):
        value = event_bytes(p, i, x[i], names)
        produce(
            run.settings.topics.inputs, value, key=f"row-{i}".encode(), headers=list(JSON_HEADERS)
        )
        if i in bad_at:
            kind = kinds[k % len(kinds)]
            k += 1
            doc = orjson.loads(value)
            doc["event_id"] = f"bad-{k}"
            headers = list(JSON_HEADERS)
            if kind == "malformed":
                raw = value[: len(value) // 2]
            elif kind == "schema_version":
                raw = orjson.dumps({**doc, "schema_version": 7})
            elif kind == "feature_mismatch":
                raw = orjson.dumps({**doc, "features": {"f0": 1.0, "zz": 2.0, "f2": 3.0}})
            elif kind == "oversized":
                raw = orjson.dumps({**doc, "model_version": "x" * 5000})
            elif kind == "unknown_content_type":
                raw, headers = value, [(CONTENT_TYPE_HEADER, b"text/csv")]
            elif kind == "wrong_pipeline":
                raw = orjson.dumps({**doc, "pipeline": "someone-else"})
            else:
                raw = orjson.dumps({**doc, "timestamp": "yesterday"})
            produce(run.settings.topics.inputs, raw, key=f"bad-{k}".encode(), headers=headers)
            sent[kind] += 1
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return sent


def test_malformed_messages_go_to_the_dlq_and_good_rows_are_archived_once(pipeline_run) -> None:
    port = free_port()
    run = pipeline_run("mixed", partitions=2, max_message_bytes=4096, metrics_port=port)
    worker = run.start_worker()
    sent = produce_mixed(run, good=100_000, bad=1000)
    wait_for(lambda: run.archived() >= 100_000, 240, "100,000 archived rows\n" + run.logs())
    dead = [DeadLetter.from_json(m.value()) for m in run.read(run.settings.topics.dlq, want=1000)]
    assert Counter(d.reason.value for d in dead) == sent
    assert all(d.payload and d.source_topic == run.settings.topics.inputs for d in dead)
    assert {d.key for d in dead} == {f"bad-{k}".encode() for k in range(1, 1001)}
    rows = run.store.archive(run.name).read_rows()
    assert run.archived() == rows.num_rows == 100_000  # each good row exactly once
    assert set(rows.column("event_id").to_pylist()) == {f"row-{i}" for i in range(100_000)}
    assert worker.poll() is None, "the worker survived every bad message"
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    text = metrics.decode()
    malformed = f'driftline_dead_letters_total{{pipeline="{run.name}",reason="malformed"}}'
    assert f"{malformed} {sent['malformed']}.0" in text
    assert "driftline_events_total" in text and "driftline_consumer_lag" in text


def last_state(run: PipelineRun) -> bytes:
    changelog = f"driftline-monitor-{run.name}-monitor-state-changelog"
    records = run.read(changelog, quiet_s=2.0)
    assert records, "the worker checkpointed its state into the table's changelog"
    return records[-1].value()


def committed_offset(run: PipelineRun, topic: str, partition: int = 0) -> int | None:
    """The offset of ``topic``/``partition`` the monitor's batch reader committed (None:
    nothing yet)."""
    consumer = make_consumer(run.settings, reader_group(app_id(run.name)))
    try:
        (tp,) = consumer.committed([TopicPartition(topic, partition)], timeout=10)
    finally:
        consumer.close()
    return tp.offset if tp.offset >= 0 else None


def end_offset(run: PipelineRun, topic: str, partition: int) -> int:
    consumer = make_consumer(run.settings, f"test-watermarks-{time.monotonic_ns()}")
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    finally:
        consumer.close()


def test_labels_before_any_input_are_committed_only_once_archived(pipeline_run) -> None:
    run = pipeline_run("early-labels")
    producer = make_producer(run.settings)
    for i in range(50):
        label = LabelEvent(event_id=f"row-{i}", label=i % 2, timestamp=T0)
        producer.produce(run.settings.topics.labels, label.to_json(), headers=list(JSON_HEADERS))
    assert producer.flush(30) == 0
    run.start_worker()
    # The pipeline has no features yet, so the labels wait in memory: several checkpoints
    # pass without their offsets being committed (a crash now must not lose them).
    time.sleep(6)
    assert run.workers[0].poll() is None, run.logs()
    assert committed_offset(run, run.settings.topics.labels) is None

    for i, row in enumerate(np.random.default_rng(0).normal(size=(50, 4))):
        producer.produce(
            run.settings.topics.inputs,
            event_bytes(run.name, i, row, [f"f{j}" for j in range(4)]),
            headers=list(JSON_HEADERS),
        )
    assert producer.flush(30) == 0
    wait_for(
        lambda: committed_offset(run, run.settings.topics.labels) == 50,
        60,
        "label offsets committed once the labels are archived\n" + run.logs(),
    )
    labels = run.store.archive(run.name).read_labels()
    assert set(labels.column("event_id").to_pylist()) == {f"row-{i}" for i in range(50)}


def wait_until_archived(run: PipelineRun, n: int) -> None:
    """Wait until ``n`` distinct event ids are in the pipeline's archive."""
    wait_for(
        lambda: (
            len(set(run.store.archive(run.name).read_rows().column("event_id").to_pylist())) >= n
        ),
        180,
        "every event id archived\n" + run.logs(),
        poll=2.0,
    )


def test_a_second_worker_takes_over_partitions_and_nothing_is_lost(
    pipeline_run, tmp_path: Path
) -> None:
    n, partitions = 20_000, 4
    file = data_file(tmp_path / "stream.parquet", n, seed=7)
    run = pipeline_run("rebalance", partitions=partitions)
    run.start_worker()
    inputs = run.settings.topics.inputs
    # The batch reader logs each input partition it is given: "reading {p}.inputs[2] from".
    assigned = re.compile(rf"reading {re.escape(inputs)}\[[0-9]+\] from offset")
    joined = []

    def join_midway(rows: int) -> None:
        if not joined and rows >= n // 4:
            wait_for(lambda: run.archived() >= 2000, 60, "rows archived before the second worker")
            run.start_worker()
            joined.append(rows)

    # Slow enough that the second worker joins, and the group rebalances, while rows flow.
    replay(run.settings, file, rate=1500, progress=False, on_sent=join_midway)
    assert joined, "the second worker joined mid-replay"
    second = run.root / "worker-1.log"
    wait_for(
        lambda: assigned.search(second.read_text(errors="replace")),
        60,
        "input partitions assigned to the second worker\n" + run.logs(),
    )
    wait_until_archived(run, n)
    wait_for(
        lambda: all(
            committed_offset(run, inputs, p) == end_offset(run, inputs, p)
            for p in range(partitions)
        ),
        60,
        "every input offset committed\n" + run.logs(),
    )
    assert all(w.poll() is None for w in run.workers), run.logs()


def test_sigkill_mid_replay_loses_nothing_and_restores_the_detector(
    pipeline_run, tmp_path: Path
) -> None:
    n = 30_000
    file = data_file(tmp_path / "stream.parquet", n, seed=5)
    run = pipeline_run("sigkill", detection="pooled")
    first = run.start_worker()
    killed = []

    def kill_midway(rows: int) -> None:
        if not killed and rows >= n // 2:
            wait_for(lambda: run.archived() >= 5000, 60, "rows archived before the kill")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            killed.append(rows)
            run.start_worker()

    replay(run.settings, file, rate=6000, progress=False, on_sent=kill_midway)
    assert killed, "the worker was killed mid-replay"
    table = pq.read_table(file)
    wait_until_archived(run, n)
    assert run.workers[-1].poll() is None
    time.sleep(2.5)  # one more checkpoint interval: the state covers every row

    # The restored and continued state equals an uninterrupted run over the same rows.
    x = np.column_stack([table.column(f"f{j}").to_numpy() for j in range(4)])
    reference_store = run.store
    whole = MonitorStep(run.settings.config, reference_store, pipeline=run.name)
    whole.restore(last_state(run))
    clean = MonitorStep(run.settings.config, _scratch_store(tmp_path), pipeline=run.name)
    for lo in range(0, n, 1000):
        process(clean, messages(run.name, x[lo : lo + 1000], first=lo))
    assert whole.rows_seen == clean.rows_seen == n
    # The pipeline chart (pooled detection), from its own table's changelog.
    chart = f"driftline-monitor-{run.name}-pipeline-chart-changelog"
    restored = PipelinePool.from_bytes(run.read(chart, quiet_s=2.0)[-1].value())
    assert clean.pool is not None and restored.rows_seen == clean.pool.rows_seen == n - 1000
    a, b = restored.detector, clean.pool.detector
    assert a.n_seen == b.n_seen
    # Equal up to float32 rounding (batches were cut differently); one row missing or counted
    # twice would move the state by about lam * |row| ~ 1e-2.
    np.testing.assert_allclose(a._state, b._state, rtol=0, atol=1e-5)
    assert "restored monitor state" in run.logs()


def _scratch_store(tmp_path: Path):
    from driftline.lifecycle_store import LifecycleStore

    return LifecycleStore.open(f"sqlite:///{tmp_path}/scratch.db", artifacts=str(tmp_path / "sa"))


class SecondBroker:
    """A broker of our own (never the shared one), which we can stop and start again."""

    def __init__(self, state: Path, port: int) -> None:
        self.state, self.port = state, port
        self.env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        self.env.update(KAFKA_PORT=str(port), KAFKA_STATE_DIR=str(state))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_fresh(self) -> None:
        subprocess.run(["bash", str(REPO / "scripts/kafka.sh"), "start"], env=self.env, check=True)

    def stop(self) -> None:
        subprocess.run(["bash", str(REPO / "scripts/kafka.sh"), "stop"], env=self.env, check=False)

    def restart(self) -> None:
        """Start again on the same data (``start`` would wipe it)."""
        subprocess.run(["bash", str(REPO / "scripts/kafka.sh"), "resume"], env=self.env, check=True)


@pytest.fixture
def second_broker(tmp_path: Path):
    if shutil.which("java") is None:
        pytest.fail("java is needed to run a second broker: install a JDK (17+)")
    broker = SecondBroker(tmp_path / "broker2", 19092)
    broker.start_fresh()
    yield broker
    broker.stop()


def test_worker_recovers_by_itself_when_the_broker_restarts(second_broker, pipeline_run) -> None:
    # second_broker comes first so the pipeline (and its worker) is torn down before it.
    run = pipeline_run("restart", bootstrap=second_broker.bootstrap)
    worker = run.start_worker()
    x = np.random.default_rng(9).normal(size=(20_000, 4))

    def send(lo: int, hi: int) -> None:
        producer = make_producer(run.settings)
        for start in range(lo, hi, 1000):
            part = x[start : min(hi, start + 1000)]
            batch = InferenceBatch.from_arrays(
                run.name,
                [f"row-{i}" for i in range(start, start + len(part))],
                [T0] * len(part),
                part,
                ["f0", "f1", "f2", "f3"],
            )
            producer.produce(
                run.settings.topics.inputs,
                batch.to_ipc(),
                headers=[(CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode())],
            )
        assert producer.flush(60) == 0

    send(0, 10_000)
    wait_for(lambda: run.archived() >= 10_000, 90, "the first half archived\n" + run.logs())
    second_broker.stop()
    time.sleep(8)  # the worker loses its broker for a while
    second_broker.restart()
    send(10_000, 20_000)
    wait_for(lambda: run.archived() >= 20_000, 180, "the second half archived\n" + run.logs())
    assert worker.poll() is None, "the same worker process recovered\n" + run.logs()
    ids = set(run.store.archive(run.name).read_rows().column("event_id").to_pylist())
    assert ids == {f"row-{i}" for i in range(20_000)}
