"""The loop with its artifacts on S3: ``driftline worker`` and ``driftline retrainer`` (real
processes on the real broker) and a ModelSubscriber all use ``s3://bucket/prefix``, served by
moto's S3 server on loopback. Credentials and endpoint come from the environment (the AWS
provider chain), never from a URI, and the subscriber reads only its own bucket and prefix.

The same run scrapes the worker's and the retrainer's ``/metrics`` and the subscriber's
registry: every metric the Grafana dashboard and the alert rules query has a sample there.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry, generate_latest

from driftline.lifecycle_store.artifacts import sha256_hex
from driftline.schemas import ModelVersionEvent, ModelVersionVerifier, Topics
from driftline.streams.sdk.subscriber import ModelSubscriber
from tests.conftest import free_port
from tests.streams.loop.conftest import SIGNER
from tests.streams.loop.test_full_loop import CLI, labelled_file, process

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OPS = Path(__file__).resolve().parents[3] / "ops"
KEY_ID, SECRET = "AKIADRIFTLINETEST", "s3-secret-never-logged"


def _wait(predicate: Any, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)
    raise AssertionError(f"not reached within {timeout}s\n{tails}")


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def _sampled(exposition: str) -> set[str]:
    """Metric names with at least one sample line."""
    return {
        line.split("{")[0].split(" ")[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }


def _queried() -> set[str]:
    dashboard = json.loads((OPS / "grafana" / "driftline-dashboard.json").read_text())
    text = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    text += (OPS / "prometheus" / "driftline-alerts.yml").read_text()
    return set(re.findall(r"\bdriftline_[a-z_]+", text))


def test_worker_retrainer_and_subscriber_on_s3(
    s3_server: str,
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    loop_pipeline_factory: Any,
    tmp_path: Path,
) -> None:
    # The provider chain: keys and endpoint from the environment only (no profile, no IMDS).
    for name, value in {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_server,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    host = s3_server.removeprefix("http://")
    s3 = pafs.S3FileSystem(endpoint_override=host, scheme="http", allow_bucket_creation=True)
    bucket, other = f"models-{tmp_path.name[-20:].lower().replace('_', '-')}", "other-bucket"
    s3.create_dir(bucket)
    s3.create_dir(other)
    worker_port, retrainer_port = free_port(), free_port()
    lp = loop_pipeline_factory(
        values={
            "artifacts": f"s3://{bucket}/driftline",
            "metrics_port": worker_port,
            "retrainer_metrics_port": retrainer_port,
        }
    )
    config = ["--config", str(lp.config_file)]
    data = tmp_path / "before.parquet"
    labelled_file(data, "a", 600, seed=1)
    logs = [tmp_path / "worker.log", tmp_path / "retrainer.log"]
    registry = CollectorRegistry()

    # One record the worker must dead-letter, so its dead-letter counter has a series.
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(lp.settings.topics.inputs, value=b"{not json")
    assert producer.flush(30) == 0

    with (
        process([*CLI, "worker", *config, "--loglevel", "info"], logs[0]),
        process([*CLI, "retrainer", *config, "--tick-interval", "1"], logs[1]),
        ModelSubscriber.from_settings(lp.settings, registry=registry) as sub,
    ):
        run = subprocess.run(
            [*CLI, "replay", str(data), *config, "--quiet", "--labels-delay", "100"],
            capture_output=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stdout.decode() + run.stderr.decode()
        _wait(lambda: sub.current_version is not None, 240, logs)
        served = sub.current_version
        assert served is not None and sub.healthy

        # The model lies in the bucket under the configured prefix; the event names it there.
        prefix = f"s3://{bucket}/driftline/"
        assert served.artifact_uri.startswith(prefix), served.artifact_uri
        with s3.open_input_stream(served.artifact_uri.removeprefix("s3://")) as src:
            assert sha256_hex(src.read()) == served.content_hash
        ModelVersionVerifier([SIGNER.public_key]).verify(served)  # signed by the retrainer
        # So does the worker's archive of the stream; nothing was written to a local disk.
        archived = s3.get_file_info(pafs.FileSelector(f"{bucket}/driftline", recursive=True))
        kinds = {i.path.split("/")[2] for i in archived if i.path.count("/") > 2}
        assert {"models", "archive"} <= kinds, kinds
        assert not (tmp_path / lp.name / "artifacts").exists()
        np_x = [[0.0, 0.0, 0.0, 0.0]]
        assert len(sub.predict(np_x)) == 1

        # Correctly signed events naming another bucket, or another host, are refused.
        key = served.artifact_uri.removeprefix(prefix)
        with s3.open_input_stream(served.artifact_uri.removeprefix("s3://")) as src:
            model_bytes = src.read()
        with s3.open_output_stream(f"{other}/driftline/{key}") as sink:
            sink.write(model_bytes)
        for later, uri in enumerate(
            (
                f"s3://{other}/driftline/{key}",
                f"{served.artifact_uri}?endpoint_override=attacker.invalid&scheme=http",
                f"s3://{bucket}/elsewhere/{key}",
            ),
            start=1,
        ):
            # Newer than the served deployment, so not refused as a replay (`stale`).
            forged = SIGNER.sign(
                served.model_copy(
                    update={
                        "deployment_id": f"forged-{len(uri)}",
                        "deployment_seq": (served.deployment_seq or 0) + later,
                        "model_version_id": "mv-forged",
                        "artifact_uri": uri,
                    }
                )
            )
            failures = sub.failures
            _produce_version(kafka_bootstrap, forged)
            _wait(lambda f=failures: sub.failures > f, 30, logs)
            assert sub.last_error is not None and sub.last_error.code == "outside_store"
            current = sub.current_version
            assert current is not None and current.deployment_id == served.deployment_id
            assert not sub.healthy

        # Metrics: every series the dashboard and the alerts query is served by someone.
        subscriber = generate_latest(registry).decode()
        assert re.search(
            r'driftline_subscriber_refusals_total\{.*reason="outside_store"\} 3', subscriber
        )
        assert re.search(r"driftline_subscriber_healthy\{[^}]*\} 0\.0", subscriber)
        assert f'model_version_id="{served.model_version_id}"' in subscriber
        _wait(lambda: "driftline_trainings_total{" in _scrape(retrainer_port), 30, logs)
        served_names = (
            _sampled(_scrape(worker_port))
            | _sampled(_scrape(retrainer_port))
            | _sampled(subscriber)
        )
        missing = _queried() - served_names
        assert not missing, missing

    # The secret key never reached a log line of either process.
    for log in logs:
        assert SECRET not in log.read_text()


def _produce_version(bootstrap: str, event: ModelVersionEvent) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(Topics(event.pipeline).model_versions, key=event.key, value=event.to_json())
    assert producer.flush(30) == 0
