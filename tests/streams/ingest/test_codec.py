from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from driftline.schemas import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    DeadLetter,
    DeadLetterReason,
    InferenceBatch,
    InferenceEvent,
    LabelEvent,
    SchemaError,
)
from driftline.schemas.files import load_json_schema
from driftline.streams.monitor.codec import decode_inputs, decode_labels
from driftline.streams.monitor.messages import RawMessage

P = "fraud"
NAMES = ("a", "b")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ARROW = ((CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode()),)


def event(i: int, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": f"e{i}",
        "timestamp": "2026-01-01T00:00:00Z",
        "pipeline": P,
        "features": {"a": float(i), "b": -1.5},
    }
    doc.update(changes)
    return doc


def msg(value: bytes, offset: int = 0, headers: tuple[tuple[str, bytes], ...] = ()) -> RawMessage:
    return RawMessage(value, b"k", headers, f"{P}.inputs", 3, offset)


def jmsg(doc: Any, offset: int = 0) -> RawMessage:
    return msg(json.dumps(doc).encode(), offset)


def reasons(out: Any) -> list[str]:
    return [d.reason.value for d in out.dead_letters]


def test_good_json_events_become_rows_in_order() -> None:
    out = decode_inputs([jmsg(event(i), offset=10 + i) for i in range(5)], pipeline=P)
    assert out.dead_letters == []
    assert out.rows.feature_names == NAMES
    assert out.rows.event_ids.to_pylist() == [f"e{i}" for i in range(5)]
    assert out.rows.features[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert out.rows.offsets.tolist() == [10, 11, 12, 13, 14]
    assert set(out.rows.partitions.tolist()) == {3}
    assert out.rows.timestamps_us[0] == int(T0.timestamp()) * 1_000_000


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", DeadLetterReason.MALFORMED),
        (b"", DeadLetterReason.MALFORMED),
        (json.dumps(event(0, schema_version=2)).encode(), DeadLetterReason.SCHEMA_VERSION),
        (json.dumps(event(0, features={"a": 1.0})).encode(), DeadLetterReason.FEATURE_MISMATCH),
        (
            json.dumps(event(0, features={"a": 1.0, "c": 2.0})).encode(),
            DeadLetterReason.FEATURE_MISMATCH,
        ),
        (
            json.dumps(event(0, features={"a": 1.0, "b": 2.0, "c": 3.0})).encode(),
            DeadLetterReason.FEATURE_MISMATCH,
        ),
        # NaN is not JSON; a number beyond float64 would become an infinity.
        (json.dumps(event(0, features={"a": math.nan, "b": 1.0})).encode(), "malformed"),
        (
            b'{"event_id":"x","timestamp":"2026-01-01T00:00:00Z","pipeline":"fraud",'
            b'"features":{"a":1e999,"b":1}}',
            "schema_violation",
        ),
        (json.dumps(event(0, timestamp="9999-12-31T23:59:59-01:00")).encode(), "schema_violation"),
        (json.dumps(event(0, timestamp=1767225600)).encode(), "schema_violation"),
        (json.dumps(event(0, timestamp="2026-02-30T00:00:00Z")).encode(), "schema_violation"),
        (json.dumps(event(0, features={"a": True, "b": 1.0})).encode(), "schema_violation"),
        (json.dumps(event(0, features={"a": "1.5", "b": 1.0})).encode(), "schema_violation"),
        (
            b'{"event_id":"\\ud800","timestamp":"2026-01-01T00:00:00Z","pipeline":"fraud",'
            b'"features":{"a":1,"b":1}}',
            "malformed",
        ),
        (json.dumps(event(0, timestamp="2026-01-01T00:00:00")).encode(), "schema_violation"),
        (json.dumps(event(0, extra=1)).encode(), "schema_violation"),
        (json.dumps(event(0, features={"a": "high", "b": 1.0})).encode(), "schema_violation"),
        (json.dumps(event(0, pipeline="other")).encode(), DeadLetterReason.WRONG_PIPELINE),
        (json.dumps([1, 2]).encode(), "schema_violation"),
    ],
)
def test_bad_json_is_dead_lettered_with_reason(value: bytes, reason: str) -> None:
    out = decode_inputs([jmsg(event(1)), msg(value, offset=7)], pipeline=P, feature_names=NAMES)
    assert out.rows.event_ids.to_pylist() == ["e1"]
    assert reasons(out) == [DeadLetterReason(reason).value]
    dead = out.dead_letters[0]
    assert (dead.payload, dead.key, dead.source_offset, dead.source_partition) == (
        value,
        b"k",
        7,
        3,
    )
    assert dead.source_topic == f"{P}.inputs" and dead.detail
    # The dead letter survives its own trip through the DLQ byte for byte.
    assert DeadLetter.from_json(dead.to_json()).payload == value


def test_oversized_and_unknown_content_type() -> None:
    big = json.dumps(event(0, model_version="x" * 5000)).encode()
    out = decode_inputs(
        [msg(big), msg(b"<xml/>", 1, ((CONTENT_TYPE_HEADER, b"text/xml"),))],
        pipeline=P,
        max_message_bytes=4096,
    )
    assert reasons(out) == ["oversized", "unknown_content_type"]
    assert len(out.rows) == 0
    assert out.dead_letters[1].headers == {CONTENT_TYPE_HEADER: "text/xml"}


def test_one_bad_timestamp_costs_only_its_own_row() -> None:
    docs = [event(0), event(1, timestamp="2026-02-30T00:00:00Z"), event(2)]
    out = decode_inputs([jmsg(d, i) for i, d in enumerate(docs)], pipeline=P)
    assert out.rows.event_ids.to_pylist() == ["e0", "e2"]
    assert [(d.source_offset, d.reason.value) for d in out.dead_letters] == [
        (1, "schema_violation")
    ]


def test_first_valid_event_fixes_feature_names_and_key_order_does_not_matter() -> None:
    out = decode_inputs(
        [
            jmsg(event(0, features={"b": 2.0, "a": 1.0})),
            jmsg(event(1, features={"a": 3.0, "b": 4.0}), 1),
        ],
        pipeline=P,
    )
    assert out.rows.feature_names == ("b", "a")
    assert out.rows.features.tolist() == [[2.0, 1.0], [4.0, 3.0]]


def arrow_batch(n: int, names: tuple[str, ...] = NAMES, pipeline: str = P) -> InferenceBatch:
    x = np.arange(n * len(names), dtype=float).reshape(n, len(names))
    return InferenceBatch.from_arrays(pipeline, [f"r{i}" for i in range(n)], [T0] * n, x, names)


def test_arrow_batches_decode_to_rows_with_message_offsets() -> None:
    batch = arrow_batch(4)
    out = decode_inputs(
        [jmsg(event(9)), msg(batch.to_ipc(), 5, ARROW)], pipeline=P, feature_names=("b", "a")
    )
    assert out.dead_letters == []
    assert out.rows.event_ids.to_pylist() == ["e9", "r0", "r1", "r2", "r3"]
    # Columns come in the pipeline's order, whatever order the producer used.
    assert out.rows.features[1:].tolist() == batch.features()[:, ::-1].tolist()
    assert out.rows.offsets.tolist() == [0, 5, 5, 5, 5]


def test_bad_arrow_messages() -> None:
    good = arrow_batch(3)
    bad_version = good.table.replace_schema_metadata({b"driftline.schema_version": b"9"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, bad_version.schema) as writer:
        writer.write_table(bad_version)
    with_nan = InferenceBatch.from_arrays(
        P, ["n0", "n1", "n2"], [T0] * 3, np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, 4.0]]), NAMES
    )
    out = decode_inputs(
        [
            msg(b"\x00garbage", 0, ARROW),
            msg(sink.getvalue().to_pybytes(), 1, ARROW),
            msg(arrow_batch(2, ("a", "z")).to_ipc(), 2, ARROW),
            msg(arrow_batch(2, pipeline="other").to_ipc(), 3, ARROW),
            msg(with_nan.to_ipc(), 4, ARROW),
        ],
        pipeline=P,
        feature_names=NAMES,
    )
    assert reasons(out) == [
        "malformed",
        "schema_version",
        "feature_mismatch",
        "wrong_pipeline",
        "non_finite",
    ]
    # Finite rows of a partly bad batch still count; the whole message is in the DLQ.
    assert out.rows.event_ids.to_pylist() == ["n0", "n2"]
    assert "n1" in out.dead_letters[-1].detail


def test_rows_table_has_archive_layout() -> None:
    table = decode_inputs([jmsg(event(i), i) for i in range(3)], pipeline=P).rows.to_table()
    assert table.column_names == ["event_id", "timestamp", "a", "b", "topic", "partition", "offset"]
    assert table.column("timestamp").type == pa.timestamp("us", tz="UTC")


def test_labels_are_validated_and_tabled() -> None:
    good = [LabelEvent(event_id=f"e{i}", label=i % 2, timestamp=T0).to_json() for i in range(3)]
    wrong = LabelEvent(event_id="x", label=1, timestamp=T0, pipeline="other").to_json()
    out = decode_labels([msg(v, i) for i, v in enumerate([*good, b"{", wrong])], pipeline=P)
    assert out.table is not None
    assert out.table.column("label").to_pylist() == [0, 1, 0]
    assert out.table.column("offset").to_pylist() == [0, 1, 2]
    assert reasons(out) == ["malformed", "wrong_pipeline"]


# ---------------------------------------------------------------------------------------------
# One truth for the input contract: the decoder accepts exactly what the published JSON Schema
# accepts (checked by `jsonschema` with its format checker), and the pydantic model agrees.

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
number = st.one_of(
    finite,
    st.integers(-(2**60), 2**60),
    st.just(math.nan),
    st.just(math.inf),
    st.booleans(),
    st.sampled_from(["1.5", "abc", "", "1e3"]),
    st.none(),
)
stamps = st.one_of(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.isoformat()
    ),
    st.sampled_from(
        [
            "2026-01-01T00:00:00+05:30",
            "2026-01-01 00:00:00Z",
            "20260101T000000Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:00.1234567Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01t00:00:00z",
            "2026-01-01",
            "9999-12-31T23:59:59-01:00",
            "9998-12-31T23:59:59-01:00",
            "1000-01-01T00:00:00+01:00",
            "0999-12-31T23:59:59Z",
            "2024-02-29T12:00:00.5Z",
            "2025-02-29T12:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00+24:00",
        ]
    ),
    st.integers(0, 2**33),
    st.none(),
)
# Each field is valid about half of the time, so a fair share of whole documents is valid too
# (the test is only as strong as the accepted documents it sees).
good_number = st.one_of(finite, st.integers(-(2**60), 2**60))
good_stamps = st.datetimes(
    min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.isoformat().replace("+00:00", "Z"))
stamps = st.one_of(good_stamps, stamps)
event_ids = st.one_of(
    st.text(min_size=1, max_size=20), st.text(min_size=0, max_size=300), st.integers(), st.none()
)
feature_maps = st.one_of(
    st.fixed_dictionaries({"a": good_number, "b": good_number}),
    st.fixed_dictionaries({"b": good_number, "a": good_number}),
    st.fixed_dictionaries({"a": number, "b": number}),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), number, max_size=3),
    st.just([]),
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": draw(event_ids),
        "timestamp": draw(stamps),
        "pipeline": draw(st.sampled_from([P, P, P, "other", "bad name"])),
        "features": draw(feature_maps),
    }
    for key, strategy in [
        ("schema_version", st.sampled_from([1, 2, "1", True, 1.0])),
        ("model_version", st.one_of(st.none(), st.text(max_size=5), st.integers())),
        (
            "prediction",
            st.one_of(st.none(), finite, st.integers(), st.text(max_size=3), st.booleans()),
        ),
        (
            "probabilities",
            st.one_of(
                st.none(),
                st.lists(st.floats(0.0, 1.0), max_size=3),
                st.lists(st.one_of(finite, st.booleans()), max_size=3),
            ),
        ),
        ("surprise", st.integers()),
    ]:
        if draw(st.booleans()) and draw(st.booleans()):
            doc[key] = draw(strategy)
    for key in ("event_id", "timestamp", "features"):
        if draw(st.integers(0, 20)) == 0:
            del doc[key]
    return doc


SCHEMA = Draft202012Validator(
    load_json_schema("inference_event"), format_checker=Draft202012Validator.FORMAT_CHECKER
)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def schema_decision(raw: bytes) -> tuple[bool, Any]:
    """What the published JSON Schema (plus the pipeline's own rules) says about a message."""
    try:
        doc = json.loads(raw, parse_constant=_no_constants)
    except ValueError:
        return False, None
    if not SCHEMA.is_valid(doc) or doc["pipeline"] != P or set(doc["features"]) != set(NAMES):
        return False, None
    when = datetime.fromisoformat(doc["timestamp"])
    us = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return True, (doc["event_id"], us, [float(doc["features"][n]) for n in NAMES])


def model_decision(raw: bytes) -> tuple[bool, Any]:
    """What the pydantic model (plus the pipeline's own rules) says about one message."""
    try:
        e = InferenceEvent.from_json(raw)
    except SchemaError:
        return False, None
    if e.pipeline != P or set(e.features) != set(NAMES):
        return False, None
    us = (e.timestamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return True, (e.event_id, us, [e.features[n] for n in NAMES])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents(), min_size=1, max_size=8))
def test_decoder_accepts_exactly_what_the_json_schema_accepts(docs: list[dict[str, Any]]) -> None:
    raws = [json.dumps(d).encode() for d in docs]  # json writes NaN/Infinity literals too
    out = decode_inputs([msg(r, i) for i, r in enumerate(raws)], pipeline=P, feature_names=NAMES)
    accepted = dict(zip(out.rows.offsets.tolist(), range(len(out.rows)), strict=True))
    rejected = {d.source_offset for d in out.dead_letters}
    for i, raw in enumerate(raws):
        ok, values = schema_decision(raw)
        assert (i in accepted) == ok, (raw, out.dead_letters)
        assert (i in rejected) == (not ok)
        assert model_decision(raw) == (ok, values), raw
        if ok:
            row = accepted[i]
            assert out.rows.event_ids[row].as_py() == values[0]
            assert int(out.rows.timestamps_us[row]) == values[1]
            assert out.rows.features[row].tolist() == values[2]


def test_orjson_and_stdlib_bytes_decode_the_same() -> None:
    doc = event(1, probabilities=[0.25, 0.75], prediction=1, model_version="m")
    a = decode_inputs([msg(orjson.dumps(doc))], pipeline=P)
    b = decode_inputs([msg(json.dumps(doc).encode())], pipeline=P)
    assert a.rows.features.tolist() == b.rows.features.tolist() and not a.dead_letters
    assert a.rows.model_versions.to_pylist() == ["m"]


def test_every_fate_of_a_mixed_fetch_is_in_arrival_order() -> None:
    """JSON events are decoded a run at once; their dead letters still come in offset order
    among the other kinds', and every good event around them is a row."""
    text_xml = ((CONTENT_TYPE_HEADER, b"text/xml"),)
    messages = [
        jmsg(event(0), 0),
        msg(b"{oops", 1),
        msg(json.dumps(event(2, model_version="x" * 5000)).encode(), 2),
        jmsg(event(3, pipeline="other"), 3),
        msg(b"<xml/>", 4, text_xml),
        jmsg(event(5, schema_version=2), 5),
        jmsg(event(6, features={"a": True, "b": 1.0}), 6),
        jmsg(event(7), 7),
        msg(b"\x00\x00\x00\x00\x07{}", 8),  # Confluent wire format, no registry configured
        jmsg(event(9), 9),
    ]
    out = decode_inputs(messages, pipeline=P, feature_names=NAMES, max_message_bytes=4096)
    assert [(d.source_offset, d.reason.value) for d in out.dead_letters] == [
        (1, "malformed"),
        (2, "oversized"),
        (3, "wrong_pipeline"),
        (4, "unknown_content_type"),
        (5, "schema_version"),
        (6, "schema_violation"),
        (8, "unknown_schema"),
    ]
    assert out.rows.event_ids.to_pylist() == ["e0", "e7", "e9"]
    assert out.rows.offsets.tolist() == [0, 7, 9]


def test_a_decoder_failure_nobody_foresaw_costs_only_its_own_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import driftline.streams.monitor.codec as codec

    real = codec.decode_event

    def flaky(value: bytes) -> Any:
        if b'"e2"' in value:
            raise RuntimeError("decoder bug")
        return real(value)

    # Both the pipeline's fixed decoder and the full contract's decoder fail on it.
    monkeypatch.setattr(codec, "decode_event", flaky)
    monkeypatch.setattr(codec, "fixed_decoder", lambda names: flaky)
    out = decode_inputs([jmsg(event(i), i) for i in range(5)], pipeline=P, feature_names=NAMES)
    assert out.rows.event_ids.to_pylist() == ["e0", "e1", "e3", "e4"]
    assert [(d.source_offset, d.reason.value) for d in out.dead_letters] == [(2, "poison")]
    assert "decoder bug" in out.dead_letters[0].detail


def test_a_poison_arrow_batch_does_not_take_the_json_rows_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(data: bytes) -> Any:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(InferenceBatch, "from_ipc", staticmethod(broken))
    messages = [jmsg(event(0), 0), jmsg(event(1), 1), msg(arrow_batch(3).to_ipc(), 2, ARROW)]
    out = decode_inputs(messages, pipeline=P, feature_names=NAMES)
    assert [(d.source_offset, d.reason.value) for d in out.dead_letters] == [(2, "poison")]
    # Every message has a fate: the JSON rows before the broken batch are not rolled back.
    assert out.rows.event_ids.to_pylist() == ["e0", "e1"]


@pytest.mark.parametrize(
    "features",
    [
        {"b": 2.0, "a": 1.0},  # another key order: the pipeline's fixed decoder, same values
        {"a": 1.0},  # a feature missing
        {"a": 1.0, "b": 2.0, "c": 3.0},  # one more
        {"a": 1.0, "c": 2.0},  # one renamed
    ],
)
def test_events_of_other_feature_sets_among_good_ones(features: dict[str, float]) -> None:
    """The pipeline's fixed decoder takes events with exactly its features; any other set
    goes through the full contract and gets its own reason, the rest stay rows."""
    messages = [jmsg(event(0), 0), jmsg(event(1, features=features), 1), jmsg(event(2), 2)]
    out = decode_inputs(messages, pipeline=P, feature_names=NAMES)
    if set(features) == set(NAMES):
        assert out.dead_letters == []
        assert out.rows.features.tolist() == [[0.0, -1.5], [1.0, 2.0], [2.0, -1.5]]
    else:
        assert [(d.source_offset, d.reason.value) for d in out.dead_letters] == [
            (1, "feature_mismatch")
        ]
        assert out.rows.features.tolist() == [[0.0, -1.5], [2.0, -1.5]]
