"""Artifact storage: bytes and Parquet tables under keys, on any pyarrow filesystem.

Keys are relative, ``/``-separated paths (``models/ab/ab12….bin``). Writers use
content-addressed keys (:func:`content_key`), so writing the same bytes twice writes one file
and a key never changes meaning; a write goes to a temporary name first and is then moved into
place, so a reader never sees half a file on a local disk.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from driftline.lifecycle_store.exceptions import NotFoundError, StoreError
from driftline.redact import redact, redact_text

__all__ = ["ArtifactStore", "content_key", "sha256_hex"]


def sha256_hex(data: bytes | memoryview) -> str:
    """The hex sha256 of ``data``.

    >>> sha256_hex(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def content_key(prefix: str, digest: str, suffix: str = "") -> str:
    """A content-addressed key: ``prefix/<first two hex>/<digest><suffix>``.

    The two-character fan-out keeps directories small with many artifacts.

    >>> content_key("models", "abcdef", ".bin")
    'models/ab/abcdef.bin'
    """
    return f"{prefix.strip('/')}/{digest[:2]}/{digest}{suffix}"


def _with_s3_endpoint(uri: str) -> str:
    """``uri`` with the endpoint of ``AWS_ENDPOINT_URL(_S3)`` when it is an ``s3://`` URI that
    names none (the S3 client pyarrow bundles does not read those variables itself).

    >>> os.environ["AWS_ENDPOINT_URL_S3"] = "http://127.0.0.1:9000"
    >>> _with_s3_endpoint("s3://bucket/prefix")
    's3://bucket/prefix?endpoint_override=127.0.0.1%3A9000&scheme=http'
    >>> _with_s3_endpoint("s3://bucket/prefix?endpoint_override=minio:9000")
    's3://bucket/prefix?endpoint_override=minio:9000'
    >>> del os.environ["AWS_ENDPOINT_URL_S3"]
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint or not uri.startswith("s3://") or "endpoint_override=" in uri:
        return uri
    parsed = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    query = urlencode({"endpoint_override": parsed.netloc, "scheme": parsed.scheme})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


class ArtifactStore:
    """Bytes and tables under relative keys in a local directory or a pyarrow filesystem URI.

    ``root`` is a local path (created if missing) or any URI that
    ``pyarrow.fs.FileSystem.from_uri`` understands (``s3://bucket/prefix``, ``gs://…``,
    ``file:///…``).

    On S3 the credentials come from the AWS provider chain (``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``, a profile, an instance role), never from an event. A private S3
    server (MinIO, Ceph, a test server) is named by ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL`` (``http://minio:9000``), as for the AWS CLI, or by the configured
    URI's own ``?endpoint_override=host:port&scheme=http``.

    >>> import tempfile
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> key = content_key("blobs", sha256_hex(b"hello"))
    >>> store.put(key, b"hello").startswith("file://")
    True
    >>> store.get(key), store.exists(key), store.exists("blobs/none")
    (b'hello', True, False)
    """

    def __init__(self, root: str | os.PathLike[str] = "artifacts") -> None:
        root_str = os.fspath(root)
        if "://" in root_str:
            try:
                self._fs, path = pafs.FileSystem.from_uri(_with_s3_endpoint(root_str))
            except (pa.ArrowException, OSError, ValueError) as exc:
                # pyarrow's message repeats the URI, credentials and all.
                raise StoreError(
                    f"artifact store {redact(root_str)!r} cannot be opened: "
                    f"{redact_text(str(exc))}; use a directory or a URI like s3://bucket/prefix"
                ) from None
            self._local = isinstance(self._fs, pafs.LocalFileSystem)
        else:
            path = str(Path(root_str).expanduser().resolve())
            self._fs, self._local = pafs.LocalFileSystem(), True
        self._root = path.rstrip("/") or "/"
        self._display_root = redact(root_str)  # never show credentials of the URI
        if self._local:
            Path(self._root).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self._display_root!r})"

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or ".." in parts or "" in parts:
            raise StoreError(
                f"artifact key {key!r} is not a relative path; use keys like 'models/ab/ab12.bin'"
            )
        return f"{self._root}/{key}"

    def uri(self, key: str) -> str:
        """The absolute URI of ``key`` (``file:///…`` for a local store)."""
        path = self._path(key)
        if self._local:
            return Path(path).as_uri()
        return f"{self._fs.type_name}://{path}"

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a file."""
        info = self._fs.get_file_info(self._path(key))
        return bool(info.type == pafs.FileType.File)

    def put(self, key: str, data: bytes | memoryview | pa.Buffer) -> str:
        """Write ``data`` under ``key`` (skipped if present: keys are content-addressed).

        Returns the URI of the stored file.
        """
        if not self.exists(key):
            self._write_atomic(key, lambda sink: sink.write(data))
        return self.uri(key)

    def put_table(self, key: str, table: pa.Table, **parquet_options: Any) -> str:
        """Write ``table`` as Parquet under ``key`` (skipped if present); returns its URI.

        ``parquet_options`` go to ``pyarrow.parquet.write_table``.
        """
        if not self.exists(key):
            self._write_atomic(key, lambda sink: pq.write_table(table, sink, **parquet_options))
        return self.uri(key)

    def key_of(self, uri: str) -> str:
        """The key of ``uri`` inside this store; :class:`StoreError` for anything else.

        This is how a URI that arrived from outside (a model-version event) is confined: no
        other scheme, host, bucket or directory, no query parameters (which could redirect
        an object-store client), no ``..`` and, on a local disk, no symlink out of the root.

        >>> import tempfile
        >>> store = ArtifactStore(tempfile.mkdtemp())
        >>> store.key_of(store.uri("models/ab/ab.bin"))
        'models/ab/ab.bin'
        >>> store.key_of("file:///etc/passwd")
        Traceback (most recent call last):
        ...
        driftline.lifecycle_store.exceptions.StoreError: artifact 'file:///etc/passwd' lies ...
        """
        outside = StoreError(
            f"artifact {uri[:200]!r} lies outside the artifact store {self._display_root!r}; "
            "only artifacts of the configured store are read"
        )
        if "?" in uri or "#" in uri or "\\" in uri or "\x00" in uri:
            raise outside
        if self._local:
            if uri.startswith("file://"):
                uri = uri.removeprefix("file://")
            elif "://" in uri:
                raise outside
            path = Path(uri)
            if not path.is_absolute() or ".." in path.parts:
                raise outside
            resolved = path.resolve()
            root = Path(self._root).resolve()
            if resolved == root or not resolved.is_relative_to(root):
                raise outside
            key = resolved.relative_to(root).as_posix()
        else:
            prefix = f"{self._fs.type_name}://{self._root}/"
            if not uri.startswith(prefix):
                raise outside
            key = uri.removeprefix(prefix)
        try:
            self._path(key)
        except StoreError:
            raise outside from None
        return key

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes under ``key``; :class:`NotFoundError` if there are none.

        With ``max_bytes``, a file that is larger (or is no regular file, like a device) is
        refused before it is read, and the read itself stops one byte past the limit.
        """
        path = self._path(key)
        if max_bytes is not None:
            info = self._fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise NotFoundError(f"artifact {self.uri(key)!r} does not exist")
            if info.type != pafs.FileType.File or (info.size or 0) > max_bytes:
                raise StoreError(
                    f"artifact {self.uri(key)!r} is not a regular file of at most {max_bytes} "
                    f"bytes (size {info.size}); refusing to read it"
                )
            if self._local and not Path(path).is_file():
                raise StoreError(f"artifact {self.uri(key)!r} is not a regular file")
        try:
            with self._fs.open_input_stream(path) as src:
                data = bytes(src.read() if max_bytes is None else src.read(max_bytes + 1))
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"artifact {self.uri(key)!r} does not exist; was the artifact store moved?"
            ) from exc
        if max_bytes is not None and len(data) > max_bytes:
            raise StoreError(f"artifact {self.uri(key)!r} is larger than {max_bytes} bytes")
        return data

    def get_table(self, key: str) -> pa.Table:
        """The Parquet table under ``key``; :class:`NotFoundError` if there is none."""
        try:
            return pq.read_table(self._path(key), filesystem=self._fs)
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"artifact {self.uri(key)!r} does not exist; was the artifact store moved?"
            ) from exc

    def _write_atomic(self, key: str, write: Any) -> None:
        path = self._path(key)
        parent = path.rsplit("/", 1)[0]
        self._fs.create_dir(parent, recursive=True)
        if not self._local:
            # Object stores publish an object only when its upload completes.
            with self._fs.open_output_stream(path) as sink:
                write(sink)
            return
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        try:
            with self._fs.open_output_stream(tmp) as sink:
                write(sink)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
