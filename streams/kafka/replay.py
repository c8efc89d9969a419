"""Replay a Parquet or CSV file to ``{p}.inputs`` (``driftline replay``).

Each row becomes one JSON `InferenceEvent` message, or rows are packed ``batch_rows`` at a
time into Arrow `InferenceBatch` messages. Columns: ``event_id`` (or the ``id_column``
named; without one, ``<run_id>-<n>`` with a fresh ``run_id`` per replay, so two replays
into one pipeline never share an id and labels cannot join the wrong rows), ``timestamp``
(default: the time of sending), the label column (sent only as delayed labels), and every
other numeric column is a feature. Optionally a known drift is injected from a chosen row
(`driftline.streams.evaluation.scenarios`), and the label of each row is sent to
``{p}.labels`` ``labels_delay`` rows later, as ground truth arrives late in real services.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from driftline.config.settings import Settings
from driftline.schemas import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    RESERVED_COLUMNS,
    InferenceBatch,
)
from driftline.streams.evaluation.scenarios import inject as inject_drift
from driftline.streams.exceptions import ReplayError

__all__ = ["ReplayReport", "load_table", "replay", "split_columns"]

_JSON = [(CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode())]
_ARROW = [(CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode())]


@dataclass(frozen=True)
class ReplayReport:
    """What a replay sent."""

    rows: int
    messages: int
    labels: int
    seconds: float
    run_id: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def load_table(path: str | Path) -> pa.Table:
    """Read a ``.parquet`` or ``.csv`` file."""
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"{path} does not exist: pass a Parquet or CSV file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path)
    except (pa.ArrowException, OSError) as exc:  # empty, not CSV/Parquet, a line over 1 MB
        raise ReplayError(f"{path} cannot be read as {suffix[1:]}: {exc}") from None
    raise ReplayError(f"{path} is neither .parquet nor .csv: convert it to one of them")


def split_columns(table: pa.Table, label_column: str | None) -> list[str]:
    """The feature columns: numeric columns that are not reserved, ids, times or labels."""
    skip = {*RESERVED_COLUMNS, label_column}
    names = [
        f.name
        for f in table.schema
        if f.name not in skip and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
    ]
    if not names:
        raise ReplayError(
            f"no numeric feature columns in {table.column_names}; the file needs at least one"
        )
    return names


def replay(
    settings: Settings,
    path: str | Path,
    *,
    rate: float | None = None,
    fmt: str = "json",
    batch_rows: int = 1000,
    labels_delay: int | None = None,
    label_column: str = "label",
    inject: str | None = None,
    at: int | None = None,
    magnitude: float = 1.0,
    inject_features: Sequence[str] | None = None,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    on_sent: Callable[[int], None] | None = None,
    id_column: str = "event_id",
    run_id: str | None = None,
) -> ReplayReport:
    """Send the rows of ``path`` to ``{p}.inputs`` (and labels to ``{p}.labels``).

    ``rate`` caps rows per second (None: as fast as the broker takes them). ``fmt`` is
    ``json`` (one event per message), ``arrow`` (``batch_rows`` rows per message) or
    ``registry-json`` (one event per message, inputs and labels in the Confluent wire format
    with their JSON Schema at ``settings.schema_registry``, as a Schema Registry producer
    sends them).
    ``inject``/``at``/``magnitude``/``inject_features`` inject a drift (see
    `driftline.streams.evaluation.scenarios`). ``on_sent(rows)`` is called after each message is
    queued.
    """
    from driftline.streams.kafka.clients import make_producer

    if fmt not in ("json", "arrow", "registry-json"):
        raise ReplayError(f"format {fmt!r} is not known: use 'json', 'arrow' or 'registry-json'")
    if rate is not None and rate <= 0:
        raise ReplayError(f"rate must be > 0 rows per second, got {rate}")
    table = load_table(path)
    if limit is not None:
        table = table.slice(0, limit)
    n = table.num_rows
    if n == 0:
        raise ReplayError(f"{path} has no rows")
    names = split_columns(table, label_column)
    x = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in names]).astype(
        np.float64
    )
    labels = _labels(table, label_column, labels_delay)
    if inject is not None:
        x, labels = _inject(x, labels, inject, at, magnitude, names, inject_features, seed)
    run = run_id or f"run{uuid.uuid4().hex[:12]}"
    ids = (
        [str(v) for v in table.column(id_column).to_pylist()]
        if id_column in table.column_names
        else [f"{run}-{i}" for i in range(n)]
    )
    stamps = _timestamps(table)
    topics = settings.topics
    wire = None
    if fmt == "registry-json":
        from driftline.streams.kafka.schema_registry import WireEncoder

        wire = WireEncoder(settings.schema_registry)  # ConfigError without a registry URL

    def encode(topic: str, schema_name: str, doc: dict[str, Any]) -> tuple[bytes, list[Any]]:
        if wire is None:
            return orjson.dumps(doc), _JSON
        return wire.encode(topic, schema_name, doc), []  # the wire format has no header

    producer = make_producer(settings, linger_ms=20, compression_type="lz4")
    sent_rows = messages = sent_labels = 0
    started = time.monotonic()

    def produce(topic: str, value: bytes, key: bytes | None, headers: list[Any]) -> None:
        while True:
            try:
                producer.produce(topic, value, key=key, headers=headers)
                return
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let deliveries drain it

    def pace(rows_done: int) -> None:
        if rate is not None:
            ahead = rows_done / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    def send_labels(upto: int) -> int:
        if labels is None or labels_delay is None:
            return 0
        count = 0
        for i in range(max(0, sent_labels_upto[0]), max(0, upto)):
            label = labels[i]
            doc = {"event_id": ids[i], "label": label, "timestamp": _iso(datetime.now(UTC))}
            produce(topics.labels, *_keyed(encode(topics.labels, "label_event", doc), ids[i]))
            count += 1
        sent_labels_upto[0] = max(sent_labels_upto[0], upto)
        return count

    sent_labels_upto = [0]
    bar = _progress(progress, n)
    try:
        step = batch_rows if fmt == "arrow" else 1
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            if fmt != "arrow":
                doc = {
                    "event_id": ids[lo],
                    "timestamp": stamps[lo] if stamps is not None else _iso(datetime.now(UTC)),
                    "pipeline": settings.pipeline,
                    "features": dict(zip(names, x[lo].tolist(), strict=True)),
                }
                value = encode(topics.inputs, "inference_event", doc)
                produce(topics.inputs, *_keyed(value, ids[lo]))
            else:
                when = (
                    [datetime.fromisoformat(s) for s in stamps[lo:hi]]
                    if stamps is not None
                    else [datetime.now(UTC)] * (hi - lo)
                )
                batch = InferenceBatch.from_arrays(
                    settings.pipeline, ids[lo:hi], when, x[lo:hi], names
                )
                produce(topics.inputs, batch.to_ipc(), None, _ARROW)
            messages += 1
            sent_rows = hi
            if labels_delay is not None:
                sent_labels += send_labels(hi - labels_delay)
            producer.poll(0)
            if on_sent is not None:
                on_sent(sent_rows)
            if bar is not None and (messages % 256 == 0 or hi == n):
                bar[0].update(bar[1], completed=hi)
            pace(sent_rows)
        if labels_delay is not None:
            sent_labels += send_labels(n)
        remaining = producer.flush(60)
        if remaining:
            raise ReplayError(
                f"{remaining} messages were not delivered within 60 s: check that the broker "
                f"at {settings.kafka_bootstrap_servers} is up"
            )
    finally:
        if bar is not None:
            bar[0].stop()
    return ReplayReport(sent_rows, messages, sent_labels, time.monotonic() - started, run)


def _keyed(encoded: tuple[bytes, list[Any]], key: str) -> tuple[bytes, bytes, list[Any]]:
    """(value, key, headers) for `produce` from what `encode` returned."""
    return encoded[0], key.encode(), encoded[1]


def _labels(table: pa.Table, column: str, delay: int | None) -> list[Any] | None:
    if delay is None:
        return None
    if delay < 0:
        raise ReplayError(f"--labels-delay must be >= 0 rows, got {delay}")
    if column not in table.column_names:
        raise ReplayError(
            f"labels requested but the file has no {column!r} column (columns: "
            f"{table.column_names}); name it with --label-column"
        )
    return list(table.column(column).to_pylist())


def _inject(
    x: np.ndarray,
    labels: list[Any] | None,
    kind: str,
    at: int | None,
    magnitude: float,
    names: list[str],
    features: Sequence[str] | None,
    seed: int,
) -> tuple[np.ndarray, list[Any] | None]:
    if at is None:
        raise ReplayError("--inject needs --at ROW: the row where the drift starts")
    cols = None
    if features:
        unknown = [f for f in features if f not in names]
        if unknown:
            raise ReplayError(f"unknown features {unknown} for --inject; choose from {names}")
        cols = [names.index(f) for f in features]
    try:
        if labels is None:
            return inject_drift(x, kind, at, magnitude, cols, seed), None
        xs, ys = inject_drift(
            x, kind, at, magnitude, cols, seed, y=np.asarray(labels, dtype=object)
        )
        return xs, list(ys)
    except ValueError as exc:
        raise ReplayError(str(exc)) from None


def _timestamps(table: pa.Table) -> list[str] | None:
    if "timestamp" not in table.column_names:
        return None
    column = table.column("timestamp")
    if pa.types.is_timestamp(column.type):
        values = column.to_pylist()
        return [_iso(v if v.tzinfo else v.replace(tzinfo=UTC)) for v in values]
    return [str(v) for v in column.to_pylist()]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _progress(enabled: bool, total: int) -> tuple[Any, Any] | None:
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    bar.start()
    return bar, bar.add_task("replay", total=total)
