"""Fixtures of the ingest integration tests: a pipeline on the real broker, its worker as a
child process (so it can be SIGKILLed), and ways to look at what it did."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from driftline.config.settings import Settings
from driftline.lifecycle_store import LifecycleStore
from driftline.schemas import EventSigner
from driftline.streams.kafka.app import app_id
from driftline.streams.kafka.clients import admin_client, ensure_topics, make_consumer

SIGNER = EventSigner.generate()
"""The worker's key: it signs the drift events it publishes (it refuses to start without)."""

WORKER = [sys.executable, "-c", "from driftline.streams.cli import main; main()", "worker"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


class PipelineRun:
    """One pipeline on a broker: its config file, store, worker processes and topics."""

    def __init__(self, root: Path, bootstrap: str, name: str, **options: Any) -> None:
        self.root = root
        self.name = name
        detector = {"kind": "mmd", "ert": 50_000, "reference_rows": 1000}
        detector.update(options.pop("detector", {}))
        params = {"n_simulated": 100_000, "window": 100, "seed": 0}
        params.update(options.pop("params", {}))
        detection = options.pop("detection", None)
        fields = {
            "kafka_bootstrap_servers": bootstrap,
            "partitions": 1,
            "store_url": f"sqlite:///{root}/store.db",
            "artifacts": str(root / "artifacts"),
            "state_dir": str(root / "state"),
            "metrics_port": 0,
            "batch_size": 1000,
            "signing_key": SIGNER.private_key_text(),
        }
        fields.update(options)
        lines = [f"{k} = {_toml(v)}" for k, v in fields.items()]
        lines += ["[pipeline]", f'name = "{name}"']
        if detection is not None:
            lines += [f"detection = {_toml(detection)}"]
        lines += ["[pipeline.detector]"]
        lines += [f"{k} = {_toml(v)}" for k, v in detector.items()]
        lines += ["[pipeline.detector.params]"]
        lines += [f"{k} = {_toml(v)}" for k, v in params.items()]
        self.config_file = root / "driftline.toml"
        root.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("\n".join(lines) + "\n")
        self.settings = Settings.load(self.config_file)
        ensure_topics(self.settings)
        self.workers: list[subprocess.Popen[bytes]] = []
        self._store: LifecycleStore | None = None

    @property
    def store(self) -> LifecycleStore:
        if self._store is None:
            self._store = LifecycleStore.open(
                self.settings.store_url.get_secret_value(), artifacts=self.settings.artifacts
            )
        return self._store

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = open(self.root / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
        proc = subprocess.Popen(
            [*WORKER, "--config", str(self.config_file), "--loglevel", "info"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.workers.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.root.glob("worker-*.log"))
        )

    def archived(self) -> int:
        with contextlib.suppress(Exception):  # the pipeline exists once the worker saw a row
            return self.store.archive(self.name).row_count()
        return 0

    def read(
        self, topic: str, *, want: int | None = None, quiet_s: float = 3.0, timeout: float = 60.0
    ) -> list[Any]:
        """Messages of ``topic`` from the start: until ``want`` arrived (then ``quiet_s`` more
        seconds, to catch extras) or, without ``want``, until ``quiet_s`` pass without one."""
        consumer = make_consumer(self.settings, f"test-reader-{time.monotonic_ns()}")
        consumer.subscribe([topic])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        try:
            while time.monotonic() < deadline:
                m = consumer.poll(0.2)
                if m is not None and not m.error():
                    got.append(m)
                    last = time.monotonic()
                    continue
                enough = want is None or len(got) >= want
                if enough and time.monotonic() - last >= quiet_s:
                    break
        finally:
            consumer.close()
        return got

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._store is not None:
            self._store.close()

    def delete_topics(self) -> None:
        admin = admin_client(self.settings)
        with contextlib.suppress(Exception):
            names = [
                t
                for t in admin.list_topics(timeout=10).topics
                if t.startswith(f"{self.name}.") or t.startswith(app_id(self.name) + "-")
            ]
            if names:
                for future in admin.delete_topics(names).values():
                    with contextlib.suppress(Exception):
                        future.result(timeout=30)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def pipeline_run(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> Iterator[Callable[..., PipelineRun]]:
    """Factory of pipelines on the shared broker (``bootstrap=`` for another one)."""
    runs: list[PipelineRun] = []

    def make(prefix: str = "ingest", bootstrap: str | None = None, **options: Any) -> PipelineRun:
        name = unique_name(prefix)
        run = PipelineRun(tmp_path / name, bootstrap or kafka_bootstrap, name, **options)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop()
        run.delete_topics()
