"""Common base of every driftline event: versioned, strict, JSON in and out."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from driftline.schemas.exceptions import SchemaError

SCHEMA_VERSION: Final = 1
"""Version of every event contract in this package; bumped on any incompatible change."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _check_pipeline(name: str) -> str:
    if not _NAME.fullmatch(name):  # `$` alone would let a trailing newline through
        raise ValueError(
            f"pipeline name {name!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it becomes part of Kafka topic names)"
        )
    return name


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(
            f"timestamp {value.isoformat()} has no time zone: send UTC, e.g. '2026-01-01T00:00:00Z'"
        )
    return value.astimezone(UTC)


PipelineName = Annotated[str, AfterValidator(_check_pipeline)]
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
EventId = Annotated[str, Field(min_length=1, max_length=256)]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (the only kind of time our events carry)."""
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of all events: strict fields, immutable, and a schema version on the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_name: ClassVar[str]
    schema_version: Literal[1] = SCHEMA_VERSION

    def to_json(self) -> bytes:
        """Serialize to the UTF-8 JSON bytes sent on Kafka."""
        return self.model_dump_json(exclude_none=False).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """Parse and validate JSON bytes; raise `SchemaError` naming what is wrong."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise SchemaError.from_validation(cls.__name__, exc) from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Validate a decoded mapping (e.g. one row of a table)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SchemaError.from_validation(cls.__name__, exc) from None
