from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from driftline.lifecycle_store import ArtifactStore, NotFoundError, StoreError
from driftline.lifecycle_store.artifacts import content_key, sha256_hex


def test_put_get_roundtrip_and_uri(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a")
    key = content_key("blobs", sha256_hex(b"abc"), ".bin")
    uri = store.put(key, b"abc")
    assert store.get(key) == b"abc"
    assert uri == (tmp_path / "a" / key).as_uri()
    assert store.exists(key) and not store.exists("blobs/zz/missing")
    assert not [p for p in (tmp_path / "a").rglob(".tmp-*")]


def test_put_is_skipped_for_existing_content_key(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.put("k/one", b"first")
    store.put("k/one", b"second")
    assert store.get("k/one") == b"first"


def test_uri_root_and_tables(tmp_path: Path) -> None:
    store = ArtifactStore((tmp_path / "u").as_uri())
    table = pa.table({"x": [1, 2, 3]})
    store.put_table("t/x.parquet", table)
    assert store.get_table("t/x.parquet").equals(table)
    assert (tmp_path / "u" / "t" / "x.parquet").exists()


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b"])
def test_bad_keys_are_rejected(tmp_path: Path, key: str) -> None:
    with pytest.raises(StoreError, match="relative path"):
        ArtifactStore(tmp_path).put(key, b"x")


def test_missing_artifact_names_uri(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(NotFoundError, match=r"missing\.bin"):
        store.get("missing.bin")
    with pytest.raises(NotFoundError, match=r"missing\.parquet"):
        store.get_table("missing.parquet")


def test_credentials_of_the_artifacts_uri_never_reach_the_repr_or_errors() -> None:
    from driftline.lifecycle_store.artifacts import ArtifactStore
    from driftline.lifecycle_store.exceptions import StoreError

    store = ArtifactStore("s3://AKIAEXAMPLE:verysecret@bucket/prefix?region=us-east-1")
    assert "verysecret" not in repr(store) and "AKIAEXAMPLE" not in repr(store)
    try:
        store.key_of("file:///etc/passwd")
    except StoreError as exc:
        assert "verysecret" not in str(exc)
    else:
        raise AssertionError("a path outside the store was accepted")
