"""The JSON Schema files shipped in ``schemas/json/``, generated from the models.

Regenerate after changing a model: ``python -m driftline.schemas.files``.

>>> load_json_schema("label_event")["title"]
'LabelEvent'
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from driftline.schemas.batch import InferenceBatch, batch_contract
from driftline.schemas.events import JSON_EVENTS


def expected_schemas() -> dict[str, dict[str, Any]]:
    """Every schema file's content as the models define it today."""
    out = {cls.schema_name: cls.model_json_schema() for cls in JSON_EVENTS}
    out[InferenceBatch.schema_name] = batch_contract()
    return out


def load_json_schema(name: str) -> dict[str, Any]:
    """Read a shipped schema file by name (e.g. ``"drift_event"``)."""
    text = resources.files("driftline.schemas").joinpath("json", f"{name}.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


def write_schema_files(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in expected_schemas().items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schema_files(Path(__file__).parent / "json"):
        print(path.name)
