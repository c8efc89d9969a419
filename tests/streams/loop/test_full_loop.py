"""The whole loop as users run it, every piece a real process on the real broker:

``driftline replay`` (labelled stream, injected drift, labels delayed) → ``driftline worker``
(monitor) → ``{p}.drift`` → ``driftline retrainer`` (warm-started training, gate) →
``{p}.model-versions`` → a ModelSubscriber in this test swaps to a better model.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftline.retrainer.adapters import load_adapter
from driftline.schemas import LabelRequest, ModelVersionEvent
from driftline.streams.evaluation.scenarios import inject
from driftline.streams.sdk.subscriber import ModelSubscriber

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = [sys.executable, "-c", "from driftline.streams.cli import main; main()"]
FEATURES = ["f0", "f1", "f2", "f3"]


def labelled_file(path: Path, prefix: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A Parquet file of ``n`` rows whose label is ``f0 + f1 > 0``."""
    x = np.random.default_rng(seed).normal(size=(n, len(FEATURES)))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    columns: dict[str, Any] = {"event_id": [f"{prefix}-{i}" for i in range(n)]}
    columns.update({f: x[:, j] for j, f in enumerate(FEATURES)})
    columns["label"] = y
    pq.write_table(pa.table(columns), path)
    return x, y


@contextlib.contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A CLI process for the duration of the block (SIGTERM, then SIGKILL, at the end)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_new_deployment(
    sub: ModelSubscriber, old: ModelVersionEvent, timeout: float, logs: list[Path]
) -> ModelVersionEvent:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = sub.current_version
        if current is not None and current.deployment_id != old.deployment_id:
            return current
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in logs)
    raise AssertionError(f"no new model within {timeout}s\n{tails}")


def test_replay_worker_retrainer_subscriber(
    kafka_bootstrap: str, loop_pipeline_factory: Any, tmp_path: Path, read_topic: Any
) -> None:
    # A training needs 400 labelled rows: the first alarm comes before the drifted rows'
    # labels (1000 rows late) and is SKIPPED, asking for labels; an alarm of the same
    # episode comes again every ert=1000 rows while the drift lasts, and one of them trains.
    lp = loop_pipeline_factory(
        selection={"min_labelled_rows": 400}, detector={"reference_rows": 500, "ert": 1000}
    )
    config = ["--config", str(lp.config_file)]
    before, after = tmp_path / "before.parquet", tmp_path / "after.parquet"
    labelled_file(before, "a", 600, seed=1)
    x_after, y_after = labelled_file(after, "b", 4500, seed=2)
    logs = [tmp_path / "worker.log", tmp_path / "retrainer.log"]

    def replay(path: Path, *options: str) -> None:
        run = subprocess.run(
            [*CLI, "replay", str(path), *config, "--quiet", *options],
            capture_output=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stdout.decode() + run.stderr.decode()

    with (
        process([*CLI, "worker", *config, "--loglevel", "info"], logs[0]),
        process([*CLI, "retrainer", *config, "--tick-interval", "1"], logs[1]),
        ModelSubscriber.from_settings(lp.settings) as sub,
    ):
        # The old concept; its labels trail by 100 rows. The retrainer trains the first model.
        replay(before, "--labels-delay", "100")
        deadline = time.monotonic() + 180
        while sub.current_version is None and time.monotonic() < deadline:
            time.sleep(0.2)
        first = sub.current_version
        assert first is not None, "\n".join(p.read_text()[-2500:] for p in logs)

        # f0 shifts by 3 standard deviations from row 50 on; labels trail by 1000 rows.
        replay(
            after,
            "--labels-delay", "1000",
            "--rate", "1500",
            "--inject", "shift", "--at", "50", "--magnitude", "3", "--features", "f0",
        )  # fmt: skip
        second = wait_new_deployment(sub, first, 300, logs)

    # Lifecycle transfer from the model that was live, and a better model on the drifted rows.
    assert second.parent_model_version_id == first.model_version_id
    x_drifted = inject(x_after, "shift", 50, 3.0, features=[0])[50:].astype(np.float32)
    y_drifted = y_after[50:]
    store = lp.open_store()

    def accuracy(event: ModelVersionEvent) -> float:
        model = load_adapter(event.framework, store.load_model_artifact(event.model_version_id))
        return float(np.mean(model.predict(x_drifted) == y_drifted))

    old, new = accuracy(first), accuracy(second)
    assert new > old + 0.15, (old, new)
    # The drift episode that produced it is on record, linked to the training.
    life = store.lifecycle(second.model_version_id)
    assert life.training is not None and life.training.status == "COMPLETE"
    assert life.drift_events, "the deployed model's training names no drift event"
    assert all(
        d.payload["reference_data_version"]
        == life.drift_events[0].payload["reference_data_version"]
        for d in life.drift_events
    )
    # Every drift training skipped for want of labels asked for them: its request is on
    # {p}.label-requests, or still in the outbox when the services stopped right after it
    # (published on the next start); none is lost, none names another training.
    asked = {
        t.id
        for t in store.trainings(lp.name, None, status="SKIPPED")
        if t.trigger.get("kind") == "drift" and t.metrics.get("label_request")
    }
    requests = read_topic(lp.settings.topics.label_requests, expect=min(1, len(asked)))
    published = {LabelRequest.from_json(m.value()).training_id for m in requests}
    pending = {
        LabelRequest.from_json(item.value).training_id
        for item in store.pending_outbox()
        if item.topic == lp.settings.topics.label_requests
    }
    assert published | pending == asked
    store.close()
