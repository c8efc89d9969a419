"""Real processes (not threads) racing on one database, as monitor, retrainer and CLI do."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from driftline.lifecycle_store import LifecycleStore

_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from driftline.lifecycle_store import ConcurrentUpdateError, LifecycleStore

    url, artifacts, go, model = sys.argv[1:5]
    store = LifecycleStore.open(url, artifacts=artifacts)
    while not Path(go).exists():
        time.sleep(0.005)
    training, created = store.begin_training(
        "demo", episode_key="ep", trigger={"pid": os.getpid()}, config={}
    )
    try:
        store.deploy("demo", "champion", model, reason=str(os.getpid()), expected_current=None)
        deployed = True
    except ConcurrentUpdateError:
        deployed = False
    print(json.dumps({"training": training.id, "created": created, "deployed": deployed}))
    """
)


@pytest.mark.slow
def test_processes_race_for_episode_and_champion(
    rows: Callable[..., pa.Table], tmp_path: Path
) -> None:
    # SQLite only: processes share its file through OS locks, which threads in one process
    # cannot exercise; PostgreSQL arbitrates connections the same way whatever process owns
    # them, and the thread race tests cover it.
    store_url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = LifecycleStore.open(store_url, artifacts=tmp_path / "artifacts")
    pipeline = store.ensure_pipeline("demo", ["f0", "f1", "f2"], {}).name
    dv = store.snapshot(pipeline, rows(20))
    models = [
        store.register_model(
            pipeline, f"m{i}".encode(), framework="x", params={}, metrics={}, data_version_id=dv.id
        ).id
        for i in range(2)
    ]
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, store_url, str(tmp_path / "artifacts"), str(go), m],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for m in models
    ]
    time.sleep(0.5)  # let them import and connect, so they start together
    go.touch()
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert len({o["training"] for o in outputs}) == 1
    assert sum(o["created"] for o in outputs) == 1
    assert sum(o["deployed"] for o in outputs) == 1
    history = store.history(pipeline)
    assert len(history) == 1 and history[0].previous_model_version_id is None
    winner = next(m for m, o in zip(models, outputs, strict=True) if o["deployed"])
    assert store.current(pipeline).id == winner  # type: ignore[union-attr]
    store.close()
