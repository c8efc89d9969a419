"""driftline event contracts: pydantic models plus JSON Schema files shipped as package data.

InferenceEvent      one inference input (JSON) on {p}.inputs
InferenceBatch      many inference rows as an Arrow IPC stream on {p}.inputs
LabelEvent          delayed ground truth on {p}.labels
DriftEvent          a detector alarm on {p}.drift
ModelVersionEvent   a deployed model version on {p}.model-versions (compacted)
DeadLetter          a rejected input, kept whole with its reason, on {p}.dlq
LabelRequest        events a human or labelling service should label, on {p}.label-requests
OODFlag             one out-of-distribution input, on {p}.ood
"""

from driftline.schemas._base import SCHEMA_VERSION, Event, utcnow
from driftline.schemas.batch import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    RESERVED_COLUMNS,
    InferenceBatch,
)
from driftline.schemas.events import (
    JSON_EVENTS,
    ChangePoint,
    DeadLetter,
    DeadLetterReason,
    DriftEvent,
    FeatureScore,
    InferenceEvent,
    Label,
    LabelEvent,
    LabelRequest,
    ModelVersionEvent,
    OODFlag,
    SourceRange,
)
from driftline.schemas.exceptions import MalformedError, SchemaError, SchemaVersionError
from driftline.schemas.files import load_json_schema
from driftline.schemas.signing import (
    EventSigner,
    EventVerifier,
    ModelVersionSigner,
    ModelVersionVerifier,
    SignatureError,
)
from driftline.schemas.topics import Topics

__all__ = [
    "ARROW_CONTENT_TYPE",
    "CONTENT_TYPE_HEADER",
    "JSON_CONTENT_TYPE",
    "JSON_EVENTS",
    "RESERVED_COLUMNS",
    "SCHEMA_VERSION",
    "ChangePoint",
    "DeadLetter",
    "DeadLetterReason",
    "DriftEvent",
    "Event",
    "EventSigner",
    "EventVerifier",
    "FeatureScore",
    "InferenceBatch",
    "InferenceEvent",
    "Label",
    "LabelEvent",
    "LabelRequest",
    "MalformedError",
    "ModelVersionEvent",
    "ModelVersionSigner",
    "ModelVersionVerifier",
    "OODFlag",
    "SchemaError",
    "SchemaVersionError",
    "SignatureError",
    "SourceRange",
    "Topics",
    "load_json_schema",
    "utcnow",
]
