"""One message never costs another's rows: decode, validation and archive failures are the
failing message's own, offsets pass only what is archived or dead-lettered, nothing vanishes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from driftline.schemas import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    DeadLetter,
    InferenceBatch,
)
from driftline.streams.metrics import MonitorMetrics
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep
from tests.streams.ingest.helpers import config, messages, names, open_store

P = "iso"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ARROW = ((CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode()),)


def arrow_message(offset: int, n: int = 50, ids: str = "b") -> RawMessage:
    x = np.random.default_rng(offset).normal(size=(n, 3))
    batch = InferenceBatch.from_arrays(
        P, [f"{ids}{offset}-{i}" for i in range(n)], [T0] * n, x, names(3)
    )
    return RawMessage(batch.to_ipc(), None, ARROW, f"{P}.inputs", 0, offset)


def ipc(table: pa.Table) -> bytes:
    table = table.replace_schema_metadata(
        {b"driftline.schema_version": b"1", b"driftline.pipeline": P.encode()}
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _patched(old: bytes, new: bytes) -> bytes:
    good = InferenceBatch.from_arrays(P, ["aa", "bb"], [T0] * 2, np.ones((2, 3)), names(3))
    data = good.to_ipc()
    assert data.count(old) == 1
    return data.replace(old, new)


def with_bad_string_offsets() -> bytes:
    """event_id offsets that go backwards (only a full validation notices)."""
    return _patched(
        np.array([0, 2, 4], np.int32).tobytes(), np.array([0, 5, 4], np.int32).tobytes()
    )


def with_invalid_utf8_ids() -> bytes:
    return _patched(b"aabb", b"\xff\xfe\xfd\xfc")


def with_seconds_far_out() -> bytes:
    """Timestamps in seconds whose microseconds overflow int64 (the cast would raise)."""
    table = InferenceBatch.from_arrays(
        P, ["s0", "s1"], [T0] * 2, np.ones((2, 3)), names(3)
    ).table.set_column(1, "timestamp", pa.array([0, 2**62], pa.timestamp("s", tz="UTC")))
    return ipc(table)


def json_message(offset: int, **changes: Any) -> RawMessage:
    doc = {
        "event_id": f"j{offset}",
        "timestamp": "2026-01-01T00:00:00Z",
        "pipeline": P,
        "features": {"f0": 0.1, "f1": 0.2, "f2": 0.3},
        **changes,
    }
    return RawMessage(orjson.dumps(doc), None, (), f"{P}.inputs", 0, offset)


def archived_offsets(step: MonitorStep) -> set[int]:
    return set(step.store.archive(P).read_rows().column("offset").to_pylist())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (with_bad_string_offsets(), "malformed"),
        (with_invalid_utf8_ids(), "malformed"),
        (with_seconds_far_out(), "schema_violation"),
        (arrow_message(0).value[:-40], "malformed"),
    ],
)
def test_a_broken_arrow_batch_costs_no_other_message(
    tmp_path: Path, value: bytes, reason: str
) -> None:
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    fetch = [arrow_message(0), RawMessage(value, None, ARROW, f"{P}.inputs", 0, 1)]
    fetch += [arrow_message(2), json_message(3)]
    out = step.process(fetch)
    assert [(d.source_offset, d.reason.value) for d in out.dead_letters] == [(1, reason)]
    assert out.rows == 101
    assert archived_offsets(step) == {0, 2, 3}
    assert step.next_offset(f"{P}.inputs", 0) == 4
    step.state_bytes()  # the checkpoint (ids, offsets) goes through too


def test_a_json_time_past_the_archive_range_is_a_dead_letter(tmp_path: Path) -> None:
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    out = step.process(
        [json_message(0), json_message(1, timestamp="9999-12-31T23:59:59-01:00"), json_message(2)]
    )
    assert [(d.source_offset, d.reason.value) for d in out.dead_letters] == [
        (1, "schema_violation")
    ]
    assert archived_offsets(step) == {0, 2}


def test_offsets_pass_only_archived_rows(tmp_path: Path) -> None:
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P, archive_rows=10_000)
    topic = f"{P}.inputs"
    step.process([json_message(0, features={"f0": "x"}), *messages(P, np.ones((5, 3)), first=1)])
    # Offset 0 is a dead letter (resolved); 1-5 wait in memory for the archive.
    assert step.next_offset(topic, 0) == 1
    assert step.store.archive(P).row_count() == 0
    step.state_bytes()
    assert step.next_offset(topic, 0) == 6
    assert step.store.archive(P).row_count() == 5


def test_rows_that_cannot_be_archived_become_poison_and_the_rest_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    step = MonitorStep(config(P), store, pipeline=P, archive_rows=10_000)
    step.process([json_message(0)])  # registers the pipeline
    archive = store.archive(P)
    real = type(archive).append_rows
    attempts = []

    def refuse_poison(self: Any, table: pa.Table) -> Any:
        if "j2" in table.column("event_id").to_pylist():
            attempts.append(len(table))
            raise OSError("disk says no")
        return real(self, table)

    monkeypatch.setattr(type(archive), "append_rows", refuse_poison)
    step.process([json_message(1), json_message(2), json_message(3)])
    step.state_bytes()  # the checkpoint archives what it can
    assert attempts == [4, 1, 1, 1]
    assert archived_offsets(step) == {0, 1, 3}
    # The poison message holds its partition until its dead letter is handed out ...
    assert step.next_offset(f"{P}.inputs", 0) == 2
    out = step.process([json_message(4)])
    assert [(d.source_offset, d.reason.value) for d in out.dead_letters] == [(2, "poison")]
    assert out.dead_letters[0].payload == json_message(2).value
    step.state_bytes()
    assert step.next_offset(f"{P}.inputs", 0) == 5  # ... and no longer


def test_a_failing_store_raises_and_advances_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    step = MonitorStep(config(P), store, pipeline=P)
    step.process([json_message(0)])
    archive = store.archive(P)

    def down(self: Any, table: pa.Table) -> Any:
        raise OSError("store unreachable")

    monkeypatch.setattr(type(archive), "append_rows", down)
    with pytest.raises(OSError, match="unreachable"):
        step.process([json_message(1), json_message(2)])
    assert step.next_offset(f"{P}.inputs", 0) == 1
    monkeypatch.undo()
    out = step.process([json_message(1), json_message(2)])  # the retry delivers them
    assert out.rows == 2 and archived_offsets(step) == {0, 1, 2}
    assert store.archive(P).row_count() == 3  # the failed attempt left no duplicate rows
    assert step.next_offset(f"{P}.inputs", 0) == 3


def test_a_dead_letter_too_large_for_the_broker_keeps_its_bytes_in_the_store(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    step = MonitorStep(
        config(P), store, pipeline=P, max_message_bytes=10_000, max_dead_letter_bytes=80_000
    )
    big = arrow_message(0, n=2000)
    assert len(big.value) > 10_000
    (letter,) = step.process([big]).dead_letters
    assert letter.reason.value == "oversized"
    assert letter.payload == b"" and letter.payload_size == len(big.value)
    assert letter.payload_ref is not None
    assert store.artifacts.get(letter.payload_ref) == big.value
    assert len(letter.to_json()) < 80_000


def test_dead_letter_headers_are_kept_byte_for_byte(tmp_path: Path) -> None:
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    headers = (("trace", b"\xff\x00\xfe"), ("trace", b"second"), ("content-type", b"text/csv"))
    raw = RawMessage(b"a,b", b"k", headers, f"{P}.inputs", 0, 0)
    (letter,) = step.process([raw]).dead_letters
    again = DeadLetter.from_json(letter.to_json())
    assert again.raw_headers == list(headers) and again.payload == b"a,b"
    assert again.payload_size == 3


def test_a_zero_row_batch_is_counted(tmp_path: Path) -> None:
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    empty = InferenceBatch.from_arrays(P, [], [], np.zeros((0, 3)), names(3))
    out = step.process([RawMessage(empty.to_ipc(), None, ARROW, f"{P}.inputs", 0, 0)])
    assert (out.rows, out.dead_letters, out.empty_messages) == (0, [], 1)
    metrics = MonitorMetrics(P)
    metrics.observe_batch(out, [], 0.0)
    assert b"driftline_empty_messages_total" in metrics.exposition()
    assert step.next_offset(f"{P}.inputs", 0) == 1


def test_the_step_sends_dead_letters_whole_only_below_the_broker_limit() -> None:
    from driftline.streams.kafka.clients import DLQ_MAX_MESSAGE_BYTES
    from driftline.streams.monitor.step import DEAD_LETTER_MAX_BYTES

    assert DEAD_LETTER_MAX_BYTES <= DLQ_MAX_MESSAGE_BYTES
