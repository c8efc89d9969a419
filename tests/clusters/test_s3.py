"""Artifacts on S3: the store talks to a real S3 API server (moto's server mode) on loopback,
with credentials and endpoint from the environment (the AWS provider chain), never the URI."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from driftline.lifecycle_store.artifacts import ArtifactStore, content_key, sha256_hex

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh bucket; returns the artifacts URI. The URI names the endpoint (a private S3
    server), the credentials come from the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "driftline-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "driftline-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    bucket = f"artifacts-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    from pyarrow import fs

    host = s3_server.removeprefix("http://")
    fs.S3FileSystem(endpoint_override=host, scheme="http", allow_bucket_creation=True).create_dir(
        bucket
    )
    return f"s3://{bucket}/driftline?endpoint_override={host}&scheme=http"


def test_artifacts_round_trip_through_s3(s3_env: str) -> None:
    store = ArtifactStore(s3_env)
    key = content_key("models", sha256_hex(b"weights"), ".bin")
    assert store.put(key, b"weights").endswith(f"/driftline/{key}")
    assert store.get(key) == b"weights" and store.exists(key)
    table = pa.table({"x": [1.0, 2.0], "label": [0, 1]})
    store.put_table("data/segment-0.parquet", table)
    assert store.get_table("data/segment-0.parquet").equals(table)
    # A second store on the same URI (another process: worker, retrainer, subscriber) sees it.
    assert ArtifactStore(s3_env).get(key) == b"weights"


def test_a_plain_s3_uri_takes_its_endpoint_from_the_environment(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``s3://bucket/prefix`` with ``AWS_ENDPOINT_URL_S3``: what every process of a deployment
    sets; the URIs the store hands out (and events carry) name no endpoint."""
    plain, query = s3_env.split("?", 1)
    host = dict(p.split("=") for p in query.split("&"))["endpoint_override"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://{host}")
    store = ArtifactStore(plain)
    key = content_key("models", sha256_hex(b"env"), ".bin")
    uri = store.put(key, b"env")
    assert uri == f"{plain}/{key}" and "127.0.0.1" not in uri
    assert ArtifactStore(s3_env).get(key) == b"env"  # the same bucket as the explicit endpoint
    assert store.key_of(uri) == key
    # AWS_ENDPOINT_URL is the fallback; an endpoint in the configured URI wins over both.
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}")
    assert ArtifactStore(plain).get(key) == b"env"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert ArtifactStore(s3_env).get(key) == b"env"
