"""Drift event → a consumer serving the new model, over Kafka, vs the same retraining in process.

Each repetition builds two identical pipelines (same rows, same seed): a champion trained on
the old concept, then ``--rows`` labelled rows of a drifted concept archived. Then

* **in process** (the baseline): ``Retrainer.handle_drift(event)`` with an in-memory
  publisher — selection, snapshot, warm-started MLP fit, gate, register, deploy;
* **over Kafka**: the DriftEvent is produced to ``{p}.drift``; a running
  :class:`~driftline.streams.kafka.retrainer_service.RetrainerService` consumes it, retrains,
  publishes the
  ModelVersionEvent through the outbox to ``{p}.model-versions``, and a
  :class:`~driftline.streams.sdk.subscriber.ModelSubscriber` loads the artifact, checks its hash
  and swaps.
  The clock stops in the subscriber's swap callback.

The difference is what Kafka, the outbox and the consumer SDK add. Goal: ≤ 15 s for an MLP
on 50k rows on CPU.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python benchmarks/bench_streams_loop.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from driftline.config.pipeline import PipelineConfig
from driftline.config.settings import Settings
from driftline.lifecycle_store.store import LifecycleStore
from driftline.retrainer.publisher import InMemoryPublisher
from driftline.retrainer.service import Retrainer
from driftline.schemas import DriftEvent
from driftline.streams.kafka.clients import admin_client, ensure_topics, make_producer
from driftline.streams.kafka.retrainer_service import RetrainerService
from driftline.streams.sdk.subscriber import ModelSubscriber, ServedModel

N_FEATURES = 16
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def concept(rng: np.random.Generator, n: int, drifted: bool) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, N_FEATURES))
    if drifted:
        x[:, 0] += 1.5
        return x, (x[:, 0] - x[:, 1] > 1.5).astype(np.int64)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def archive(store: LifecycleStore, pipeline: str, x: np.ndarray, y: np.ndarray, start: int) -> None:
    """Rows and their labels, as the monitor archives them (one segment each)."""
    n = len(x)
    ids = pa.array([f"e{start + i}" for i in range(n)])
    ts = pa.array([T0 + timedelta(seconds=start + i) for i in range(n)], pa.timestamp("us", "UTC"))
    rows = {"event_id": ids, "timestamp": ts}
    rows.update({f: pa.array(x[:, j]) for j, f in enumerate(FEATURES)})
    rows.update(
        {
            "topic": pa.array([f"{pipeline}.inputs"] * n),
            "partition": pa.array(np.zeros(n, np.int32)),
            "offset": pa.array(np.arange(start, start + n, dtype=np.int64)),
        }
    )
    store.archive(pipeline).append_rows(pa.table(rows))
    store.archive(pipeline).append_labels(
        pa.table({"event_id": ids, "label": pa.array(y), "timestamp": ts})
    )


@dataclass
class Prepared:
    pipeline: str
    store: LifecycleStore
    config: PipelineConfig
    event: DriftEvent
    root: Path


def prepare(root: Path, rows: int, seed: int, epochs: int) -> Prepared:
    """A pipeline with a champion on the old concept and ``rows`` drifted labelled rows."""
    pipeline = f"bench-loop-{uuid.uuid4().hex[:8]}"
    store = LifecycleStore.open(f"sqlite:///{root}/{pipeline}.db", artifacts=str(root / "art"))
    config = PipelineConfig(
        name=pipeline,
        feature_names=FEATURES,
        bootstrap_rows=1000,
        model={"epochs": epochs},
    )
    rng = np.random.default_rng(seed)
    old_x, old_y = concept(rng, 5000, drifted=False)
    with Retrainer(store, config, InMemoryPublisher()) as bootstrap:
        archive(store, pipeline, old_x, old_y, 0)
        [outcome] = bootstrap.tick(T0 + timedelta(seconds=5000))
        assert outcome.deployed, outcome.reason
    champion = store.current(pipeline)
    assert champion is not None
    new_x, new_y = concept(rng, rows, drifted=True)
    archive(store, pipeline, new_x, new_y, 5000)
    event = DriftEvent(
        drift_id=f"d-{uuid.uuid4().hex[:8]}",
        pipeline=pipeline,
        detector="mmd",
        statistic=5.0,
        threshold=1.0,
        window_start=T0 + timedelta(seconds=5000),
        window_end=T0 + timedelta(seconds=5000 + rows),
        rows_seen=rows,
        reference_data_version=champion.data_version_id,
    )
    return Prepared(pipeline, store, config, event, root)


def run_in_process(prep: Prepared) -> dict[str, float]:
    publisher = InMemoryPublisher()
    with Retrainer(prep.store, prep.config, publisher) as retrainer:
        start = time.perf_counter()
        outcome = retrainer.handle_drift(prep.event)
        total = time.perf_counter() - start
    assert outcome.deployed and publisher.model_versions, outcome.reason
    return {
        "total_s": total,
        "fit_s": outcome.timings.get("fit_s", float("nan")),
        "epochs": float(outcome.metrics["fit"]["epochs"]),
        "accuracy": float(outcome.metrics["challenger"]["accuracy"]),
    }


def run_over_kafka(prep: Prepared, bootstrap: str) -> dict[str, float]:
    settings = Settings(
        pipeline=prep.pipeline,
        kafka_bootstrap_servers=bootstrap,
        store_url=str(prep.store.engine.url),
        artifacts=str(prep.root / "art"),
        config=prep.config,
    )
    ensure_topics(settings)
    service = RetrainerService(settings, store=prep.store, tick_interval_s=3600)
    swapped = threading.Event()
    swap_at: list[float] = []

    def on_swap(new: ServedModel, old: ServedModel | None) -> None:
        if old is not None:
            swap_at.append(time.perf_counter())
            swapped.set()

    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        with ModelSubscriber(bootstrap, prep.pipeline, on_swap=on_swap) as sub:
            # Publish the champion first, so the subscriber serves it and waits for the next.
            champion = prep.store.current(prep.pipeline)
            assert champion is not None
            _publish_current(prep, settings)
            sub.wait(champion.id, timeout=60)
            _wait_for_assignment(service)
            producer = make_producer(settings)
            start = time.perf_counter()
            producer.produce(
                settings.topics.drift, key=prep.pipeline.encode(), value=prep.event.to_json()
            )
            producer.flush(30)
            if not swapped.wait(300):
                raise RuntimeError(f"no swap within 300 s; subscriber error {sub.last_error}")
            served = sub.current_version
    finally:
        service.stop()
        thread.join(60)
        service.close()
        admin_client(settings).delete_topics(settings.topics.all())
    assert served is not None
    [training] = [
        t
        for t in prep.store.trainings(prep.pipeline)
        if t.model_version_id == served.model_version_id
    ]
    timings = training.resources["timings"]
    return {
        "total_s": swap_at[0] - start,
        "fit_s": float(timings.get("fit_s", float("nan"))),
        "retrain_s": float(timings.get("total_s", float("nan"))),
        "epochs": float(training.resources.get("epochs", float("nan"))),
        "accuracy": float(training.metrics["challenger"]["accuracy"]),
    }


def _publish_current(prep: Prepared, settings: Settings) -> None:
    from driftline.lifecycle_store.records import OutboxMessage
    from driftline.retrainer.publisher import flush_outbox
    from driftline.streams.admin import deployment_event
    from driftline.streams.kafka.publisher import KafkaPublisher

    # The bootstrap deployment went to an in-memory publisher; announce it on Kafka too.
    deployment = prep.store.history(prep.pipeline)[-1]
    model = prep.store.model_version(deployment.model_version_id)
    event = deployment_event(prep.store, deployment, model)
    prep.store.enqueue(OutboxMessage(settings.topics.model_versions, event.key, event.to_json()))
    publisher = KafkaPublisher(settings)
    flush_outbox(prep.store, publisher)
    publisher.close()


def _wait_for_assignment(service: RetrainerService, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not service.assigned and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="drifted labelled rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30, help="most epochs (patience 3)")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    results: dict[str, list[dict[str, float]]] = {"in process": [], "over Kafka": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            # Alternate the order so neither path always runs on a warmer machine.
            order = ["in process", "over Kafka"] if rep % 2 == 0 else ["over Kafka", "in process"]
            for name in order:
                prep = prepare(Path(tmp), args.rows, seed=rep, epochs=args.epochs)
                try:
                    if name == "in process":
                        results[name].append(run_in_process(prep))
                    else:
                        results[name].append(run_over_kafka(prep, bootstrap))
                finally:
                    prep.store.close()
                print(f"rep {rep} {name}: {results[name][-1]}", flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r.get(key, float("nan")) for r in results[name])

    base = med("in process", "total_s")
    print()
    print(
        f"Drift event → new model served, torch MLP on {args.rows:,} rows "
        f"({N_FEATURES} features), median of {args.repeats}"
    )
    print()
    print(
        "| path | drift event → served (s) | retraining (s) | of which fit (s) "
        "| transport + swap (s) | epochs | holdout accuracy | vs in process |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in results:
        total = med(name, "total_s")
        # In process, the retraining is the whole call; over Kafka the rest is the transport:
        # consume, outbox publish, subscriber load + hash check + swap.
        retrain = med(name, "retrain_s") if name == "over Kafka" else total
        transport = (
            statistics.median(r["total_s"] - r["retrain_s"] for r in results[name])
            if name == "over Kafka"
            else 0.0
        )
        print(
            f"| {name} | {total:.2f} | {retrain:.2f} | {med(name, 'fit_s'):.2f} | "
            f"{transport:.2f} | {med(name, 'epochs'):.0f} | {med(name, 'accuracy'):.3f} | "
            f"{total / base:.2f}x |"
        )
    kafka = med("over Kafka", "total_s")
    print()
    print(
        f"goal: drift event → served ≤ 15 s: {'met' if kafka <= 15 else 'NOT met'} "
        f"({kafka:.2f} s over Kafka)"
    )


if __name__ == "__main__":
    main()
