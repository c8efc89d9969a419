"""`rollback` never re-deploys bytes that fail their hash."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from driftline.lifecycle_store.exceptions import ArtifactCorruptedError
from driftline.lifecycle_store.store import LifecycleStore
from driftline.retrainer.publisher import InMemoryPublisher
from driftline.streams.admin import rollback


def test_rollback_refuses_a_target_whose_artifact_fails_its_hash(tmp_path: Path) -> None:
    store = LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    p = store.ensure_pipeline("fraud", ["x"], {})
    dv = store.snapshot(p, pa.table({"x": [1.0, 2.0]}))
    models = []
    for weights in (b"one", b"two"):
        mv = store.register_model(
            p, weights, framework="torch-mlp", params={}, metrics={}, data_version_id=dv.id
        )
        store.deploy(p, "champion", mv.id, reason="trained")
        models.append(mv)
    target = Path(models[0].artifact_uri.removeprefix("file://"))
    target.write_bytes(b"replaced by an attacker")
    publisher = InMemoryPublisher()
    with pytest.raises(ArtifactCorruptedError):
        rollback(store, "fraud", publisher)
    current = store.current("fraud", "champion")
    assert current is not None and current.id == models[1].id
    assert publisher.model_versions == []
    assert [d.kind for d in store.history("fraud", "champion")] == ["deploy", "deploy"]
    store.close()
