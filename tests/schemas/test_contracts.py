"""The shipped JSON Schema files and the pydantic models describe the same events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import jsonschema
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import driftline.schemas as schemas
from driftline.schemas.files import expected_schemas

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def examples() -> list[schemas.Event]:
    return [
        schemas.InferenceEvent(
            event_id="e-1",
            timestamp=T0,
            pipeline="fraud",
            features={"amount": 12.5, "age": 40.0},
            model_version="mv-1",
            prediction=1,
            probabilities=[0.2, 0.8],
        ),
        schemas.LabelEvent(event_id="e-1", label="spam", timestamp=T0, pipeline="fraud"),
        schemas.DriftEvent(
            drift_id="d-1",
            pipeline="fraud",
            detector="OnlineMMD",
            statistic=0.31,
            threshold=0.12,
            features=[schemas.FeatureScore(name="amount", score=0.9)],
            window_start=T0,
            window_end=T0 + timedelta(minutes=5),
            offsets=[
                schemas.SourceRange(topic="fraud.inputs", partition=0, start_offset=5, end_offset=9)
            ],
            rows_seen=1200,
            reference_data_version="dv-abc",
            detected_at=T0,
        ),
        schemas.ModelVersionEvent(
            pipeline="fraud",
            deployment_id="dep-1",
            model_version_id="mv-2",
            artifact_uri="file:///tmp/artifacts/models/ab",
            content_hash="a" * 64,
            framework="torch-mlp",
            feature_names=["amount", "age"],
            metrics={"accuracy": 0.93},
            data_version_id="dv-abc",
            parent_model_version_id="mv-1",
            reason="drift d-1",
            deployed_at=T0,
        ),
        schemas.DeadLetter(
            pipeline="fraud",
            reason=schemas.DeadLetterReason.MALFORMED,
            detail="Expecting value: line 1 column 1",
            source_topic="fraud.inputs",
            source_partition=2,
            source_offset=77,
            headers={"content-type": "application/json"},
            key=b"e-9",
            payload=b"\x00\xff not json",
            failed_at=T0,
        ),
        schemas.LabelRequest(
            request_id="r-1",
            pipeline="fraud",
            event_ids=["e-3", "e-4"],
            reason="too few labels: 12 < 500",
            drift_id="d-1",
            created_at=T0,
        ),
        schemas.OODFlag(event_id="e-5", pipeline="fraud", score=3.2, threshold=1.5, timestamp=T0),
    ]


def test_shipped_files_equal_the_models() -> None:
    for name, schema in expected_schemas().items():
        assert schemas.load_json_schema(name) == json.loads(json.dumps(schema)), (
            f"schemas/json/{name}.json is stale: run `python -m schemas.files`"
        )


def test_every_json_event_has_a_file_and_an_example() -> None:
    assert {type(e) for e in examples()} == set(schemas.JSON_EVENTS)


@pytest.mark.parametrize("event", examples(), ids=lambda e: type(e).__name__)
def test_round_trip_is_lossless_and_valid_against_the_file(event: schemas.Event) -> None:
    data = event.to_json()
    assert type(event).from_json(data) == event
    jsonschema.validate(json.loads(data), schemas.load_json_schema(type(event).schema_name))


@pytest.mark.parametrize("event", examples(), ids=lambda e: type(e).__name__)
def test_other_schema_versions_are_refused(event: schemas.Event) -> None:
    doc = json.loads(event.to_json())
    doc["schema_version"] = 2
    with pytest.raises(schemas.SchemaVersionError, match="schema_version"):
        type(event).from_json(json.dumps(doc))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schemas.load_json_schema(type(event).schema_name))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"features": {"x": float("nan")}}, "finite"),
        ({"features": {}}, "features"),
        ({"pipeline": "has space"}, "pipeline name"),
        ({"timestamp": "2026-01-01T00:00:00"}, "with a zone"),
        ({"timestamp": "9999-12-31T23:59:59-01:00"}, "years 1000-9998"),
        ({"timestamp": 1767225600}, "RFC 3339"),
        ({"features": {"x": True}}, "valid number"),
        ({"probabilities": [1.5]}, "less than or equal to 1"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_inference_events_name_the_problem(patch: dict[str, object], message: str) -> None:
    doc = json.loads(examples()[0].to_json())
    doc.update(patch)
    with pytest.raises(schemas.SchemaError, match=message):
        schemas.InferenceEvent.from_json(json.dumps(doc, allow_nan=True))


def test_timestamps_are_normalized_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    e = schemas.LabelEvent(
        event_id="a", label=1, timestamp=datetime(2026, 1, 1, 14, tzinfo=plus_two)
    )
    assert e.timestamp == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert e.timestamp.tzinfo == UTC


def test_dead_letter_keeps_the_original_bytes() -> None:
    payload = bytes(range(256))
    dl = schemas.DeadLetter(
        pipeline="p", reason="oversized", detail="too big", source_topic="p.inputs", payload=payload
    )
    assert schemas.DeadLetter.from_json(dl.to_json()).payload == payload


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        min_size=1,
        max_size=8,
    ),
    st.text(min_size=1, max_size=40),
)
def test_inference_event_round_trip_property(features: dict[str, float], event_id: str) -> None:
    e = schemas.InferenceEvent(event_id=event_id, timestamp=T0, pipeline="p", features=features)
    back = schemas.InferenceEvent.from_json(e.to_json())
    assert back == e
    assert back.features == features


class TestInferenceBatch:
    def make(self, rows: int = 5) -> schemas.InferenceBatch:
        rng = np.random.default_rng(0)
        return schemas.InferenceBatch.from_arrays(
            "fraud",
            [f"e-{i}" for i in range(rows)],
            [T0 + timedelta(seconds=i) for i in range(rows)],
            rng.normal(size=(rows, 3)),
            ["a", "b", "c"],
            model_version=["mv-1"] * rows,
        )

    def test_ipc_round_trip_is_exact(self) -> None:
        batch = self.make()
        back = schemas.InferenceBatch.from_ipc(batch.to_ipc())
        assert back.pipeline == "fraud"
        assert back.table.equals(batch.table)
        np.testing.assert_array_equal(back.features(), batch.features())
        assert back.feature_names == ["a", "b", "c"]

    def test_matches_json_events(self) -> None:
        events = [
            schemas.InferenceEvent(
                event_id=f"e-{i}", timestamp=T0, pipeline="p", features={"x": i, "y": -i}
            )
            for i in range(4)
        ]
        batch = schemas.InferenceBatch.from_events(events)
        assert batch.features().tolist() == [[i, -i] for i in range(4)]
        assert batch.table.column("event_id").to_pylist() == [e.event_id for e in events]

    def test_contract_file_lists_the_reserved_columns(self) -> None:
        contract = schemas.load_json_schema("inference_batch")
        assert tuple(contract["reserved_columns"]) == schemas.RESERVED_COLUMNS
        assert contract["content_type"] == schemas.ARROW_CONTENT_TYPE

    def test_wrong_version_is_refused(self) -> None:
        table = self.make().table.replace_schema_metadata({b"driftline.schema_version": b"9"})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        with pytest.raises(schemas.SchemaVersionError):
            schemas.InferenceBatch.from_ipc(sink.getvalue().to_pybytes())

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (lambda t: t.drop_columns(["event_id"]), "event_id"),
            (lambda t: t.drop_columns(["a", "b", "c"]), "no feature columns"),
            (
                lambda t: t.set_column(
                    t.column_names.index("a"), "a", pa.array(["x"] * t.num_rows)
                ),
                "numeric",
            ),
            (
                lambda t: t.set_column(
                    1, "timestamp", pa.array([T0.replace(tzinfo=None)] * t.num_rows)
                ),
                "UTC",
            ),
        ],
    )
    def test_bad_tables_are_refused(self, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(schemas.SchemaError, match=message):
            schemas.InferenceBatch("fraud", mutate(self.make().table))

    def test_garbage_bytes_are_refused(self) -> None:
        with pytest.raises(schemas.SchemaError, match="Arrow"):
            schemas.InferenceBatch.from_ipc(b"definitely not arrow")
