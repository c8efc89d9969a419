"""Fixtures: the same suite runs against SQLite (a file in a temp dir) and a real PostgreSQL.

The PostgreSQL URL comes from ``DRIFTLINE_TEST_POSTGRES_URL``; when it is unset,
``scripts/postgres.sh start`` installs and starts a local server. Each test gets its own
PostgreSQL schema (dropped afterwards), so tests never see each other's rows.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from driftline.lifecycle_store import LifecycleStore

FEATURES = ["f0", "f1", "f2"]
T0 = datetime(2024, 1, 1, tzinfo=UTC)

StoreFactory = Callable[[], LifecycleStore]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite file; tests start from copies instead of migrating each time."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    LifecycleStore.open(f"sqlite:///{path}", artifacts=path.parent / "artifacts").close()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for one test: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        for suffix in ("", "-wal"):
            if Path(f"{template}{suffix}").exists():
                shutil.copyfile(f"{template}{suffix}", tmp_path / f"store.db{suffix}")
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    base = sa.make_url(request.getfixturevalue("postgres_url"))
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def open_store(store_url: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens more stores on the same database and artifacts (as other processes would)."""
    opened: list[LifecycleStore] = []

    def factory() -> LifecycleStore:
        store = LifecycleStore.open(store_url, artifacts=tmp_path / "artifacts")
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> LifecycleStore:
    return open_store()


@pytest.fixture
def pipeline(store: LifecycleStore) -> str:
    store.ensure_pipeline("demo", FEATURES, {"model": "mlp"})
    return "demo"


@pytest.fixture
def rows() -> Callable[..., pa.Table]:
    """``rows(n, seed=0, shift=0.0, start=0)`` builds a table of inference rows."""
    return _rows


def _rows(n: int, seed: int = 0, shift: float = 0.0, start: int = 0) -> pa.Table:
    """``n`` rows with event ids, timestamps one second apart, features and a label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, size=(n, len(FEATURES)))
    columns: dict[str, pa.Array] = {
        "event_id": pa.array([f"e{start + i}" for i in range(n)]),
        "timestamp": pa.array(
            [T0 + timedelta(seconds=start + i) for i in range(n)], pa.timestamp("us", tz="UTC")
        ),
    }
    for j, name in enumerate(FEATURES):
        columns[name] = pa.array(x[:, j])
    columns["label"] = pa.array((x[:, 0] > shift).astype(np.int64))
    return pa.table(columns)
