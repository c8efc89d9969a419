from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from driftline.detectors.coreset import Coreset
from driftline.lifecycle_store import LifecycleStore, StoreError
from driftline.lifecycle_store import orm as orm_module
from driftline.lifecycle_store.engine import make_engine, safe_url
from driftline.lifecycle_store.orm import Base


def test_migrations_match_the_orm(store: LifecycleStore) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    head = ScriptDirectory(
        str(Path(orm_module.__file__).with_name("migrations"))
    ).get_current_head()
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head


def test_upgrade_from_first_revision_keeps_and_backfills(store_url: str, tmp_path: Path) -> None:
    if store_url.startswith("sqlite"):
        store_url = f"sqlite:///{tmp_path / 'old.db'}"  # the fixture's file is migrated already
    config = Config()
    config.set_main_option(
        "script_location", str(Path(orm_module.__file__).with_name("migrations"))
    )
    engine = make_engine(store_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(
            sa.text(
                "INSERT INTO pipelines (name, feature_names, config, created_at, updated_at) "
                "VALUES ('old', :f, '{}', :t, :t)"
            ),
            {"f": json.dumps(["a", "b"]), "t": datetime(2024, 1, 1)},
        )
        pid = conn.execute(sa.text("SELECT id FROM pipelines")).scalar()
        cs = Coreset.from_array(np.random.default_rng(0).normal(3.0, 1.0, size=(200, 2)), k=16)
        stats = {"a": {"mean": 3.0, "std": 1.0}, "b": {"mean": 3.0, "std": 1.0}}
        conn.execute(
            sa.text(
                "INSERT INTO data_versions (id, pipeline_id, content_hash, artifact_key, "
                "artifact_uri, row_count, feature_schema, combine, coreset, coreset_k, stats, "
                "created_at) VALUES ('dv-old', :pid, 'h', 'k', 'u', 200, '[]', 'root', :cs, 16, "
                ":stats, :t)"
            ),
            {
                "pid": pid,
                "cs": cs.to_bytes(),
                "stats": json.dumps(stats),
                "t": datetime(2024, 1, 1),
            },
        )
    engine.dispose()
    with LifecycleStore.open(store_url, artifacts=tmp_path / "a") as store:
        found = store.most_similar("old", cs, k=1)
        assert [f.data_version.id for f in found] == ["dv-old"]
        assert found[0].similarity == pytest.approx(1.0)
        with store.engine.connect() as conn:
            profile = conn.execute(sa.text("SELECT profile FROM data_versions")).scalar()
        assert np.frombuffer(profile, "<f8").tolist() == pytest.approx([3, 3, 0, 0], abs=1e-6)


def test_reopen_is_a_no_op(open_store, pipeline: str) -> None:  # type: ignore[no-untyped-def]
    again = open_store()
    assert again.pipeline(pipeline).feature_names == ("f0", "f1", "f2")


def test_password_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"sqlite:///{tmp_path}/x.db"
    with LifecycleStore.open(url, artifacts=tmp_path / "a") as store:
        assert "x.db" in repr(store)
    assert safe_url("postgresql+psycopg://u:hunter2@h/db") == "postgresql+psycopg://u:***@h/db"
    with pytest.raises(StoreError) as info:
        LifecycleStore.open("mysql://u:hunter2@h/db", artifacts=tmp_path / "a")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    with pytest.raises(StoreError, match="not valid"):
        LifecycleStore.open("::not a url::", artifacts=tmp_path / "a")
    assert "hunter2" not in caplog.text


def test_postgres_password_not_in_logs(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = sa.make_url(store_url).password
    with LifecycleStore.open(store_url, artifacts=tmp_path / "a") as store:
        assert "lifecycle store open" in caplog.text
        assert not password or str(password) not in repr(store)
    assert not password or str(password) not in caplog.text


def test_sqlite_is_tuned_for_several_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    with LifecycleStore.open(url, artifacts=tmp_path / "a") as store, store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
