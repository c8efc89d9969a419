from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from lifecycle_store import LifecycleStore, StoreError
from lifecycle_store.engine import safe_url
from lifecycle_store.orm import Base


def test_migrations_match_the_orm(store: LifecycleStore) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0001"


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
