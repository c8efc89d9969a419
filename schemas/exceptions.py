"""Errors raised by the event contracts.

SchemaError (ValueError)          an event does not match its contract
├── MalformedError                the bytes are not JSON / not an Arrow IPC stream at all
└── SchemaVersionError            the event was written for another schema version
"""

from __future__ import annotations

from pydantic import ValidationError

from driftline.errors import DriftlineError


class SchemaError(DriftlineError, ValueError):
    """An event does not match its contract; `reason` is a stable machine-readable code."""

    reason = "schema_violation"

    @classmethod
    def from_validation(cls, model: str, exc: ValidationError) -> SchemaError:
        problems = []
        version_problem = False
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            return MalformedError(f"invalid {model}: not JSON: {exc.errors()[0]['msg']}")
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(event)"
            problems.append(f"{where}: {err['msg']}")
            if err["loc"][:1] == ("schema_version",):
                version_problem = True
        kind = SchemaVersionError if version_problem else cls
        return kind(f"invalid {model}: " + "; ".join(problems))


class SchemaVersionError(SchemaError):
    """The event carries a schema version this release does not read."""

    reason = "schema_version"


class MalformedError(SchemaError):
    """The bytes are not a document of the contract's encoding at all (not JSON, not Arrow)."""

    reason = "malformed"
