"""Secrets never show (issue 13.7): a deployment configured with a store password (a real
PostgreSQL), S3 keys in the artifacts URI (moto's S3 server) and a SASL password (a broker
that accepts only SASL and TLS), and a signing key. Nothing driftline prints, logs, reports,
raises or publishes carries any of them: ``driftline status`` and ``lineage`` (tables and
JSON), their errors, the worker's and the retrainer's start-up at INFO, a backtest report,
and every event the loop publishes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pytest
import sqlalchemy as sa

from driftline.config.settings import Settings
from driftline.lifecycle_store.store import LifecycleStore
from driftline.streams.embedded.runner import EmbeddedRunner, LabelledStream
from tests.streams.loop.conftest import SIGNER, write_config

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

CLI = [sys.executable, "-c", "from driftline.streams.cli import main; main()"]
S3_KEY, S3_SECRET = "AKIAAUDITKEYID0001", "audit-s3-secret-value"
PIPELINE_TABLE: dict[str, Any] = {
    "bootstrap_rows": 400,
    "detector": {"reference_rows": 400, "ert": 5000},
    "model": {"epochs": 5, "params": {"hidden": [16]}},
    "selection": {"min_labelled_rows": 200},
}


def _stream() -> LabelledStream:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1200, 3))
    x[800:, 0] += 3.0
    y = (x[:, 0] + x[:, 1] > (x[:, 0] > 1.5) * 3.0).astype(np.int64)
    return LabelledStream.from_arrays(x, y, ["f0", "f1", "f2"], label_delay=50)


@pytest.fixture
def audited(
    secure_broker: dict[str, str],
    postgres_url: str,
    s3_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """A config file holding every kind of secret; returns it with the secrets to look for."""
    password = sa.make_url(postgres_url).password
    assert password, "the test server's URL should carry a password"
    for name, value in {
        "AWS_ENDPOINT_URL_S3": s3_server,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DRIFTLINE_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    bucket = f"audit-{uuid.uuid4().hex[:8]}"
    host = s3_server.removeprefix("http://")
    pafs.S3FileSystem(endpoint_override=host, scheme="http", allow_bucket_creation=True).create_dir(
        bucket
    )
    name = f"audit-{uuid.uuid4().hex[:8]}"
    values = {
        "kafka_bootstrap_servers": secure_broker["KAFKA_SASL_PLAINTEXT"],
        "store_url": postgres_url,
        "artifacts": f"s3://{S3_KEY}:{S3_SECRET}@{bucket}/driftline",
        "state_dir": str(tmp_path / "state"),
        "metrics_port": 0,
        "signing_key": SIGNER.private_key_text(),
    }
    config = write_config(tmp_path / "driftline.toml", values, {"name": name, **PIPELINE_TABLE})
    with config.open("a") as f:
        f.write(
            "[kafka_security]\n"
            'protocol = "SASL_PLAINTEXT"\n'
            'sasl_mechanism = "SCRAM-SHA-512"\n'
            f'sasl_username = "{secure_broker["KAFKA_USER"]}"\n'
            f'sasl_password = "{secure_broker["KAFKA_PASSWORD"]}"\n'
        )
    secrets = {
        "store password": password,
        "S3 key id": S3_KEY,
        "S3 secret": S3_SECRET,
        "SASL password": secure_broker["KAFKA_PASSWORD"],
        "signing key": SIGNER.private_key_text(),
    }
    return {"config": config, "secrets": secrets, "pipeline": name}


def _assert_clean(what: str, text: str, secrets: dict[str, str]) -> None:
    leaked = [kind for kind, secret in secrets.items() if secret in text]
    assert not leaked, f"{what} shows the {leaked}:\n{text[-3000:]}"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def _start_up_log(args: list[str], marker: str, log: Path, timeout: float = 150) -> str:
    """Run a service until ``marker`` is in its output, stop it; its whole output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while marker not in log.read_text() and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    text = log.read_text()
    assert marker in text, text[-3000:]
    return text


def test_no_secret_in_output_logs_reports_errors_or_events(
    audited: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, secrets = audited["config"], audited["secrets"]
    settings = Settings.load(config)
    _assert_clean("Settings repr", repr(settings) + str(settings), secrets)

    # The loop, embedded, over the real store and bucket: logs and everything it publishes.
    caplog.set_level(logging.DEBUG, logger="driftline")
    store = LifecycleStore.open(settings.store_url.get_secret_value(), settings.artifacts)
    _assert_clean("store repr", repr(store) + repr(store.artifacts), secrets)
    runner = EmbeddedRunner(settings.config, store)
    result = runner.replay(_stream())
    deployed = [t for t in result.trainings if t.deployed]
    assert deployed and deployed[0].model_version_id
    model_version = deployed[0].model_version_id
    topics = runner.topics
    consumer = runner.bus.consumer("audit", list(topics.all()))
    published = [m.value.decode("utf-8", "replace") for m in consumer.poll(100_000)]
    assert any('"artifact_uri"' in v for v in published)
    _assert_clean("published events", "\n".join(published), secrets)
    uris = [store.model_version(model_version).artifact_uri]
    assert uris[0].startswith("s3://") and "@" not in uris[0]
    _assert_clean("driftline logs of the loop", caplog.text, secrets)
    store.close()

    # The operator's commands, as tables and as JSON.
    for args in (
        ["status", "--config", str(config)],
        ["status", "--config", str(config), "--json"],
        ["lineage", model_version, "--config", str(config)],
        ["lineage", model_version, "--config", str(config), "--json"],
    ):
        run = _cli(*args)
        assert run.returncode == 0, run.stderr
        assert model_version in run.stdout
        _assert_clean(" ".join(args[:2]), run.stdout + run.stderr, secrets)
    status = json.loads(_cli("status", "--config", str(config), "--json").stdout)
    assert status["aliases"]["champion"]["artifact_uri"].startswith("s3://")

    # Errors of the store engine: a wrong password, an unreachable server.
    url = sa.make_url(settings.store_url.get_secret_value())
    wrong = url.set(password="wrong-password-xyz")
    unreachable = url.set(host="127.0.0.1", port=1, password="unreachable-password-xyz")
    for bad, extra in ((wrong, "wrong-password-xyz"), (unreachable, "unreachable-password-xyz")):
        run = _cli(
            "status",
            "--config",
            str(config),
            env={"DRIFTLINE_STORE_URL": bad.render_as_string(hide_password=False)},
        )
        assert run.returncode != 0
        _assert_clean("a store error", run.stdout + run.stderr, {**secrets, "bad password": extra})
        assert "Traceback" not in run.stderr, run.stderr[-2000:]

    # Start-up of the services at INFO, over SASL to the broker and the real store.
    worker = _start_up_log(
        ["worker", "--config", str(config), "--loglevel", "info"],
        "Worker]: Ready",
        tmp_path / "worker.log",
    )
    _assert_clean("the worker's start-up", worker, secrets)
    retrainer = _start_up_log(
        ["retrainer", "--config", str(config)], "consuming", tmp_path / "retrainer.log"
    )
    _assert_clean("the retrainer's start-up", retrainer, secrets)

    # A backtest with this config file: its report (HTML, JSON) and its output.
    data = tmp_path / "rows.csv"
    stream = _stream()
    x, y = stream.X, stream.y
    lines = ["f0,f1,f2,label"] + [
        f"{a},{b},{c},{int(v)}" for (a, b, c), v in zip(x, y, strict=True)
    ]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    run = _cli("backtest", str(data), "--config", str(config), "--out", str(out), "--no-baselines")
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_clean("backtest output", run.stdout + run.stderr, secrets)
    for file in ("report.html", "report.json"):
        _assert_clean(file, (out / file).read_text(), secrets)
